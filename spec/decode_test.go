package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDecodeSDKPayloads(t *testing.T) {
	type want struct {
		typ         Type
		userID      string
		anonymousID string
		messageID   string
		timestamp   string // RFC 3339; the offset is checked too
		sentAt      string // RFC 3339 or ""
		writeKey    string
		extra       []string // sorted Extra keys
		check       func(t *testing.T, e Event)
	}
	nodeLibrary := func(t *testing.T, e Event) {
		t.Helper()
		c := e.Fields()
		lib, _ := c.Context["library"].(map[string]any)
		if lib["name"] != "@segment/analytics-node" || lib["version"] != "3.1.0" {
			t.Errorf("context.library = %v", c.Context["library"])
		}
		if c.Integrations == nil || len(c.Integrations) != 0 {
			t.Errorf("integrations = %#v, want an empty, non-nil map", c.Integrations)
		}
		var meta map[string]string
		if err := json.Unmarshal(c.Extra["_metadata"], &meta); err != nil || meta["jsRuntime"] != "node" {
			t.Errorf("Extra[_metadata] = %s (%v)", c.Extra["_metadata"], err)
		}
	}
	browserContext := func(path, locale string) func(t *testing.T, e Event) {
		return func(t *testing.T, e Event) {
			t.Helper()
			c := e.Fields()
			page, _ := c.Context["page"].(map[string]any)
			if page["path"] != path {
				t.Errorf("context.page.path = %v, want %q", page["path"], path)
			}
			if ua, _ := c.Context["userAgent"].(string); !strings.HasPrefix(ua, "Mozilla/5.0 (") {
				t.Errorf("context.userAgent = %q", ua)
			}
			if c.Context["locale"] != locale {
				t.Errorf("context.locale = %v, want %q", c.Context["locale"], locale)
			}
			lib, _ := c.Context["library"].(map[string]any)
			if lib["name"] != "analytics.js" {
				t.Errorf("context.library = %v", c.Context["library"])
			}
		}
	}
	both := func(fs ...func(t *testing.T, e Event)) func(t *testing.T, e Event) {
		return func(t *testing.T, e Event) {
			t.Helper()
			for _, f := range fs {
				f(t, e)
			}
		}
	}

	tests := map[string]want{
		"go_track.json": {
			typ: TypeTrack, userID: "u1", messageID: "a37edd1c-5f4b-4c8e-9d2a-1b3c5d7e9f01",
			timestamp: "2024-01-02T03:04:05Z",
			check: func(t *testing.T, e Event) {
				tr := e.(*Track)
				if tr.Event != "Signed Up" {
					t.Errorf("event = %q", tr.Event)
				}
				want := map[string]any{"plan": "pro", "seats": json.Number("3")}
				if !reflect.DeepEqual(tr.Properties, want) {
					t.Errorf("properties = %#v, want %#v", tr.Properties, want)
				}
				if tr.Context != nil || tr.Integrations != nil {
					t.Errorf("context = %v, integrations = %v, want none", tr.Context, tr.Integrations)
				}
			},
		},
		"go_identify.json": {
			typ: TypeIdentify, userID: "u1", messageID: "89ecfd05-2b1a-4f6e-8c3d-5a7b9c1d3e5f",
			timestamp: "2024-01-02T03:04:05+02:00",
			check: func(t *testing.T, e Event) {
				id := e.(*Identify)
				if id.Traits["email"] != "a@b.co" || id.Traits["name"] != "Ada Lovelace" {
					t.Errorf("traits = %v", id.Traits)
				}
			},
		},
		"go_page.json": {
			typ: TypePage, anonymousID: "a1", messageID: "251bb7a7-3c2d-4e1f-a0b9-c8d7e6f5a4b3",
			timestamp: "2024-01-02T03:04:05Z",
			check: func(t *testing.T, e Event) {
				p := e.(*Page)
				if p.Name != "Home" || p.Category != "" {
					t.Errorf("name, category = %q, %q", p.Name, p.Category)
				}
				if p.Context["ip"] != "1.2.3.4" {
					t.Errorf("context.ip = %v", p.Context["ip"])
				}
			},
		},
		"go_screen.json": {
			typ: TypeScreen, userID: "u1", messageID: "0f1e2d3c-4b5a-4968-8776-655443322110",
			timestamp: "2024-01-02T03:04:05.123456789Z",
			check: func(t *testing.T, e Event) {
				s := e.(*Screen)
				if s.Name != "Settings" || s.Properties["tab"] != "billing" {
					t.Errorf("name = %q, properties = %v", s.Name, s.Properties)
				}
				want := map[string]any{"All": true, "Mixpanel": false}
				if !reflect.DeepEqual(s.Integrations, want) {
					t.Errorf("integrations = %#v, want %#v", s.Integrations, want)
				}
				if ns := s.Timestamp.Nanosecond(); ns != 123456789 {
					t.Errorf("timestamp nanoseconds = %d", ns)
				}
			},
		},
		"go_group.json": {
			typ: TypeGroup, userID: "u1", anonymousID: "a1", messageID: "6b5a4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d",
			timestamp: "2024-01-02T03:04:05-05:30",
			check: func(t *testing.T, e Event) {
				g := e.(*Group)
				if g.GroupID != "g1" {
					t.Errorf("groupId = %q", g.GroupID)
				}
				if g.Traits["employees"] != json.Number("120") || g.Traits["name"] != "Acme" {
					t.Errorf("traits = %#v", g.Traits)
				}
			},
		},
		"go_alias.json": {
			typ: TypeAlias, userID: "u1", messageID: "c3d2e1f0-a9b8-4c7d-8e6f-5a4b3c2d1e0f",
			timestamp: "2024-01-02T03:04:05Z",
			check: func(t *testing.T, e Event) {
				if a := e.(*Alias); a.PreviousID != "a1" {
					t.Errorf("previousId = %q", a.PreviousID)
				}
			},
		},
		"node_track.json": {
			typ: TypeTrack, userID: "u1", messageID: "m-1", timestamp: "2024-01-02T03:04:05Z",
			extra: []string{"_metadata"},
			check: both(nodeLibrary, func(t *testing.T, e Event) {
				tr := e.(*Track)
				if tr.Event != "Signed Up" || tr.Properties["plan"] != "pro" {
					t.Errorf("event = %q, properties = %v", tr.Event, tr.Properties)
				}
			}),
		},
		"node_identify.json": {
			typ: TypeIdentify, userID: "u1", messageID: "node-next-1795686568675-644ee9e4-a83e-4e43-bc51-6a242de042f4",
			timestamp: "2024-01-02T03:04:05Z", extra: []string{"_metadata"},
			check: both(nodeLibrary, func(t *testing.T, e Event) {
				if id := e.(*Identify); id.Traits["email"] != "a@b.co" {
					t.Errorf("traits = %v", id.Traits)
				}
			}),
		},
		"node_page.json": {
			typ: TypePage, anonymousID: "a1", messageID: "node-next-1795686568676-0d6c3e1a-7f0b-4a35-9c1e-2b8d4f6a9e70",
			timestamp: "2024-01-02T03:04:05Z", extra: []string{"_metadata"},
			check: both(nodeLibrary, func(t *testing.T, e Event) {
				if p := e.(*Page); p.Name != "Home" || p.Properties["url"] != "/" {
					t.Errorf("name = %q, properties = %v", p.Name, p.Properties)
				}
			}),
		},
		"node_screen.json": {
			typ: TypeScreen, userID: "u1", messageID: "node-next-1795686568677-5e2f7a9b-1c3d-4e5f-8a6b-7c8d9e0f1a2b",
			timestamp: "2024-01-02T03:04:05Z", extra: []string{"_metadata"},
			check: both(nodeLibrary, func(t *testing.T, e Event) {
				s := e.(*Screen)
				if s.Name != "Main" || s.Properties == nil || len(s.Properties) != 0 {
					t.Errorf("name = %q, properties = %#v, want Main and an empty map", s.Name, s.Properties)
				}
			}),
		},
		"node_group.json": {
			typ: TypeGroup, userID: "u1", messageID: "node-next-1795686568678-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
			timestamp: "2024-01-02T03:04:05Z", extra: []string{"_metadata"},
			check: both(nodeLibrary, func(t *testing.T, e Event) {
				if g := e.(*Group); g.GroupID != "g1" || g.Traits["name"] != "Acme" {
					t.Errorf("groupId = %q, traits = %v", g.GroupID, g.Traits)
				}
			}),
		},
		"node_alias.json": {
			typ: TypeAlias, userID: "u1", messageID: "node-next-1795686568679-1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9",
			timestamp: "2024-01-02T03:04:05Z", extra: []string{"_metadata"},
			check: both(nodeLibrary, func(t *testing.T, e Event) {
				if a := e.(*Alias); a.PreviousID != "a1" {
					t.Errorf("previousId = %q", a.PreviousID)
				}
			}),
		},
		"js_track.json": {
			typ: TypeTrack, anonymousID: "5d0b8e3e-8b7a-4c1f-9e2d-3a4b5c6d7e8f",
			messageID: "ajs-next-1715678464912-4f1e0a3b-5c2d-4e8f-9a7b-1c2d3e4f5a6b",
			timestamp: "2024-05-14T09:21:04.912Z", sentAt: "2024-05-14T09:21:04.920Z", writeKey: "WRITE_KEY",
			extra: []string{"_metadata"},
			check: both(browserContext("/products/42", "en-US"), func(t *testing.T, e Event) {
				tr := e.(*Track)
				if tr.Event != "Product Viewed" {
					t.Errorf("event = %q", tr.Event)
				}
				if tr.Properties["price"] != json.Number("18.99") || tr.Properties["quantity"] != json.Number("1") {
					t.Errorf("properties = %#v", tr.Properties)
				}
				if tr.Properties["name"] != "Monopoly: 3rd Edition" {
					t.Errorf("properties.name = %v", tr.Properties["name"])
				}
			}),
		},
		"js_page.json": {
			typ: TypePage, anonymousID: "5d0b8e3e-8b7a-4c1f-9e2d-3a4b5c6d7e8f",
			messageID: "ajs-next-1715678461034-8c7b6a59-4d3e-4f2a-9b1c-0d9e8f7a6b5c",
			timestamp: "2024-05-14T09:21:01.034Z", sentAt: "2024-05-14T09:21:01.040Z", writeKey: "WRITE_KEY",
			extra: []string{"_metadata"},
			check: both(browserContext("/pricing", "de-DE"), func(t *testing.T, e Event) {
				p := e.(*Page)
				if p.Name != "Pricing" || p.Category != "Docs" || p.Properties["title"] != "Pricing – Acme" {
					t.Errorf("name = %q, category = %q, properties = %v", p.Name, p.Category, p.Properties)
				}
			}),
		},
		"js_identify.json": {
			typ: TypeIdentify, userID: "97980cfea0067", anonymousID: "5d0b8e3e-8b7a-4c1f-9e2d-3a4b5c6d7e8f",
			messageID: "ajs-next-1715678530500-2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
			timestamp: "2024-05-14T09:22:10.5Z", sentAt: "2024-05-14T09:22:10.517Z", writeKey: "WRITE_KEY",
			extra: []string{"_metadata"},
			check: both(browserContext("/signup", "en-GB"), func(t *testing.T, e Event) {
				id := e.(*Identify)
				addr, _ := id.Traits["address"].(map[string]any)
				if addr["city"] != "San Francisco" || id.Traits["logins"] != json.Number("5") {
					t.Errorf("traits = %#v", id.Traits)
				}
				if id.Integrations["Intercom"] != false || id.Integrations["All"] != true {
					t.Errorf("integrations = %v", id.Integrations)
				}
			}),
		},
		"js_group.json": {
			typ: TypeGroup, userID: "97980cfea0067", anonymousID: "5d0b8e3e-8b7a-4c1f-9e2d-3a4b5c6d7e8f",
			messageID: "ajs-next-1715678580001-7d6c5b4a-3f2e-4d1c-8b0a-9f8e7d6c5b4a",
			timestamp: "2024-05-14T09:23:00.001Z", sentAt: "2024-05-14T09:23:00.012Z", writeKey: "WRITE_KEY",
			extra: []string{"_metadata"},
			check: both(browserContext("/settings/team", "en-US"), func(t *testing.T, e Event) {
				g := e.(*Group)
				if g.GroupID != "0e8c78ea9d97a7b8185e8632" || g.Traits["employees"] != json.Number("329") {
					t.Errorf("groupId = %q, traits = %#v", g.GroupID, g.Traits)
				}
			}),
		},
		"js_alias.json": {
			typ: TypeAlias, userID: "97980cfea0067", anonymousID: "5d0b8e3e-8b7a-4c1f-9e2d-3a4b5c6d7e8f",
			messageID: "ajs-next-1715678531002-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
			timestamp: "2024-05-14T09:22:11.002Z", sentAt: "2024-05-14T09:22:11.010Z", writeKey: "WRITE_KEY",
			extra: []string{"_metadata"},
			check: both(browserContext("/signup", "en-GB"), func(t *testing.T, e Event) {
				if a := e.(*Alias); a.PreviousID != "5d0b8e3e-8b7a-4c1f-9e2d-3a4b5c6d7e8f" {
					t.Errorf("previousId = %q", a.PreviousID)
				}
			}),
		},
	}

	// Every event file in testdata has an entry, so a new file cannot go
	// untested.
	for _, name := range testdataEvents(t) {
		if _, ok := tests[name]; !ok {
			t.Errorf("testdata/%s has no entry in this table", name)
		}
	}

	for name, w := range tests {
		t.Run(name, func(t *testing.T) {
			data := readTestdata(t, name)
			e, err := Decode(data, "")
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got, want := reflect.TypeOf(e), reflect.TypeOf(newEvent(w.typ)); got != want {
				t.Fatalf("Decode returned %v, want %v", got, want)
			}
			c := e.Fields()
			if c.Type != w.typ {
				t.Errorf("Type = %q, want %q", c.Type, w.typ)
			}
			if c.UserID != w.userID || c.AnonymousID != w.anonymousID || c.MessageID != w.messageID {
				t.Errorf("userId, anonymousId, messageId = %q, %q, %q; want %q, %q, %q",
					c.UserID, c.AnonymousID, c.MessageID, w.userID, w.anonymousID, w.messageID)
			}
			assertSameTime(t, "timestamp", c.Timestamp, mustTime(w.timestamp))
			if w.sentAt != "" {
				assertSameTime(t, "sentAt", c.SentAt, mustTime(w.sentAt))
			} else if !c.SentAt.IsZero() {
				t.Errorf("sentAt = %v, want zero", c.SentAt)
			}
			if !c.OriginalTimestamp.IsZero() || !c.ReceivedAt.IsZero() {
				t.Errorf("originalTimestamp = %v, receivedAt = %v; want both zero", c.OriginalTimestamp, c.ReceivedAt)
			}
			if c.WriteKey != w.writeKey {
				t.Errorf("writeKey = %q, want %q", c.WriteKey, w.writeKey)
			}
			var extra []string
			for k := range c.Extra {
				extra = append(extra, k)
			}
			slices.Sort(extra)
			if !slices.Equal(extra, w.extra) {
				t.Errorf("Extra keys = %q, want %q", extra, w.extra)
			}
			if c.Size() < len(data) {
				t.Errorf("Size() = %d, less than the %d bytes of JSON", c.Size(), len(data))
			}
			if err := e.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			w.check(t, e)
		})
	}
}

