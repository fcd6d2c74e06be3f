package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNotObject is returned (wrapped) by [Decode] and [DecodeBatch] when the
// input is not a JSON object at all.
var ErrNotObject = errors.New("spec: body is not a JSON object")

// Decode parses one Segment call from a JSON object.
//
// If typ is not empty it is the call type (as given by the route, such as
// /v1/track) and overrides any "type" in the body; otherwise the body's "type"
// decides. Numbers inside properties, traits, context and Extra are decoded
// as [json.Number], so they keep every digit.
//
// Decode checks JSON types only. A field of the wrong type is reported in a
// [*ValidationError]; call the event's Validate method for the call's rules.
// Malformed JSON yields an error wrapping [ErrNotObject] or the json error.
func Decode(data []byte, typ Type) (Event, error) {
	fields, err := objectFields(data)
	if err != nil {
		return nil, err
	}
	var d decoder
	if typ == "" {
		if raw, ok := fields["type"]; ok {
			typ = Type(d.str(raw, "type"))
		}
		if d.errs != nil {
			return nil, d.result()
		}
		if typ == "" {
			return nil, &ValidationError{Fields: []FieldError{{Field: "type", Rule: "required", Message: "cannot be blank"}}}
		}
	}
	e := New(typ)
	if e == nil {
		return nil, &ValidationError{Fields: []FieldError{{Field: "type", Rule: "in", Message: fmt.Sprintf("must be one of track, identify, page, screen, group, alias; got %q", typ)}}}
	}
	c := e.Fields()
	c.size = len(data)
	for k, raw := range fields {
		if d.common(c, k, raw) {
			continue
		}
		switch ev := e.(type) {
		case *Track:
			switch k {
			case "event":
				ev.Event = d.str(raw, k)
				continue
			case "properties":
				ev.Properties = d.object(raw, k)
				continue
			}
		case *Identify:
			if k == "traits" {
				ev.Traits = d.object(raw, k)
				continue
			}
		case *Page:
			if d.view(&ev.Name, &ev.Category, &ev.Properties, k, raw) {
				continue
			}
		case *Screen:
			if d.view(&ev.Name, &ev.Category, &ev.Properties, k, raw) {
				continue
			}
		case *Group:
			switch k {
			case "groupId":
				ev.GroupID = d.id(raw, k)
				continue
			case "traits":
				ev.Traits = d.object(raw, k)
				continue
			}
		case *Alias:
			if k == "previousId" {
				ev.PreviousID = d.id(raw, k)
				continue
			}
		}
		if c.Extra == nil {
			c.Extra = make(map[string][]byte)
		}
		c.Extra[k] = raw
	}
	if d.errs != nil {
		return e, d.result()
	}
	return e, nil
}

// Batch is the envelope of a /v1/batch (or /v1/import) request.
type Batch struct {
	// Batch holds the events, still as raw JSON; decode each with [Decode].
	Batch []json.RawMessage
	// WriteKey is the write key given in the body, if any.
	WriteKey string
	// SentAt is the batch-level sentAt, applied to items that have none.
	SentAt time.Time
	// Context is the batch-level context, merged under each item's own.
	Context map[string]any
	// Integrations is the batch-level integrations object, merged under
	// each item's own.
	Integrations map[string]any
}

// DecodeBatch parses the envelope of a batch request. A missing or non-array
// "batch" field, or a batch-level field of the wrong type, is a
// [*ValidationError]; the envelope is then returned too, with the fields that
// could be read (so a caller can still check its writeKey).
func DecodeBatch(data []byte) (*Batch, error) {
	fields, err := objectFields(data)
	if err != nil {
		return nil, err
	}
	var d decoder
	b := &Batch{}
	raw, ok := fields["batch"]
	if !ok || isNull(raw) {
		d.add("batch", "required", "cannot be blank")
	} else if err := json.Unmarshal(raw, &b.Batch); err != nil {
		d.add("batch", "type", "must be an array of events")
	}
	if raw, ok := fields["writeKey"]; ok {
		b.WriteKey = d.str(raw, "writeKey")
	}
	if raw, ok := fields["sentAt"]; ok {
		b.SentAt = d.time(raw, "sentAt")
	}
	if raw, ok := fields["context"]; ok {
		b.Context = d.object(raw, "context")
	}
	if raw, ok := fields["integrations"]; ok {
		b.Integrations = d.object(raw, "integrations")
	}
	if d.errs != nil {
		return b, d.result()
	}
	return b, nil
}

