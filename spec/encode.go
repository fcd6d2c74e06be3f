package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// knownFields are the top-level names of Common, which MarshalJSON writes
// itself; Extra keys with these names, or with the names of the event type's
// own fields, are skipped so the output never holds a key twice. A name
// another type uses ("name" on a track) is an unknown field like any other.
var knownFields = map[string]bool{
	"type": true, "messageId": true, "userId": true, "anonymousId": true,
	"timestamp": true, "originalTimestamp": true, "sentAt": true, "receivedAt": true,
	"context": true, "integrations": true, "channel": true, "version": true, "writeKey": true,
}

// The encoder below writes exactly what encoding/json writes for these
// types (field order, omitempty, sorted map keys, string escaping, number
// forms), without reflection for the values decoding produces: maps, slices,
// strings, json.Number, float64, bool and nil. Other values built in Go fall
// back to encoding/json. Every event accepted is written at least once per
// integration, so the hand-written encoder earns its keep: BenchmarkMarshal
// (Go 1.26, linux/amd64, 2 shared cores of an AMD EPYC; 2 runs) writes a
// 600-byte browser track call in 2.2 us with 4 allocations, where
// encoding/json writing the same event held as a map takes 5.3-5.5 us and
// 51 allocations; and a 32 KB order of 120 products in 0.10-0.11 ms with
// 125 allocations, against 0.20 ms and 2,077.

// MarshalJSON writes t as Segment JSON, including the fields in Extra; an
// event from [WithJSON], [AppendWithJSON] or [DecodeStored] returns the JSON
// it keeps.
func (t *Track) MarshalJSON() ([]byte, error) { return marshal(t) }

func (t *Track) appendJSON(b []byte) ([]byte, error) {
	w := newWriter(b, &t.Common)
	w.str("event", t.Event, false)
	w.object("properties", t.Properties)
	return w.finish(&t.Common, "event", "properties")
}

// MarshalJSON writes i as Segment JSON, including the fields in Extra; an
// event from [WithJSON], [AppendWithJSON] or [DecodeStored] returns the JSON
// it keeps.
func (i *Identify) MarshalJSON() ([]byte, error) { return marshal(i) }

func (i *Identify) appendJSON(b []byte) ([]byte, error) {
	w := newWriter(b, &i.Common)
	w.object("traits", i.Traits)
	return w.finish(&i.Common, "traits")
}

// MarshalJSON writes p as Segment JSON, including the fields in Extra; an
// event from [WithJSON], [AppendWithJSON] or [DecodeStored] returns the JSON
// it keeps.
func (p *Page) MarshalJSON() ([]byte, error) { return marshal(p) }

func (p *Page) appendJSON(b []byte) ([]byte, error) {
	w := newWriter(b, &p.Common)
	w.str("name", p.Name, true)
	w.str("category", p.Category, true)
	w.object("properties", p.Properties)
	return w.finish(&p.Common, "name", "category", "properties")
}

// MarshalJSON writes s as Segment JSON, including the fields in Extra; an
// event from [WithJSON], [AppendWithJSON] or [DecodeStored] returns the JSON
// it keeps.
func (s *Screen) MarshalJSON() ([]byte, error) { return marshal(s) }

func (s *Screen) appendJSON(b []byte) ([]byte, error) {
	w := newWriter(b, &s.Common)
	w.str("name", s.Name, true)
	w.str("category", s.Category, true)
	w.object("properties", s.Properties)
	return w.finish(&s.Common, "name", "category", "properties")
}

// MarshalJSON writes g as Segment JSON, including the fields in Extra; an
// event from [WithJSON], [AppendWithJSON] or [DecodeStored] returns the JSON
// it keeps.
func (g *Group) MarshalJSON() ([]byte, error) { return marshal(g) }

func (g *Group) appendJSON(b []byte) ([]byte, error) {
	w := newWriter(b, &g.Common)
	w.str("groupId", g.GroupID, false)
	w.object("traits", g.Traits)
	return w.finish(&g.Common, "groupId", "traits")
}

// MarshalJSON writes a as Segment JSON, including the fields in Extra; an
// event from [WithJSON], [AppendWithJSON] or [DecodeStored] returns the JSON
// it keeps.
func (a *Alias) MarshalJSON() ([]byte, error) { return marshal(a) }