func TestDecodeRouteType(t *testing.T) {
	tests := []struct {
		name  string
		route Type
		body  string
		want  Event
	}{
		{"route overrides body type", TypeTrack, `{"type":"identify","userId":"u","event":"E"}`, &Track{}},
		{"route with no body type", TypeAlias, `{"userId":"u","previousId":"p"}`, &Alias{}},
		{"route ignores a body type of the wrong JSON type", TypePage, `{"type":5,"anonymousId":"a"}`, &Page{}},
		{"route ignores an unknown body type", TypeGroup, `{"type":"purchase","userId":"u","groupId":"g"}`, &Group{}},
		{"body type alone", "", `{"type":"screen","userId":"u","name":"Home"}`, &Screen{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustDecode(t, tt.body, tt.route)
			if reflect.TypeOf(e) != reflect.TypeOf(tt.want) {
				t.Fatalf("Decode returned %T, want %T", e, tt.want)
			}
			wantType := tt.route
			if wantType == "" {
				wantType = TypeScreen
			}
			if got := e.Fields().Type; got != wantType {
				t.Errorf("Type = %q, want %q", got, wantType)
			}
			if _, ok := e.Fields().Extra["type"]; ok {
				t.Errorf("the body's type was kept in Extra")
			}
			if err := e.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			// The event is written out with the route's type.
			var out struct{ Type string }
			if err := json.Unmarshal(mustMarshal(t, e), &out); err != nil || Type(out.Type) != wantType {
				t.Errorf("marshalled type = %q (%v), want %q", out.Type, err, wantType)
			}
		})
	}
	// The route's type decides which fields are known: "event" means nothing
	// to an identify, so it is kept as an unknown field.
	e := mustDecode(t, `{"type":"track","userId":"u","event":"E"}`, TypeIdentify)
	if string(e.Fields().Extra["event"]) != `"E"` {
		t.Errorf("identify with an event field: Extra = %q, want event kept", extraStrings(e.Fields().Extra))
	}
}