// Merge applies the batch-level sentAt, context and integrations to e, as
// Segment does: the item's own values win, key by key for context and
// integrations.
func (b *Batch) Merge(e Event) {
	c := e.Fields()
	if c.SentAt.IsZero() {
		c.SentAt = b.SentAt
	}
	c.Context = mergeUnder(c.Context, b.Context)
	c.Integrations = mergeUnder(c.Integrations, b.Integrations)
}

// mergeUnder returns own with the keys of base that own lacks. It does not
// modify base, which is shared by every item of a batch.
func mergeUnder(own, base map[string]any) map[string]any {
	if len(base) == 0 {
		return own
	}
	out := make(map[string]any, len(own)+len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range own {
		out[k] = v
	}
	return out
}

func objectFields(data []byte) (map[string]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, ErrNotObject
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("spec: invalid JSON: %w", err)
	}
	return fields, nil
}

func isNull(raw []byte) bool { return string(raw) == "null" }

// decoder decodes known fields and collects type errors.
type decoder struct {
	errs []FieldError
}

func (d *decoder) add(field, rule, msg string) {
	d.errs = append(d.errs, FieldError{Field: field, Rule: rule, Message: msg})
}

func (d *decoder) result() error {
	if len(d.errs) == 0 {
		return nil
	}
	ve := &ValidationError{Fields: d.errs}
	ve.sort()
	return ve
}

// common decodes k into c if it is one of the shared fields.
func (d *decoder) common(c *Common, k string, raw []byte) bool {
	switch k {
	case "type":
		// Decided before; a route's type overrides the body's.
	case "messageId":
		c.MessageID = d.id(raw, k)
	case "userId":
		c.UserID = d.id(raw, k)
	case "anonymousId":
		c.AnonymousID = d.id(raw, k)
	case "timestamp":
		c.Timestamp = d.time(raw, k)
	case "originalTimestamp":
		c.OriginalTimestamp = d.time(raw, k)
	case "sentAt":
		c.SentAt = d.time(raw, k)
	case "receivedAt":
		// Set by the collector; a sender's value is not trusted.
	case "context":
		c.Context = d.object(raw, k)
	case "integrations":
		c.Integrations = d.object(raw, k)
	case "channel":
		c.Channel = d.str(raw, k)
	case "version":
		if !isNull(raw) {
			c.Version = d.any(raw, k)
		}
	case "writeKey":
		c.WriteKey = d.str(raw, k)
	default:
		return false
	}
	return true
}

func (d *decoder) view(name, category *string, props *map[string]any, k string, raw []byte) bool {
	switch k {
	case "name":
		*name = d.str(raw, k)
	case "category":
		*category = d.str(raw, k)
	case "properties":
		*props = d.object(raw, k)
	default:
		return false
	}
	return true
}

func (d *decoder) str(raw []byte, field string) string {
	if isNull(raw) {
		return ""
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		d.add(field, "type", "must be a string")
	}
	return s
}

// id decodes an identifier: a JSON string, or a number kept as its digits.
func (d *decoder) id(raw []byte, field string) string {
	if isNull(raw) {
		return ""
	}
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	} else if len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			return n.String()
		}
	}
	d.add(field, "type", "must be a string or a number")
	return ""
}

func (d *decoder) time(raw []byte, field string) time.Time {
	if isNull(raw) {
		return time.Time{}
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		d.add(field, "type", "must be an RFC 3339 timestamp string")
		return time.Time{}
	}
	t, err := ParseTime(s)
	if err != nil {
		d.add(field, "format", "must be an RFC 3339 timestamp")
	}
	return t
}

func (d *decoder) object(raw []byte, field string) map[string]any {
	if isNull(raw) {
		return nil
	}
	if len(raw) == 0 || raw[0] != '{' {
		d.add(field, "type", "must be an object")
		return nil
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		d.add(field, "type", "must be an object")
		return nil
	}
	return m
}

func (d *decoder) any(raw []byte, field string) any {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		d.add(field, "type", "must be valid JSON")
	}
	return v
}

// timeLayouts are the timestamp forms accepted: RFC 3339 (any offset, any
// fraction) and the colon-less offset that older mobile SDKs send.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
}

// ParseTime parses a timestamp as Segment SDKs send it: RFC 3339 with any
// offset and any number of fractional digits, or the same with a colon-less
// offset ("+0000"). The result keeps the sender's offset.
func ParseTime(s string) (time.Time, error) {
	var err error
	for _, layout := range timeLayouts {
		var t time.Time
		if t, err = time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, err
}
