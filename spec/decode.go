package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
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
// Decode checks JSON types, text and nesting only. A field of the wrong type,
// a string that is not UTF-8 (rule "utf8") or a value nested deeper than
// [MaxDepth] (rule "depth") is reported in a [*ValidationError], returned
// with the event as far as it could be read (a value too deep is not read);
// call the event's Validate method for the call's rules.
// Malformed JSON yields an error wrapping [ErrNotObject] or the json error.
func Decode(data []byte, typ Type) (Event, error) {
	return decode(data, typ, MaxEventMemory)
}

// DecodeStored is [Decode] for JSON that an event's MarshalJSON wrote, such
// as an event a durable queue stored and reads back, with the receivedAt it
// stored beside it (Decode leaves ReceivedAt to the caller): the event
// keeps a copy of data, and its MarshalJSON returns that instead of
// encoding the event again. MarshalJSON writes a decoded event back byte
// for byte, so the kept JSON is what it would write; for other JSON (keys
// repeated, say) it would not be, which is why this is only for JSON
// MarshalJSON wrote. The event is read-only: a change to it would not show
// in its JSON.
//
// An event the HTTP handler accepted was within [MaxEventMemory];
// DecodeStored allows twice that, so that no such event is refused when it
// is read back, while stored data that was never accepted still cannot cost
// unbounded memory. (An event built in Go and enqueued directly is not
// measured: the host keeps its own events within the bound.)
func DecodeStored(data []byte, receivedAt time.Time) (Event, error) {
	e, err := decode(data, "", 2*MaxEventMemory)
	if e != nil && err == nil {
		c := e.Fields()
		c.ReceivedAt = receivedAt
		c.keep(slices.Clone(bytes.Trim(data, jsonSpace)))
	}
	return e, err
}

// decode is Decode with the memory bound as a parameter, for tests that
// measure events past it.
func decode(data []byte, typ Type, maxMemory int) (Event, error) {
	data = bytes.Trim(data, jsonSpace)
	if len(data) == 0 || data[0] != '{' {
		return nil, ErrNotObject
	}
	var buf [24]member
	sc := scanObject(data, 1, "", buf[:0])
	var fbuf [24]field
	var fields []field
	var err error
	tooCostly := sc.mem > maxMemory
	if sc.depth != nil || tooCostly {
		// Decode only the members that are cheap to decode, one by one,
		// so that the caller can still read type, writeKey and the ids,
		// without paying for the rest.
		if !json.Valid(data) {
			return nil, invalidJSON(data)
		}
		fields = shallowFields(sc.members, fbuf[:0])
	} else if fields, err = decodeFields(data, fbuf[:0]); err != nil {
		return nil, fmt.Errorf("spec: invalid JSON: %w", err)
	}
	e, d := fromFields(fields, typ, sc.members)
	d.errs = append(d.errs, sc.fail()...)
	if tooCostly && sc.depth == nil {
		d.errs = append(d.errs, FieldError{Rule: "size", Message: fmt.Sprintf(
			"would hold about %d bytes of memory once decoded; the limit is %d", sc.mem, maxMemory)})
	}
	if e != nil {
		c := e.Fields()
		c.size = len(data)
		c.mem += costEvent
	}
	return e, d.result()
}

// shallowMemberMemory bounds what shallowFields decodes of one member.
const shallowMemberMemory = 4 << 10

// MaxEventMemory bounds the memory one decoded event may hold, as
// [Common.Size] counts it: 16 times the 32 KB an event may take as JSON.
// Real SDK events hold 10 to 20 times their JSON size at most; an event
// built to hold more (thousands of empty objects, say) is refused with the
// rule "size" before it is decoded, so that decoding costs memory in
// proportion to the request.
const MaxEventMemory = 16 * 32 << 10

// shallowFields decodes the members that are neither too deep nor too
// costly, appended to fields, the last of each name kept.
func shallowFields(members []member, fields []field) []field {
	var d decoder
	for _, m := range members {
		if m.deep || m.mem > shallowMemberMemory {
			continue
		}
		if v, ok := d.rawValue(m.value, ""); ok {
			fields = append(fields, field{unquoteKey(m.key), v})
		}
	}
	return lastOfEach(fields)
}

