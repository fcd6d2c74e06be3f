package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// [*ValidationError], returned with the event as far as it could be read;
// call the event's Validate method for the call's rules.
// Malformed JSON yields an error wrapping [ErrNotObject] or the json error.
func Decode(data []byte, typ Type) (Event, error) {
	fields, err := objectFields(data)
	if err != nil {
		return nil, err
	}
	e, err := fromFields(fields, typ)
	if e != nil {
		e.Fields().size = len(data)
	}
	return e, err
}

// fromFields builds an event from a decoded JSON object; see Decode.
func fromFields(fields map[string]any, typ Type) (Event, error) {
	var d decoder
	if typ == "" {
		if v, ok := fields["type"]; ok {
			typ = Type(d.str(v, "type"))
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
	for k, v := range fields {
		if d.common(c, k, v) {
			continue
		}
		switch ev := e.(type) {
		case *Track:
			switch k {
			case "event":
				ev.Event = d.str(v, k)
				continue
			case "properties":
				ev.Properties = d.object(v, k)
				continue
			}
		case *Identify:
			if k == "traits" {
				ev.Traits = d.object(v, k)
				continue
			}
		case *Page:
			if d.view(&ev.Name, &ev.Category, &ev.Properties, k, v) {
				continue
			}
		case *Screen:
			if d.view(&ev.Name, &ev.Category, &ev.Properties, k, v) {
				continue
			}
		case *Group:
			switch k {
			case "groupId":
				ev.GroupID = d.id(v, k)
				continue
			case "traits":
				ev.Traits = d.object(v, k)
				continue
			}
		case *Alias:
			if k == "previousId" {
				ev.PreviousID = d.id(v, k)
				continue
			}
		}
		raw, err := json.Marshal(v)
		if err != nil {
			d.add(k, "type", "must be valid JSON")
			continue
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
	// The items are sub-slices of the data given to DecodeBatch.
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

// DecodeBatch parses the envelope of a batch request. Its keys ("batch",
// "writeKey", "sentAt", "context", "integrations") are matched exactly, as
// an event's are. A missing or non-array
// "batch" field, or a batch-level field of the wrong type, is a
// [*ValidationError]; the envelope is then returned too, with the fields that
// could be read (so a caller can still check its writeKey).
func DecodeBatch(data []byte) (*Batch, error) {
	data = bytes.Trim(data, jsonSpace)
	if len(data) == 0 || data[0] != '{' {
		return nil, ErrNotObject
	}
	if !json.Valid(data) {
		err := json.Unmarshal(data, new(any)) // names the syntax error
		return nil, fmt.Errorf("spec: invalid JSON: %w", err)
	}
	var env struct{ batch, writeKey, sentAt, context, integrations []byte }
	members(data, func(key string, value []byte) {
		switch key {
		case "batch":
			env.batch = value
		case "writeKey":
			env.writeKey = value
		case "sentAt":
			env.sentAt = value
		case "context":
			env.context = value
		case "integrations":
			env.integrations = value
		}
	})
	var d decoder
	b := &Batch{}
	switch {
	case len(env.batch) == 0 || isNull(env.batch):
		d.add("batch", "required", "cannot be blank")
	case env.batch[0] != '[':
		d.add("batch", "type", "must be an array of events")
	default:
		b.Batch = elements(env.batch)
	}
	if v, ok := d.rawValue(env.writeKey, "writeKey"); ok {
		b.WriteKey = d.str(v, "writeKey")
	}
	if v, ok := d.rawValue(env.sentAt, "sentAt"); ok {
		b.SentAt = d.time(v, "sentAt")
	}
	if v, ok := d.rawValue(env.context, "context"); ok {
		b.Context = d.object(v, "context")
	}
	if v, ok := d.rawValue(env.integrations, "integrations"); ok {
		b.Integrations = d.object(v, "integrations")
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

// jsonSpace is the whitespace JSON allows around a value.
const jsonSpace = " \t\r\n"

// objectFields decodes a JSON object in one pass, numbers as json.Number.
func objectFields(data []byte) (map[string]any, error) {
	data = bytes.Trim(data, jsonSpace)
	if len(data) == 0 || data[0] != '{' {
		return nil, ErrNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var fields map[string]any
	err := dec.Decode(&fields)
	if err == nil {
		if _, tokErr := dec.Token(); tokErr != io.EOF {
			err = errors.New("data after the object")
		}
	}
	if err != nil {
		// Unmarshal names the syntax error and its offset.
		if uerr := json.Unmarshal(data, new(any)); uerr != nil {
			err = uerr
		}
		return nil, fmt.Errorf("spec: invalid JSON: %w", err)
	}
	return fields, nil
}

func isNull(raw []byte) bool { return string(raw) == "null" }

// decoder reads known fields from decoded JSON values and collects type
// errors.
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

// rawValue decodes a raw JSON value of the batch envelope; ok is false when
// it is absent.
func (d *decoder) rawValue(raw json.RawMessage, field string) (any, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		d.add(field, "type", "must be valid JSON")
		return nil, false
	}
	return v, true
}

// common decodes k into c if it is one of the shared fields.
func (d *decoder) common(c *Common, k string, v any) bool {
	switch k {
	case "type":
		// Decided before; a route's type overrides the body's.
	case "messageId":
		c.MessageID = d.id(v, k)
	case "userId":
		c.UserID = d.id(v, k)
	case "anonymousId":
		c.AnonymousID = d.id(v, k)
	case "timestamp":
		c.Timestamp = d.time(v, k)
	case "originalTimestamp":
		c.OriginalTimestamp = d.time(v, k)
	case "sentAt":
		c.SentAt = d.time(v, k)
	case "receivedAt":
		// Set by the collector; a sender's value is not trusted.
	case "context":
		c.Context = d.object(v, k)
	case "integrations":
		c.Integrations = d.object(v, k)
	case "channel":
		c.Channel = d.str(v, k)
	case "version":
		c.Version = v
	case "writeKey":
		c.WriteKey = d.str(v, k)
	default:
		return false
	}
	return true
}

func (d *decoder) view(name, category *string, props *map[string]any, k string, v any) bool {
	switch k {
	case "name":
		*name = d.str(v, k)
	case "category":
		*category = d.str(v, k)
	case "properties":
		*props = d.object(v, k)
	default:
		return false
	}
	return true
}

func (d *decoder) str(v any, field string) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	}
	d.add(field, "type", "must be a string")
	return ""
}

// id decodes an identifier: a JSON string, or a number kept as its digits.
func (d *decoder) id(v any, field string) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	}
	d.add(field, "type", "must be a string or a number")
	return ""
}

func (d *decoder) time(v any, field string) time.Time {
	switch v := v.(type) {
	case nil:
		return time.Time{}
	case string:
		t, err := ParseTime(v)
		if err != nil {
			d.add(field, "format", "must be an RFC 3339 timestamp")
		}
		return t
	}
	d.add(field, "type", "must be an RFC 3339 timestamp string")
	return time.Time{}
}

func (d *decoder) object(v any, field string) map[string]any {
	switch v := v.(type) {
	case nil:
		return nil
	case map[string]any:
		return v
	}
	d.add(field, "type", "must be an object")
	return nil
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
			// time.Parse accepts offsets up to +24:00 (and +23:60), which
			// time.Time.MarshalJSON refuses to write.
			if _, off := t.Zone(); off <= -24*60*60 || off >= 24*60*60 {
				return time.Time{}, fmt.Errorf("spec: parsing time %q: time zone offset out of range", s)
			}
			return t, nil
		}
	}
	return time.Time{}, err
}