func TestDecodeTypeErrors(t *testing.T) {
	tests := []struct {
		name  string
		route Type
		body  string
		rule  string
	}{
		{"missing", "", `{"userId":"u","event":"E"}`, "required"},
		{"empty string", "", `{"type":"","userId":"u"}`, "required"},
		{"null", "", `{"type":null,"userId":"u"}`, "required"},
		{"unknown", "", `{"type":"purchase","userId":"u"}`, "in"},
		{"wrong case", "", `{"type":"Track","userId":"u"}`, "in"},
		{"number", "", `{"type":1,"userId":"u"}`, "type"},
		{"object", "", `{"type":{"name":"track"},"userId":"u"}`, "type"},
		{"unknown route", "purchase", `{"type":"track","userId":"u","event":"E"}`, "in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Decode([]byte(tt.body), tt.route)
			if e != nil {
				t.Errorf("Decode returned an event (%T) for an unusable type", e)
			}
			assertFieldRules(t, err, "type/"+tt.rule)
		})
	}
}

func TestDecodeTimestamps(t *testing.T) {
	tests := []struct {
		in     string
		utc    string // the instant, in UTC
		offset int    // seconds east of UTC the result keeps
	}{
		{"2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z", 0},
		{"2024-01-02T05:04:05+02:00", "2024-01-02T03:04:05Z", 2 * 3600},
		{"2024-01-01T21:34:05-05:30", "2024-01-02T03:04:05Z", -(5*3600 + 30*60)},
		{"2024-01-02T03:04:05.1Z", "2024-01-02T03:04:05.1Z", 0},
		{"2024-01-02T03:04:05.123Z", "2024-01-02T03:04:05.123Z", 0},
		{"2024-01-02T03:04:05.123456789Z", "2024-01-02T03:04:05.123456789Z", 0},
		{"2024-01-02T08:34:05.250+05:30", "2024-01-02T03:04:05.25Z", 5*3600 + 30*60},
		{"2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05Z", 0},
		{"2024-01-02T03:04:05+0000", "2024-01-02T03:04:05Z", 0},
		{"2024-01-02T03:04:05.123+0000", "2024-01-02T03:04:05.123Z", 0},
		{"2024-01-02T08:34:05+0530", "2024-01-02T03:04:05Z", 5*3600 + 30*60},
		{"2024-01-01T23:04:05.5-0400", "2024-01-02T03:04:05.5Z", -4 * 3600},
		{"2024-01-02T03:04:05.000000001Z", "2024-01-02T03:04:05.000000001Z", 0},
		{"2024-01-02T03:04:05+23:59", "2024-01-01T03:05:05Z", 23*3600 + 59*60},
	}
	for _, field := range []string{"timestamp", "originalTimestamp", "sentAt"} {
		for _, tt := range tests {
			t.Run(field+"="+tt.in, func(t *testing.T) {
				body := `{"type":"identify","userId":"u","` + field + `":"` + tt.in + `"}`
				c := mustDecode(t, body, "").Fields()
				got := map[string]time.Time{
					"timestamp": c.Timestamp, "originalTimestamp": c.OriginalTimestamp, "sentAt": c.SentAt,
				}[field]
				want := mustTime(tt.utc)
				if !got.Equal(want) {
					t.Errorf("%s = %v, want %v", field, got, want)
				}
				if _, off := got.Zone(); off != tt.offset {
					t.Errorf("%s offset = %d, want %d", field, off, tt.offset)
				}
				direct, err := parseTime(tt.in)
				if err != nil || !direct.Equal(want) {
					t.Errorf("parseTime(%q) = %v, %v", tt.in, direct, err)
				}
			})
		}
	}
}