// fromFields builds an event from the members of a decoded JSON object,
// each name once, and its members as scanned (for the fields kept as
// written, and the memory estimate).
func fromFields(fields []field, typ Type, members []member) (Event, *decoder) {
	d := &decoder{}
	if typ == "" {
		for _, f := range fields {
			if f.key == "type" {
				typ = Type(d.str(f.value, "type"))
			}
		}
		if d.errs != nil {
			return nil, d
		}
		if typ == "" {
			d.add("type", "required", "cannot be blank")
			return nil, d
		}
	}
	e := newEvent(typ)
	if e == nil {
		d.add("type", "in", fmt.Sprintf("must be one of track, identify, page, screen, group, alias; got %q", typ))
		return nil, d
	}
	c := e.Fields()
	for _, f := range fields {
		k, v := f.key, f.value
		if d.common(c, k, v) {
			continue
		}
		switch ev := e.(type) {
		case *Track:
			switch k {
			case "event":
				ev.Event = d.str(v, k)
			case "properties":
				ev.Properties = d.object(v, k)
			}
		case *Identify:
			if k == "traits" {
				ev.Traits = d.object(v, k)
			}
		case *Page:
			d.view(&ev.Name, &ev.Category, &ev.Properties, k, v)
		case *Screen:
			d.view(&ev.Name, &ev.Category, &ev.Properties, k, v)
		case *Group:
			switch k {
			case "groupId":
				ev.GroupID = d.id(v, k)
			case "traits":
				ev.Traits = d.object(v, k)
			}
		case *Alias:
			if k == "previousId" {
				ev.PreviousID = d.id(v, k)
			}
		}
	}
	// Unknown fields are kept as written (without insignificant spaces):
	// reading them cost nothing beyond the bytes, and writing them back
	// cannot differ from what the sender sent.
	extra := 0
	for _, m := range members {
		inner := m.key[1 : len(m.key)-1]
		var k string
		if bytes.IndexByte(inner, '\\') >= 0 {
			k = unquoteKey(m.key) // rare: a key spelled with escapes
			if known(typ, k) {
				c.mem += memberCost(k, m)
				continue
			}
		} else if known(typ, string(inner)) {
			c.mem += memberCost(string(inner), m)
			continue
		} else {
			k = string(inner)
		}
		if m.deep {
			continue
		}
		if c.Extra == nil {
			c.Extra = make(map[string][]byte)
		}
		c.Extra[k] = appendCompact(make([]byte, 0, len(m.value)), m.value)
		c.mem += costBytes(len(k)) + costBytes(len(m.value))
		extra++
	}
	c.mem += costExtra(extra)
	for _, t := range [...]time.Time{c.Timestamp, c.OriginalTimestamp, c.SentAt} {
		c.mem += locationCost(t)
	}
	return e, d
}

// memberCost is the heap estimate of a known member once decoded.
func memberCost(k string, m member) int {
	switch k {
	case "type", "receivedAt", "timestamp", "originalTimestamp", "sentAt":
		return 0 // a constant, a time (see locationCost), or not kept
	case "context", "integrations", "properties", "traits", "version":
		return m.mem
	}
	// A string field holds the text without the interface that boxed it.
	return max(0, m.mem-16)
}

// locationCost is the heap of t's zone: time.Parse shares one *Location for
// UTC and for each whole hour from -12 to +14, and allocates one for any
// other offset.
func locationCost(t time.Time) int {
	if t.IsZero() {
		return 0
	}
	if _, off := t.Zone(); off%3600 != 0 || off < -12*3600 || off > 14*3600 {
		return costLocation
	}
	return 0
}

// known reports whether k is a field of Common or of events of type t,
// which MarshalJSON writes itself.
func known(t Type, k string) bool {
	if knownFields[k] {
		return true
	}
	switch t {
	case TypeTrack:
		return k == "event" || k == "properties"
	case TypeIdentify:
		return k == "traits"
	case TypePage, TypeScreen:
		return k == "name" || k == "category" || k == "properties"
	case TypeGroup:
		return k == "groupId" || k == "traits"
	case TypeAlias:
		return k == "previousId"
	}
	return false
}