func (a *Alias) appendJSON(b []byte) ([]byte, error) {
	w := newWriter(b, &a.Common)
	w.str("previousId", a.PreviousID, false)
	return w.finish(&a.Common, "previousId")
}

// appender is an event type of this package: it appends its own JSON.
type appender interface {
	Event
	appendJSON(b []byte) ([]byte, error)
}

// marshal is MarshalJSON for this package's types: a copy of the JSON e
// keeps, else e written into a buffer sized for it.
func marshal(e appender) ([]byte, error) {
	c := e.Fields()
	if b := c.kept(); b != nil {
		return b, nil
	}
	return e.appendJSON(make([]byte, 0, encodedSizeHint(c)))
}

// encodedSizeHint is room for c's event as JSON: the bytes it was decoded
// from, and some for the fields enrichment adds (messageId, the times).
func encodedSizeHint(c *Common) int { return 512 + c.size }

// AppendJSON appends e's JSON, as its MarshalJSON writes it, to dst and
// returns the extended buffer. It is what an integration that gathers
// events into one buffer (a file's lines, a request body) uses: for this
// package's types it writes into dst directly, and for an event that keeps
// its JSON ([WithJSON], [AppendWithJSON], [DecodeStored]) it copies the
// bytes kept, so that nothing is encoded or copied twice. For an Event
// type of another package it appends what its MarshalJSON returns, which
// must not be empty. On error it returns dst unchanged.
func AppendJSON(dst []byte, e Event) ([]byte, error) {
	n := len(dst)
	b, err := appendJSON(dst, e)
	if err != nil {
		return dst[:n], err
	}
	return b, nil
}

func appendJSON(dst []byte, e Event) ([]byte, error) {
	// The types are named, not asserted as appender: a type of another
	// package that embeds one of them has its appendJSON too, but perhaps
	// a MarshalJSON of its own.
	var a appender
	switch e := e.(type) {
	case *Track:
		a = e
	case *Identify:
		a = e
	case *Page:
		a = e
	case *Screen:
		a = e
	case *Group:
		a = e
	case *Alias:
		a = e
	default:
		b, err := e.MarshalJSON()
		if err != nil {
			return dst, err
		}
		if len(b) == 0 {
			// Not JSON; and a queue that passes dst full counts on the
			// append to give the record an array of its own.
			return dst, fmt.Errorf("spec: %T.MarshalJSON wrote nothing", e)
		}
		return append(dst, b...), nil
	}
	c := a.Fields()
	if c.keeps() {
		return append(dst, c.json...), nil
	}
	return a.appendJSON(slices.Grow(dst, encodedSizeHint(c)))
}

// WithJSON returns e's JSON, as MarshalJSON writes it, and a shallow copy
// of e that keeps it: the copy's MarshalJSON returns a copy of these bytes
// instead of encoding the event again. e itself is not changed. It is for a
// durable queue, which encodes each event it accepts once and hands the
// copy to integrations that would each encode it again (the JSON-lines
// file, the webhook, BigQuery's raw column).
//
// The copy shares e's maps. Like every event handed to integrations it is
// read-only: a change to it would not show in its JSON (to change one, copy
// its struct: a value copy keeps nothing). The bytes returned are the ones
// the copy keeps: read them, do not change them. For an Event type of
// another package, WithJSON returns e itself, which keeps nothing.
func WithJSON(e Event) (Event, []byte, error) {
	cp, b, err := AppendWithJSON(nil, e)
	if err != nil {
		return nil, nil, err
	}
	return cp, b[:len(b):len(b)], nil
}