func TestDecodeTimestampErrors(t *testing.T) {
	tests := []struct {
		name, value, rule string
	}{
		{"space separator", `"2024-01-02 03:04:05Z"`, "format"},
		{"date only", `"2024-01-02"`, "format"},
		{"no offset", `"2024-01-02T03:04:05"`, "format"},
		{"unix seconds as string", `"1704164645"`, "format"},
		{"empty string", `""`, "format"},
		{"month 13", `"2024-13-02T03:04:05Z"`, "format"},
		{"offset hour 24 with colon", `"2024-01-02T03:04:05+24:00"`, "format"},
		{"offset hour 24 without colon", `"2024-01-02T03:04:05+2400"`, "format"},
		{"offset 23:60", `"2024-01-02T03:04:05+23:60"`, "format"},
		{"unix seconds as number", `1704164645`, "type"},
		{"object", `{"seconds":1}`, "type"},
		{"bool", `true`, "type"},
	}
	for _, field := range []string{"timestamp", "originalTimestamp", "sentAt"} {
		for _, tt := range tests {
			t.Run(field+"/"+tt.name, func(t *testing.T) {
				body := `{"type":"track","userId":"u","event":"E","` + field + `":` + tt.value + `}`
				_, err := Decode([]byte(body), "")
				assertFieldRules(t, err, field+"/"+tt.rule)
			})
		}
	}
}