// Batch is the envelope of a /v1/batch (or /v1/import) request.
//
// DecodeBatch measures the batch-level fields as it reads them, and
// [Batch.MergedSize] counts them so: replacing Context or Integrations
// afterwards does not change what it counts. The events of one Batch may be
// merged and enriched from several goroutines.
type Batch struct {
	// Items holds the events, still as raw JSON; decode each with [Decode].
	// The items are sub-slices of the data given to DecodeBatch.
	Items []json.RawMessage
	// WriteKey is the write key given in the body, if any.
	WriteKey string
	// SentAt is the batch-level sentAt, applied to items that have none.
	SentAt time.Time
	// Context is the batch-level context, merged under each item's own.
	// Events that have no context of their own share this map after Merge.
	Context map[string]any
	// Integrations is the batch-level integrations object, merged under
	// each item's own, and shared like Context.
	Integrations map[string]any

	measured   bool
	sentAtSize int
	context    *batchField // nil when absent or empty
	ints       *batchField
	shared     *sharedContext // Context, as its events share it
}

// sharedContext is a batch-level context shared by the events that inherit
// it, with the one copy of it holding context.ip that Enrich gives them all.
// Neither map is written once events hold it.
type sharedContext struct {
	m      map[string]any
	mu     sync.Mutex
	ip     string
	withIP map[string]any
}

// withIP returns m with context.ip set to ip, made once for all the events.
func (s *sharedContext) with(ip string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.withIP == nil || s.ip != ip {
		m := make(map[string]any, len(s.m)+1)
		maps.Copy(m, s.m)
		m["ip"] = ip
		s.withIP, s.ip = m, ip
	}
	return s.withIP
}

// sameMap reports whether a and b are one map, not merely equal ones.
func sameMap(a, b map[string]any) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// batchField is what MergedSize and Merge need to know of a batch-level
// context or integrations object.
type batchField struct {
	whole   int    // bytes of the member as written, comma included
	entries int    // bytes of its members as written, commas included
	mem     int    // heap estimate of the decoded map
	raw     []byte // the object as written, for keys
	once    sync.Once
	keys    map[string]int // bytes of one member of each key
}

// keySizes returns the bytes of one member of each key, as written. They
// are needed only for events with a context (or integrations) of their own,
// so they are measured when first asked for.
func (f *batchField) keySizes() map[string]int {
	f.once.Do(func() {
		if f.raw == nil {
			return // measured by measureMap
		}
		sc := scanObject(f.raw, 2, "", nil)
		f.keys = make(map[string]int, len(sc.members))
		for _, m := range sc.members {
			f.keys[unquoteKey(m.key)] = len(m.key) + len(":,") + len(m.value)
		}
	})
	return f.keys
}

