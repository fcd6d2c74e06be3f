package spec

import (
	"bytes"
	"encoding/json"
	"slices"
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

// MarshalJSON writes t as Segment JSON, including the fields in Extra.
func (t *Track) MarshalJSON() ([]byte, error) {
	type plain Track
	return marshal((*plain)(t), &t.Common, "event", "properties")
}

// MarshalJSON writes i as Segment JSON, including the fields in Extra.
func (i *Identify) MarshalJSON() ([]byte, error) {
	type plain Identify
	return marshal((*plain)(i), &i.Common, "traits")
}

// MarshalJSON writes p as Segment JSON, including the fields in Extra.
func (p *Page) MarshalJSON() ([]byte, error) {
	type plain Page
	return marshal((*plain)(p), &p.Common, "name", "category", "properties")
}

// MarshalJSON writes s as Segment JSON, including the fields in Extra.
func (s *Screen) MarshalJSON() ([]byte, error) {
	type plain Screen
	return marshal((*plain)(s), &s.Common, "name", "category", "properties")
}

// MarshalJSON writes g as Segment JSON, including the fields in Extra.
func (g *Group) MarshalJSON() ([]byte, error) {
	type plain Group
	return marshal((*plain)(g), &g.Common, "groupId", "traits")
}

// MarshalJSON writes a as Segment JSON, including the fields in Extra.
func (a *Alias) MarshalJSON() ([]byte, error) {
	type plain Alias
	return marshal((*plain)(a), &a.Common, "previousId")
}

func marshal(v any, c *Common, own ...string) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || len(c.Extra) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(c.Extra))
	for k := range c.Extra {
		if !knownFields[k] && !slices.Contains(own, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	buf.Grow(len(b) + 64*len(keys))
	buf.Write(b[:len(b)-1]) // without the closing brace
	for _, k := range keys {
		raw := c.Extra[k]
		if !json.Valid(raw) {
			continue // an Extra value set in Go that is not JSON is left out
		}
		buf.WriteByte(',')
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(raw)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