// TestParseTimeMarshals checks that every time parseTime accepts can be
// written back by MarshalJSON: an accepted timestamp must never make an
// accepted event impossible to store or forward.
func TestParseTimeMarshals(t *testing.T) {
	for _, s := range []string{
		"2024-01-02T03:04:05+24:00",
		"2024-01-02T03:04:05+2400",
		"2024-01-02T03:04:05-24:00",
		"2024-01-02T03:04:05+23:60",
		"2024-01-02T03:04:05+23:59",
		"2024-01-02T03:04:05-2359",
		"0000-01-01T00:00:00-01:00",
		"9999-12-31T23:59:59.999999999+23:59",
	} {
		t.Run(s, func(t *testing.T) {
			ts, err := parseTime(s)
			if err != nil {
				return // rejected: nothing to write back
			}
			if _, err := json.Marshal(ts); err != nil {
				t.Errorf("parseTime(%q) accepted %v, which cannot be marshalled: %v", s, ts, err)
			}
			e := &Track{Common: Common{Type: TypeTrack, UserID: "u", Timestamp: ts}, Event: "E"}
			if _, err := e.MarshalJSON(); err != nil {
				t.Errorf("MarshalJSON of an event with timestamp %q: %v", s, err)
			}
		})
	}
}

func TestDecodeNumericIDs(t *testing.T) {
	tests := []struct {
		name  string
		typ   Type
		field string
		raw   string
		want  string
	}{
		{"userId integer", TypeIdentify, "userId", `12345`, "12345"},
		{"userId zero", TypeIdentify, "userId", `0`, "0"},
		{"userId negative", TypeIdentify, "userId", `-42`, "-42"},
		// A float is accepted and kept exactly as the sender wrote it: no
		// rounding through float64, no reformatting ("1.50" stays "1.50").
		{"userId float", TypeIdentify, "userId", `1.5`, "1.5"},
		{"userId float trailing zero", TypeIdentify, "userId", `1.50`, "1.50"},
		{"userId exponent", TypeIdentify, "userId", `1e3`, "1e3"},
		{"anonymousId integer", TypeIdentify, "anonymousId", `777`, "777"},
		{"messageId integer", TypeIdentify, "messageId", `1715678464912`, "1715678464912"},
		{"groupId beyond 2^53", TypeGroup, "groupId", `9007199254740993`, "9007199254740993"},
		{"groupId beyond int64", TypeGroup, "groupId", `123456789012345678901234567890`, "123456789012345678901234567890"},
		{"previousId integer", TypeAlias, "previousId", `98765`, "98765"},
		{"userId string of digits", TypeIdentify, "userId", `"12345"`, "12345"},
		{"userId with escapes", TypeIdentify, "userId", `"caf\u00e9\/\ud83c\udf89"`, "café/🎉"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields := map[string]string{"userId": `"u"`, "groupId": `"g"`, "previousId": `"p"`}
			fields[tt.field] = tt.raw
			var b strings.Builder
			b.WriteString(`{"type":"` + string(tt.typ) + `"`)
			for _, k := range []string{"userId", "anonymousId", "messageId", "groupId", "previousId"} {
				if v, ok := fields[k]; ok {
					b.WriteString(`,"` + k + `":` + v)
				}
			}
			b.WriteString("}")
			e := mustDecode(t, b.String(), "")
			c := e.Fields()
			got := map[string]string{"userId": c.UserID, "anonymousId": c.AnonymousID, "messageId": c.MessageID}
			switch v := e.(type) {
			case *Group:
				got["groupId"] = v.GroupID
			case *Alias:
				got["previousId"] = v.PreviousID
			}
			if got[tt.field] != tt.want {
				t.Errorf("%s = %q, want %q", tt.field, got[tt.field], tt.want)
			}
			if _, ok := c.Extra[tt.field]; ok {
				t.Errorf("%s was also kept in Extra", tt.field)
			}
			if err := e.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			// It is written back as a JSON string holding the same text.
			var out map[string]any
			if err := json.Unmarshal(mustMarshal(t, e), &out); err != nil || out[tt.field] != tt.want {
				t.Errorf("marshalled %s = %#v (%v), want the string %q", tt.field, out[tt.field], err, tt.want)
			}
		})
	}
}