// AppendWithJSON is [WithJSON] writing e's JSON at the end of dst: it
// appends the JSON as [AppendJSON] does, and returns a copy of e that keeps
// the bytes appended, with the extended buffer. It is for a queue whose
// records hold the event's JSON after a header of their own: it writes the
// JSON in place rather than encoding it and then copying it in. For an
// Event type of another package it appends the JSON all the same and
// returns e itself, which keeps nothing. On error it returns nil and dst
// unchanged.
//
// Give each record a buffer of its own by passing dst with no room left,
// dst[:len(dst):len(dst)]: the JSON's append (never empty) then moves the
// header to a new array that the copy alone holds, for a decoded event
// sized by the encoder's estimate. The copy holds on to the whole array
// its bytes are in, and those bytes, from len(dst) to the returned
// buffer's length, must not change while it is in use: do not write into
// them, reuse the array (a pool, buf[:0]), or append to dst again while the
// returned buffer shares its array. The header below len(dst) is the
// caller's to change. A buffer shared by many events stays in memory while
// any of them does, though each counts only its JSON in [Common.Size].
func AppendWithJSON(dst []byte, e Event) (Event, []byte, error) {
	n := len(dst)
	b, err := appendJSON(dst, e)
	if err != nil {
		return nil, dst[:n], err
	}
	return keeping(e, b[n:len(b):len(b)]), b, nil
}

// keeping returns a shallow copy of e that keeps b as its JSON, or e itself
// for an Event type of another package.
func keeping(e Event, b []byte) Event {
	switch e := e.(type) {
	case *Track:
		return withKept(e, b)
	case *Identify:
		return withKept(e, b)
	case *Page:
		return withKept(e, b)
	case *Screen:
		return withKept(e, b)
	case *Group:
		return withKept(e, b)
	case *Alias:
		return withKept(e, b)
	}
	return e // nothing to keep
}

// withKept returns a shallow copy of e that keeps b.
func withKept[T any, P interface {
	*T
	Event
}](e P, b []byte) Event {
	cp := P(new(T))
	*cp = *e
	cp.Fields().keep(b)
	return cp
}

// keep makes c keep b as its JSON, until c is copied.
func (c *Common) keep(b []byte) { c.json, c.jsonOf = b, c }

// kept returns a copy of the JSON c keeps (see [WithJSON] and
// [DecodeStored]), or nil.
func (c *Common) kept() []byte {
	if !c.keeps() {
		return nil
	}
	return slices.Clone(c.json)
}

// keeps reports whether c keeps its JSON.
func (c *Common) keeps() bool { return c.json != nil && c.jsonOf == c }

// writer appends one JSON object; the first error sticks.
type writer struct {
	b   []byte
	err error
	// depth is the nesting level being written, the event's own object
	// being level 1. Beyond MaxDepth, which Decode refuses too, writing
	// fails: a map that contains itself is an error, not a stack overflow.
	depth int
}

// newWriter starts the object, at the end of b, with the fields of c, in
// Common's field order.
func newWriter(b []byte, c *Common) *writer {
	w := &writer{b: b, depth: 1}
	w.b = append(w.b, '{')
	w.str("type", string(c.Type), false)
	w.str("messageId", c.MessageID, true)
	w.str("userId", c.UserID, true)
	w.str("anonymousId", c.AnonymousID, true)
	w.time("timestamp", c.Timestamp)
	w.time("originalTimestamp", c.OriginalTimestamp)
	w.time("sentAt", c.SentAt)
	w.time("receivedAt", c.ReceivedAt)
	w.object("context", c.Context)
	w.object("integrations", c.Integrations)
	w.str("channel", c.Channel, true)
	if c.Version != nil {
		w.key("version")
		w.value(c.Version)
	}
	w.str("writeKey", c.WriteKey, true)
	return w
}

// finish appends the Extra fields not named known or own, in key order, and
// closes the object.
func (w *writer) finish(c *Common, own ...string) ([]byte, error) {
	if len(c.Extra) > 0 {
		keys := make([]string, 0, len(c.Extra))
		for k := range c.Extra {
			if !knownFields[k] && !slices.Contains(own, k) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			raw := c.Extra[k]
			if !json.Valid(raw) {
				continue // an Extra value set in Go that is not JSON is left out
			}
			w.key(k)
			w.b = appendCompact(w.b, raw)
		}
	}
	if w.err != nil {
		return nil, w.err
	}
	return append(w.b, '}'), nil
}

func (w *writer) key(k string) {
	if w.b[len(w.b)-1] != '{' {
		w.b = append(w.b, ',')
	}
	w.b = appendString(w.b, k)
	w.b = append(w.b, ':')
}