// DecodeBatch parses the envelope of a batch request. Its keys ("batch",
// "writeKey", "sentAt", "context", "integrations") are matched exactly, as
// an event's are. A missing or non-array
// "batch" field, or a batch-level field of the wrong type, is a
// [*ValidationError]; so is a batch-level context or integrations object
// that an event could not hold (nested deeper than [MaxDepth], or not
// UTF-8). The envelope is then returned too, with the fields that could be
// read (so a caller can still check its writeKey).
func DecodeBatch(data []byte) (*Batch, error) {
	data = bytes.Trim(data, jsonSpace)
	if len(data) == 0 || data[0] != '{' {
		return nil, ErrNotObject
	}
	if !json.Valid(data) {
		return nil, invalidJSON(data)
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
	b := &Batch{measured: true}
	switch {
	case len(env.batch) == 0 || isNull(env.batch):
		d.add("batch", "required", "cannot be blank")
	case env.batch[0] != '[':
		d.add("batch", "type", "must be an array of events")
	default:
		b.Items = elements(env.batch)
	}
	if v, ok := d.scalar(env.writeKey, "writeKey"); ok {
		b.WriteKey = d.str(v, "writeKey")
	}
	if v, ok := d.scalar(env.sentAt, "sentAt"); ok {
		b.SentAt = d.time(v, "sentAt")
		if !b.SentAt.IsZero() {
			b.sentAtSize = len(`"sentAt":,`) + len(env.sentAt)
		}
	}
	b.Context, b.context = d.batchObject(env.context, "context")
	b.Integrations, b.ints = d.batchObject(env.integrations, "integrations")
	if len(b.Context) > 0 {
		b.shared = &sharedContext{m: b.Context}
	}
	if d.errs != nil {
		return b, d.result()
	}
	return b, nil
}

// batchObject decodes and measures the batch-level object raw, named name.
func (d *decoder) batchObject(raw []byte, name string) (map[string]any, *batchField) {
	if len(raw) == 0 || isNull(raw) {
		return nil, nil
	}
	if raw[0] != '{' {
		d.add(name, "type", "must be an object")
		return nil, nil
	}
	// The object sits at level 2 of each event that inherits it.
	var buf [24]member
	sc := scanObject(raw, 2, name, buf[:0])
	if fail := sc.fail(); fail != nil {
		d.errs = append(d.errs, fail...)
		return nil, nil
	}
	if sc.mem > 4*MaxEventMemory {
		d.add(name, "size", fmt.Sprintf("would hold about %d bytes of memory once decoded; the limit is %d", sc.mem, 4*MaxEventMemory))
		return nil, nil
	}
	v, ok := d.rawValue(raw, name)
	if !ok {
		return nil, nil
	}
	m := d.object(v, name)
	if len(m) == 0 {
		return m, nil
	}
	f := &batchField{whole: len(`"":,`) + len(name) + len(raw), mem: sc.mem, raw: raw}
	for _, mb := range sc.members {
		f.entries += len(mb.key) + len(":,") + len(mb.value)
	}
	return m, f
}

// MergedSize returns the size in bytes of e once [Batch.Merge] has applied
// the batch-level sentAt, context and integrations: the JSON e was decoded
// from, plus the batch-level members it inherits, each counted as written
// in the request. The request limits apply to it as they apply to the
// JSON of a single event, so that a batch-level field costs what the same
// field written into each item would: check it against the limit of one
// event, and the sum over a batch against [MaxMergedBatchBytes], before
// Merge.
//
// It is at least the length of the merged event written as compact JSON,
// each key and value spelled as in the request, and at most the item's
// length plus the batch-level members'. MarshalJSON may write more than
// MergedSize, by the escapes it adds as encoding/json does (5 bytes for
// each <, > or & written unescaped in the item or the batch-level context
// and integrations, 3 for each U+2028 or U+2029) and by at most 16 bytes
// more (quotes around numeric ids, a colon in a "+0530" offset).
//
// MergedSize costs O(1), or O(keys) of e's own context and integrations
// when the batch has such fields too (the first such event of a batch also
// has the batch's keys measured, once). It changes neither e nor b's fields.
// For an event already merged it returns the size Merge recorded.
func (b *Batch) MergedSize(e Event) int {
	c := e.Fields()
	if c.merged {
		return c.size
	}
	ctx, ints, sentAt := b.measure()
	n := c.size
	if c.SentAt.IsZero() && !b.SentAt.IsZero() {
		n += sentAt
	}
	return n + ctx.inherited(c.Context) + ints.inherited(c.Integrations)
}

// inherited returns the bytes that merging f under own adds.
func (f *batchField) inherited(own map[string]any) int {
	if f == nil {
		return 0
	}
	if len(own) == 0 {
		return f.whole
	}
	n := f.entries
	keys := f.keySizes()
	for k := range own {
		n -= keys[k]
	}
	return n
}

// heap returns the heap estimate of the decoded map.
func (f *batchField) heap() int {
	if f == nil {
		return 0
	}
	return f.mem
}

// measure returns the measures of the batch-level fields: those DecodeBatch
// took, or for a Batch built in Go, measures taken now by encoding them.
func (b *Batch) measure() (ctx, ints *batchField, sentAt int) {
	if b.measured {
		return b.context, b.ints, b.sentAtSize
	}
	if !b.SentAt.IsZero() {
		sentAt = len(`"sentAt":"",`) + len(b.SentAt.Format(time.RFC3339Nano))
	}
	return measureMap("context", b.Context), measureMap("integrations", b.Integrations), sentAt
}

// measureMap measures a batch-level map built in Go by encoding it.
func measureMap(name string, m map[string]any) *batchField {
	if len(m) == 0 {
		return nil
	}
	f := &batchField{keys: make(map[string]int, len(m)), mem: memOf(m)}
	for k, v := range m {
		w := writer{depth: 1}
		w.b = appendString(w.b, k)
		w.value(v)
		n := len(w.b) + len(":,")
		f.keys[k] = n
		f.entries += n
	}
	f.whole = len(`"":{}`) + len(name) + f.entries
	return f
}

// Merge applies the batch-level sentAt, context and integrations to e, as
// Segment does: the item's own values win, key by key for context and
// integrations. Merge does nothing to an event it has already merged.
//
// An event without a context (or integrations) of its own is given the
// batch's map itself, shared with the Batch and the other events: a batch
// costs its context once, however many events inherit it. Treat these maps
// as read-only, as every integration must treat events. [Enrich] never
// writes into them: to add context.ip it gives the events one copy of the
// batch's context holding it, made once per batch. An event with a context
// of its own gets a new map holding both, which costs O(batch context):
// check [Batch.MergedSize] first and refuse events over the limit, so that
// the copy stays small.
func (b *Batch) Merge(e Event) {
	c := e.Fields()
	if c.merged {
		return
	}
	ctx, ints, _ := b.measure()
	size := b.MergedSize(e)
	if c.SentAt.IsZero() {
		c.SentAt = b.SentAt
	}
	var mem int
	if len(c.Context) == 0 && len(b.Context) > 0 {
		c.Context, mem = b.Context, ctx.heap()
		c.shared = b.shared
		if c.shared == nil || !sameMap(c.shared.m, b.Context) {
			c.shared = &sharedContext{m: b.Context} // a Batch built or changed in Go
		}
	} else {
		c.Context, mem = mergeUnder(c.Context, b.Context, ctx.heap())
	}
	if c.mem > 0 {
		c.mem += mem
	}
	c.Integrations, mem = mergeUnder(c.Integrations, b.Integrations, ints.heap())
	if c.mem > 0 {
		c.mem += mem
	}
	c.size = size
	c.merged = true
}

// mergeUnder returns own with the keys of base that own lacks (base itself
// when own is empty), and the heap it adds to the event (baseMem being
// base's). It never modifies own or base.
func mergeUnder(own, base map[string]any, baseMem int) (map[string]any, int) {
	if len(base) == 0 {
		return own, 0
	}
	if len(own) == 0 {
		return base, baseMem
	}
	out := make(map[string]any, len(own)+len(base))
	maps.Copy(out, base)
	maps.Copy(out, own)
	return out, baseMem + costObject(len(out))
}

// jsonSpace is the whitespace JSON allows around a value.
const jsonSpace = " \t\r\n"

// invalidJSON describes the syntax error in data, which is not valid JSON.
// encoding/json's checker finds it without recursion, however deep data
// nests.
func invalidJSON(data []byte) error {
	return fmt.Errorf("spec: invalid JSON: %w", json.Unmarshal(data, new(any)))
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
	v, err := decodeValue(raw)
	if err != nil {
		d.add(field, "type", "must be valid JSON")
		return nil, false
	}
	return v, true
}

// compound stands for an object or array where a string is expected.
type compound struct{}

// scalar is rawValue for a field that must be a string: an object or array
// is returned as a compound, without being decoded, so that its type error
// costs nothing however deep it nests.
func (d *decoder) scalar(raw json.RawMessage, field string) (any, bool) {
	if len(raw) > 0 && (raw[0] == '{' || raw[0] == '[') {
		return compound{}, true
	}
	return d.rawValue(raw, field)
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
		t, err := parseTime(v)
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

// parseTime parses a timestamp as Segment SDKs send it: RFC 3339 with any
// offset and any number of fractional digits, or the same with a colon-less
// offset ("+0000"). The result keeps the sender's offset.
func parseTime(s string) (time.Time, error) {
	var err error
	for _, layout := range timeLayouts {
		var t time.Time
		if t, err = time.Parse(layout, s); err == nil {
			// time.Parse accepts offsets up to +24:00 (and +23:60), which
			// time.Time.MarshalJSON refuses to write.
			if _, off := t.Zone(); off <= -24*60*60 || off >= 24*60*60 {
				return time.Time{}, fmt.Errorf("spec: parsing time %q: time zone offset out of range", s)
			}
			// Warehouses (BigQuery's TIMESTAMP) and RFC 3339 writers in UTC
			// take the years 1 to 9999 only.
			if y := t.UTC().Year(); y < 1 || y > 9999 {
				return time.Time{}, fmt.Errorf("spec: parsing time %q: outside the years 0001 to 9999 in UTC", s)
			}
			return t, nil
		}
	}
	return time.Time{}, err
}