func TestDecodeWrongJSONTypes(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string // field/rule
	}{
		{"properties as string", `{"type":"track","userId":"u","event":"E","properties":"plan=pro"}`, []string{"properties/type"}},
		{"properties as array", `{"type":"page","userId":"u","properties":[1]}`, []string{"properties/type"}},
		{"traits as array", `{"type":"identify","userId":"u","traits":["a","b"]}`, []string{"traits/type"}},
		{"group traits as bool", `{"type":"group","userId":"u","groupId":"g","traits":true}`, []string{"traits/type"}},
		{"context as number", `{"type":"track","userId":"u","event":"E","context":42}`, []string{"context/type"}},
		{"integrations as string", `{"type":"track","userId":"u","event":"E","integrations":"All"}`, []string{"integrations/type"}},
		{"userId as object", `{"type":"identify","userId":{"id":1}}`, []string{"userId/type"}},
		{"userId as bool", `{"type":"identify","userId":true}`, []string{"userId/type"}},
		{"anonymousId as array", `{"type":"identify","anonymousId":["a"]}`, []string{"anonymousId/type"}},
		{"messageId as object", `{"type":"identify","userId":"u","messageId":{}}`, []string{"messageId/type"}},
		{"groupId as object", `{"type":"group","userId":"u","groupId":{"id":"g"}}`, []string{"groupId/type"}},
		{"previousId as array", `{"type":"alias","userId":"u","previousId":[1]}`, []string{"previousId/type"}},
		{"timestamp as number", `{"type":"track","userId":"u","event":"E","timestamp":1704164645}`, []string{"timestamp/type"}},
		{"event as number", `{"type":"track","userId":"u","event":42}`, []string{"event/type"}},
		{"event as object", `{"type":"track","userId":"u","event":{"name":"E"}}`, []string{"event/type"}},
		{"page name as number", `{"type":"page","userId":"u","name":1}`, []string{"name/type"}},
		{"screen category as array", `{"type":"screen","userId":"u","category":["a"]}`, []string{"category/type"}},
		{"channel as number", `{"type":"track","userId":"u","event":"E","channel":1}`, []string{"channel/type"}},
		{"writeKey as bool", `{"type":"track","userId":"u","event":"E","writeKey":false}`, []string{"writeKey/type"}},
		{
			"several, sorted by field",
			`{"type":"track","userId":{},"event":1,"properties":"x","context":[],"timestamp":"yesterday"}`,
			[]string{"context/type", "event/type", "properties/type", "timestamp/format", "userId/type"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.body), "")
			assertFieldRules(t, err, tt.want...)
			if !strings.HasPrefix(err.Error(), "spec: invalid event: ") {
				t.Errorf("Error() = %q", err.Error())
			}
			for _, fr := range tt.want {
				field := strings.Split(fr, "/")[0]
				if !strings.Contains(err.Error(), field+": ") {
					t.Errorf("Error() = %q does not name %s", err.Error(), field)
				}
			}
		})
	}
}

func TestDecodeNullIsAbsent(t *testing.T) {
	body := `{"type":"track","event":"E","anonymousId":"a","userId":null,"messageId":null,
		"timestamp":null,"originalTimestamp":null,"sentAt":null,"receivedAt":null,
		"context":null,"integrations":null,"properties":null,"channel":null,"version":null,"writeKey":null}`
	e := mustDecode(t, body, "")
	tr := e.(*Track)
	want := &Track{Common: Common{Type: TypeTrack, AnonymousID: "a"}, Event: "E"}
	assertEventsEqual(t, tr, want)
	if tr.Context != nil || tr.Integrations != nil || tr.Properties != nil || tr.Version != nil || tr.Extra != nil {
		t.Errorf("null fields were not left nil: %+v", tr)
	}
	out := mustMarshal(t, e)
	for _, k := range jsonKeys(t, out) {
		if k != "type" && k != "event" && k != "anonymousId" {
			t.Errorf("marshalled output has %q, which was null: %s", k, out)
		}
	}

	// Null works for the other types' own fields too.
	for _, body := range []string{
		`{"type":"identify","userId":"u","traits":null}`,
		`{"type":"page","userId":"u","name":null,"category":null,"properties":null}`,
		`{"type":"screen","userId":"u","name":null,"category":null,"properties":null}`,
		`{"type":"group","userId":"u","groupId":null,"traits":null}`,
		`{"type":"alias","userId":"u","previousId":null}`,
	} {
		e := mustDecode(t, body, "")
		if len(e.Fields().Extra) != 0 {
			t.Errorf("%s: Extra = %q", body, extraStrings(e.Fields().Extra))
		}
		if got := jsonKeys(t, mustMarshal(t, e)); len(got) > 3 {
			t.Errorf("%s: marshalled keys %q", body, got)
		}
	}

	// A null that is required stays missing for Validate.
	g := mustDecode(t, `{"type":"group","userId":"u","groupId":null}`, "")
	assertFieldRules(t, g.Validate(), "groupId/required")

	// Null in an unknown field is kept as sent.
	e = mustDecode(t, `{"type":"identify","userId":"u","custom":null}`, "")
	if string(e.Fields().Extra["custom"]) != "null" {
		t.Errorf("Extra[custom] = %q, want null", e.Fields().Extra["custom"])
	}
}