func (w *writer) str(k, v string, omitEmpty bool) {
	if omitEmpty && v == "" {
		return
	}
	w.key(k)
	w.b = appendString(w.b, v)
}

func (w *writer) time(k string, t time.Time) {
	if t.IsZero() {
		return
	}
	if y := t.Year(); y < 0 || y > 9999 {
		w.fail(fmt.Errorf("spec: %s: year %d outside of range [0,9999]", k, y))
		return
	}
	if _, offset := t.Zone(); offset <= -24*60*60 || offset >= 24*60*60 {
		w.fail(fmt.Errorf("spec: %s: timezone hour outside of range [0,23]", k))
		return
	}
	w.key(k)
	w.b = append(t.AppendFormat(append(w.b, '"'), time.RFC3339Nano), '"')
}

func (w *writer) object(k string, m map[string]any) {
	if len(m) == 0 {
		return
	}
	w.key(k)
	w.value(m)
}

func (w *writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// value appends v as encoding/json would.
func (w *writer) value(v any) {
	switch v := v.(type) {
	case nil:
		w.b = append(w.b, "null"...)
	case string:
		w.b = appendString(w.b, v)
	case bool:
		w.b = strconv.AppendBool(w.b, v)
	case json.Number:
		s := string(v)
		if s == "" {
			s = "0"
		}
		if !isNumber(s) {
			w.fail(fmt.Errorf("spec: invalid number literal %q", s))
			return
		}
		w.b = append(w.b, s...)
	case float64:
		w.b = appendFloat(w.b, v, w)
	case map[string]any:
		if w.depth++; w.depth > MaxDepth {
			w.fail(errTooDeep)
			return
		}
		defer func() { w.depth-- }()
		if v == nil {
			w.b = append(w.b, "null"...)
			return
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.b = append(w.b, '{')
		for i, k := range keys {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.b = appendString(w.b, k)
			w.b = append(w.b, ':')
			w.value(v[k])
		}
		w.b = append(w.b, '}')
	case []any:
		if w.depth++; w.depth > MaxDepth {
			w.fail(errTooDeep)
			return
		}
		defer func() { w.depth-- }()
		if v == nil {
			w.b = append(w.b, "null"...)
			return
		}
		w.b = append(w.b, '[')
		for i, x := range v {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.value(x)
		}
		w.b = append(w.b, ']')
	default:
		b, err := json.Marshal(v)
		if err != nil {
			w.fail(err)
			return
		}
		w.b = append(w.b, b...)
	}
}

var errTooDeep = fmt.Errorf("spec: value nested more than %d levels deep, or a cycle", MaxDepth)

// isNumber reports whether s is a JSON number and nothing else.
func isNumber(s string) bool { return numberEnd(s, 0) == len(s) }

// appendFloat formats f as encoding/json does.
func appendFloat(b []byte, f float64, w *writer) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		w.fail(errors.New("spec: unsupported value: " + strconv.FormatFloat(f, 'g', -1, 64)))
		return b
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// plain holds the bytes appendString copies as they are: ASCII but for
// control characters, the quote, the backslash and <, > and &. (A table:
// one load a byte instead of six comparisons, BenchmarkMarshalTrack.)
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = !strings.ContainsRune(`"\<>&`, rune(c))
	}
	return t
}()

// appendString appends s as a JSON string, escaping as encoding/json does
// (HTML characters, U+2028 and U+2029 included; invalid UTF-8 becomes
// U+FFFD).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendCompact appends the valid JSON raw without insignificant spaces,
// escaping <, >, &, U+2028 and U+2029 inside strings, as encoding/json
// writes a json.RawMessage.
func appendCompact(b, raw []byte) []byte {
	inString, escaped := false, false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			case c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
				continue
			case c == 0xE2 && i+2 < len(raw) && raw[i+1] == 0x80 && raw[i+2]&^1 == 0xA8:
				b = append(b, '\\', 'u', '2', '0', '2', hexDigits[raw[i+2]&0xF])
				i += 2
				continue
			}
			b = append(b, c)
		case c == '"':
			inString = true
			b = append(b, c)
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		default:
			b = append(b, c)
		}
	}
	return b
}