func TestDecodeUnknownFieldsKept(t *testing.T) {
	body := `{"type":"track","userId":"u","event":"E",
		"_metadata":{"bundled":["Segment.io"],"unbundled":[]},
		"options":{"timestamp":"x"},"Custom":[1,2.50,"three"],"flag":true,"nothing":null,
		"big":123456789012345678901234567890,"UserId":"other"}`
	e := mustDecode(t, body, "")
	c := e.Fields()
	want := map[string]string{
		"_metadata": `{"bundled":["Segment.io"],"unbundled":[]}`,
		"options":   `{"timestamp":"x"}`,
		"Custom":    `[1,2.50,"three"]`,
		"flag":      `true`,
		"nothing":   `null`,
		"big":       `123456789012345678901234567890`,
		"UserId":    `"other"`, // keys are case-sensitive
	}
	if got := extraStrings(c.Extra); !reflect.DeepEqual(got, want) {
		t.Errorf("Extra = %q, want %q", got, want)
	}
	if c.UserID != "u" {
		t.Errorf("userId = %q; a differently cased key must not replace it", c.UserID)
	}

	out := mustMarshal(t, e)
	fields := topLevel(t, out)
	for k, v := range want {
		if string(fields[k]) != v {
			t.Errorf("marshalled %s = %s, want %s", k, fields[k], v)
		}
	}
	if string(fields["userId"]) != `"u"` {
		t.Errorf("marshalled userId = %s", fields["userId"])
	}
	again := mustDecode(t, string(out), "")
	assertEventsEqual(t, again, e)
}

func TestDecodeExtraDoesNotAliasInput(t *testing.T) {
	data := []byte(`{"type":"identify","userId":"u","custom":"abc"}`)
	e, err := Decode(data, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 'x'
	}
	if got := string(e.Fields().Extra["custom"]); got != `"abc"` {
		t.Errorf("Extra[custom] = %q after the input buffer was reused, want %q", got, `"abc"`)
	}
}

func TestDecodeNumbers(t *testing.T) {
	body := `{"type":"track","userId":"u","event":"E","properties":{
		"big":9007199254740993,"huge":123456789012345678901234567890,"neg":-17,
		"price":18.99,"tiny":1e-400,"exp":6.02214076E23,"zero":0,"float_zero":0.0,
		"nested":{"list":[1,2.50,{"n":9007199254740993}]}},
		"context":{"screen":{"width":1920,"density":2.625}},"version":2}`
	e := mustDecode(t, body, "")
	tr := e.(*Track)
	p := tr.Properties
	for k, want := range map[string]string{
		"big": "9007199254740993", "huge": "123456789012345678901234567890", "neg": "-17",
		"price": "18.99", "tiny": "1e-400", "exp": "6.02214076E23", "zero": "0", "float_zero": "0.0",
	} {
		if n, ok := p[k].(json.Number); !ok || string(n) != want {
			t.Errorf("properties.%s = %#v, want json.Number(%q)", k, p[k], want)
		}
	}
	list := p["nested"].(map[string]any)["list"].([]any)
	if list[1] != json.Number("2.50") || list[2].(map[string]any)["n"] != json.Number("9007199254740993") {
		t.Errorf("properties.nested.list = %#v", list)
	}
	screen := tr.Context["screen"].(map[string]any)
	if screen["density"] != json.Number("2.625") {
		t.Errorf("context.screen.density = %#v", screen["density"])
	}
	if tr.Version != json.Number("2") {
		t.Errorf("version = %#v, want json.Number(2)", tr.Version)
	}

	// Every number is written back with the same digits.
	out := string(mustMarshal(t, e))
	for _, s := range []string{
		`"big":9007199254740993`, `"huge":123456789012345678901234567890`, `"tiny":1e-400`,
		`"exp":6.02214076E23`, `"float_zero":0.0`, `[1,2.50,{"n":9007199254740993}]`,
		`"density":2.625`, `"version":2`,
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %s: %s", s, out)
		}
	}
	assertEventsEqual(t, mustDecode(t, out, ""), e)
}

func TestDecodeVersion(t *testing.T) {
	tests := []struct {
		raw  string
		want any
	}{
		{`2`, json.Number("2")},
		{`"1.1"`, "1.1"},
		{`{"major":1}`, map[string]any{"major": json.Number("1")}},
		{`false`, false},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			e := mustDecode(t, `{"type":"identify","userId":"u","version":`+tt.raw+`}`, "")
			if !reflect.DeepEqual(e.Fields().Version, tt.want) {
				t.Errorf("version = %#v, want %#v", e.Fields().Version, tt.want)
			}
			if got := string(topLevel(t, mustMarshal(t, e))["version"]); got != tt.raw {
				t.Errorf("marshalled version = %s, want %s", got, tt.raw)
			}
		})
	}
}

func TestDecodeIgnoresSenderReceivedAt(t *testing.T) {
	for _, raw := range []string{`"2000-01-01T00:00:00Z"`, `"not a time"`, `12`} {
		e := mustDecode(t, `{"type":"identify","userId":"u","receivedAt":`+raw+`}`, "")
		c := e.Fields()
		if !c.ReceivedAt.IsZero() {
			t.Errorf("receivedAt %s: ReceivedAt = %v, want zero", raw, c.ReceivedAt)
		}
		if _, ok := c.Extra["receivedAt"]; ok {
			t.Errorf("receivedAt %s: kept in Extra", raw)
		}
		if _, ok := topLevel(t, mustMarshal(t, e))["receivedAt"]; ok {
			t.Errorf("receivedAt %s: written back out", raw)
		}
	}
}

func TestDecodeInvalidJSON(t *testing.T) {
	for _, body := range []string{
		`{`,
		`{"type":"track",`,
		`{"type":"track"}}`,
		`{"type":"track"} {"type":"track"}`,
		`{"type":"track","userId":"u",}`,
		`{'type':'track'}`,
		`{"type":"track","event":"E","properties":{"a":01}}`,
		`{"type":"track","event":"E","properties":{"a":NaN}}`,
		"{\"type\":\"track\",\"event\":\"a\x00b\"}",
	} {
		t.Run(body, func(t *testing.T) {
			e, err := Decode([]byte(body), "")
			if err == nil {
				t.Fatalf("Decode accepted %q as %#v", body, e)
			}
			if e != nil {
				t.Errorf("Decode returned an event with a syntax error")
			}
			var ve *ValidationError
			if errors.As(err, &ve) || errors.Is(err, ErrNotObject) {
				t.Errorf("error %v: want a JSON syntax error, not a validation or not-object error", err)
			}
			var se *json.SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("error %v (%T) does not wrap a *json.SyntaxError", err, err)
			}
			if _, err := DecodeBatch([]byte(body)); err == nil || errors.Is(err, ErrNotObject) {
				t.Errorf("DecodeBatch: error %v, want a JSON syntax error", err)
			}
		})
	}
}

func TestDecodeNotObject(t *testing.T) {
	for _, body := range []string{
		``, ` `, "\n\t", `[]`, `[{"type":"track","userId":"u","event":"E"}]`, `"track"`,
		`null`, `42`, `true`, "\ufeff{}", `}`,
	} {
		t.Run(body, func(t *testing.T) {
			e, err := Decode([]byte(body), "")
			if !errors.Is(err, ErrNotObject) {
				t.Errorf("Decode(%q) error = %v, want ErrNotObject", body, err)
			}
			if e != nil {
				t.Errorf("Decode(%q) returned an event", body)
			}
			e, err = Decode([]byte(body), TypeTrack)
			if !errors.Is(err, ErrNotObject) || e != nil {
				t.Errorf("Decode(%q, track) = %v, %v; want ErrNotObject", body, e, err)
			}
			b, err := DecodeBatch([]byte(body))
			if !errors.Is(err, ErrNotObject) || b != nil {
				t.Errorf("DecodeBatch(%q) = %v, %v; want ErrNotObject", body, b, err)
			}
		})
	}
	// Surrounding whitespace is allowed.
	mustDecode(t, " \n\t{\"type\":\"identify\",\"userId\":\"u\"}\r\n ", "")
}

// TestDecodeDuplicateKeysLastWins: of a name given twice, however it is
// spelled, only the last value counts, as in a map: an earlier value of the
// wrong type is no error. Events of more than 32 members, and events with a
// member too deep to decode, take other paths.
func TestDecodeDuplicateKeysLastWins(t *testing.T) {
	var many strings.Builder
	for i := range 40 {
		fmt.Fprintf(&many, `"x%d":%d,`, i, i)
	}
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	for _, tc := range []struct {
		name, body string
		route      Type
	}{
		{"few", `{"type":"track","userId":{},"event":1,"event":"first","userId":"u","event":"second"}`, ""},
		{"many", `{"type":"identify","userId":{},"event":"first",` + many.String() + `"event":"second","type":"track","userId":"u"}`, ""},
		{"escaped names", `{"type":"identify","t\u0079pe":"track","userId":1,"\u0075serId":"u","event":"second"}`, ""},
		{"the route's type", `{"type":5,"type":"identify","userId":"u","event":"first","event":"second"}`, TypeTrack},
	} {
		e := mustDecode(t, tc.body, tc.route)
		tr, ok := e.(*Track)
		if !ok || tr.Event != "second" || tr.UserID != "u" {
			t.Errorf("%s: %#v, want the last values", tc.name, e)
		}
	}
	// With a member too deep, the event is refused for it alone.
	for _, body := range []string{
		`{"type":"track","userId":[],"event":"E","userId":"u","x":` + deep + `}`,
		`{"type":"track","userId":[],"event":"E",` + many.String() + `"userId":"u","x":` + deep + `}`,
	} {
		_, err := Decode([]byte(body), "")
		ve := validationError(t, err)
		if len(ve.Fields) != 1 || ve.Fields[0].Rule != "depth" {
			t.Errorf("errors %v, want the depth error alone", ve.Fields)
		}
	}
}

func TestNewEvent(t *testing.T) {
	for _, typ := range []Type{TypeTrack, TypeIdentify, TypePage, TypeScreen, TypeGroup, TypeAlias} {
		e := newEvent(typ)
		if e == nil || e.Fields().Type != typ || !typ.Valid() {
			t.Errorf("newEvent(%q) = %#v", typ, e)
		}
	}
	for _, typ := range []Type{"", "Track", "batch", "import"} {
		if e := newEvent(typ); e != nil || typ.Valid() {
			t.Errorf("newEvent(%q) = %#v, Valid = %v; want nil, false", typ, e, typ.Valid())
		}
	}
}
