package spec

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.json from the current output")

// TestMarshalGolden decodes every SDK payload in testdata and compares
// MarshalJSON's output (indented) with testdata/golden/<name>. Run
// `go test ./spec/ -run TestMarshalGolden -update` to rewrite them after an
// intended change, and review the diff.
func TestMarshalGolden(t *testing.T) {
	for _, name := range testdataEvents(t) {
		t.Run(name, func(t *testing.T) {
			e, err := Decode(readTestdata(t, name), "")
			if err != nil {
				t.Fatal(err)
			}
			out := mustMarshal(t, e)
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", "golden", name)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("MarshalJSON output differs from %s:\ngot:\n%s\nwant:\n%s", path, pretty.Bytes(), want)
			}
		})
	}
}

func TestMarshalRoundTripTestdata(t *testing.T) {
	for _, name := range testdataEvents(t) {
		t.Run(name, func(t *testing.T) {
			data := readTestdata(t, name)
			e, err := Decode(data, "")
			if err != nil {
				t.Fatal(err)
			}
			out := mustMarshal(t, e)
			again, err := Decode(out, "")
			if err != nil {
				t.Fatalf("Decode of MarshalJSON output: %v\n%s", err, out)
			}
			assertEventsEqual(t, again, e)

			// Every top-level field of the input that was not null is in the
			// output, except empty objects, which are omitted.
			in, outFields := topLevel(t, data), topLevel(t, out)
			for k, v := range in {
				if string(v) == "null" || string(v) == "{}" {
					continue
				}
				if _, ok := outFields[k]; !ok {
					t.Errorf("field %q = %s was dropped by MarshalJSON", k, v)
				}
			}
			if keys := jsonKeys(t, out); len(keys) != len(outFields) {
				t.Errorf("output has duplicate keys: %q", keys)
			}
		})
	}
}

func TestMarshalRoundTripAfterEnrich(t *testing.T) {
	received := time.Date(2024, 5, 14, 9, 21, 5, 123000000, time.UTC)
	for _, name := range testdataEvents(t) {
		t.Run(name, func(t *testing.T) {
			e, err := Decode(readTestdata(t, name), "")
			if err != nil {
				t.Fatal(err)
			}
			Enrich(e, received, "198.51.100.9")
			out := mustMarshal(t, e)
			fields := topLevel(t, out)
			if string(fields["receivedAt"]) != `"2024-05-14T09:21:05.123Z"` {
				t.Errorf("receivedAt written as %s", fields["receivedAt"])
			}
			if _, ok := fields["originalTimestamp"]; !ok {
				t.Errorf("originalTimestamp not written: %s", out)
			}
			again, err := Decode(out, "")
			if err != nil {
				t.Fatal(err)
			}
			// receivedAt is not read back: a sender's value is not trusted.
			if !again.Fields().ReceivedAt.IsZero() {
				t.Errorf("receivedAt read back as %v", again.Fields().ReceivedAt)
			}
			e.Fields().ReceivedAt = time.Time{}
			assertEventsEqual(t, again, e)
		})
	}
}

func TestMarshalRoundTripBuilt(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 600, time.FixedZone("", -(3*3600+30*60)))
	common := Common{
		MessageID: "m1", UserID: "u1", AnonymousID: "a1",
		Timestamp: ts, OriginalTimestamp: ts.Add(-time.Second), SentAt: ts.Add(time.Second),
		Context:      map[string]any{"ip": "1.2.3.4", "library": map[string]any{"name": "lib"}, "screen": map[string]any{"width": json.Number("1920")}},
		Integrations: map[string]any{"All": false, "BigQuery": true},
		Channel:      "server", Version: json.Number("2"), WriteKey: "WK",
		Extra: map[string][]byte{"_metadata": []byte(`{"nodeVersion":"v20"}`), "x-trace": []byte(`"abc"`)},
	}
	with := func(typ Type) Common { c := common; c.Type = typ; return c }
	tests := []Event{
		&Track{Common: with(TypeTrack), Event: "Order Completed", Properties: map[string]any{"total": json.Number("99.90"), "items": []any{"a", "b"}}},
		&Identify{Common: with(TypeIdentify), Traits: map[string]any{"email": "a@b.co", "vip": true}},
		&Page{Common: with(TypePage), Name: "Home", Category: "Landing", Properties: map[string]any{"url": "https://example.com/?a=1&b=<2>"}},
		&Screen{Common: with(TypeScreen), Name: "Settings", Category: "App", Properties: map[string]any{"tab": "billing"}},
		&Group{Common: with(TypeGroup), GroupID: "g1", Traits: map[string]any{"name": "Acme", "employees": json.Number("120")}},
		&Alias{Common: with(TypeAlias), PreviousID: "a1"},
	}
	for _, e := range tests {
		t.Run(string(e.Fields().Type), func(t *testing.T) {
			out := mustMarshal(t, e)
			again, err := Decode(out, "")
			if err != nil {
				t.Fatalf("Decode: %v\n%s", err, out)
			}
			assertEventsEqual(t, again, e)
			if again.Fields().Type != e.Fields().Type {
				t.Errorf("type = %q", again.Fields().Type)
			}
			// Deterministic: the same event always gives the same bytes.
			for range 5 {
				if b := mustMarshal(t, e); !bytes.Equal(b, out) {
					t.Fatalf("MarshalJSON is not deterministic:\n%s\n%s", out, b)
				}
			}
			// Through encoding/json, as part of a larger document.
			doc, err := json.Marshal(map[string]any{"event": e})
			if err != nil {
				t.Fatal(err)
			}
			var wrapper struct{ Event json.RawMessage }
			if err := json.Unmarshal(doc, &wrapper); err != nil {
				t.Fatal(err)
			}
			assertEventsEqual(t, mustDecode(t, string(wrapper.Event), ""), e)
		})
	}
}

func TestMarshalExtraCollisions(t *testing.T) {
	tests := []struct {
		name  string
		event Event
		want  map[string]string // top-level fields expected in the output
	}{
		{
			name: "common names in Extra are not written twice",
			event: &Track{
				Common: Common{Type: TypeTrack, UserID: "real", MessageID: "m", Extra: map[string][]byte{
					"userId": []byte(`"fake"`), "type": []byte(`"identify"`), "messageId": []byte(`"m2"`),
					"receivedAt": []byte(`"2000-01-01T00:00:00Z"`), "context": []byte(`{"ip":"6.6.6.6"}`),
					"custom": []byte(`1`),
				}},
				Event: "E",
			},
			want: map[string]string{"type": `"track"`, "userId": `"real"`, "messageId": `"m"`, "event": `"E"`, "custom": `1`},
		},
		{
			name: "type-specific names in Extra are not written twice",
			event: &Group{
				Common:  Common{Type: TypeGroup, UserID: "u", Extra: map[string][]byte{"groupId": []byte(`"fake"`), "traits": []byte(`{"x":1}`)}},
				GroupID: "g", Traits: map[string]any{"name": "Acme"},
			},
			want: map[string]string{"type": `"group"`, "userId": `"u"`, "groupId": `"g"`, "traits": `{"name":"Acme"}`},
		},
		{
			name: "Extra values that are not JSON are left out",
			event: &Identify{Common: Common{Type: TypeIdentify, UserID: "u", Extra: map[string][]byte{
				"bad": []byte(`{not json`), "empty": nil, "good": []byte(`[true]`),
			}}},
			want: map[string]string{"type": `"identify"`, "userId": `"u"`, "good": `[true]`},
		},
		{
			name: "Extra keys that need escaping",
			event: &Identify{Common: Common{Type: TypeIdentify, UserID: "u", Extra: map[string][]byte{
				`quo"te`: []byte(`1`), "new\nline": []byte(`2`), "<tag>": []byte(`3`),
			}}},
			want: map[string]string{"type": `"identify"`, "userId": `"u"`, `quo"te`: `1`, "new\nline": `2`, "<tag>": `3`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustMarshal(t, tt.event)
			keys := jsonKeys(t, out)
			if unique := slices.Compact(slices.Sorted(slices.Values(keys))); len(unique) != len(keys) {
				t.Errorf("duplicate keys in %s", out)
			}
			fields := topLevel(t, out)
			if len(fields) != len(tt.want) {
				t.Errorf("output has keys %q, want %d keys: %s", keys, len(tt.want), out)
			}
			for k, v := range tt.want {
				if string(fields[k]) != v {
					t.Errorf("%q = %s, want %s", k, fields[k], v)
				}
			}
		})
	}
}

// TestMarshalKeepsOtherTypesFieldNames checks that an unknown field whose
// name a different call type uses ("name" on a track, "event" on an
// identify) is written back like any other unknown field.
func TestMarshalKeepsOtherTypesFieldNames(t *testing.T) {
	tests := []struct {
		body string
		keep []string
	}{
		{`{"type":"track","userId":"u","event":"E","name":"n","traits":{"a":1},"category":"c","groupId":"g","previousId":"p"}`,
			[]string{"name", "traits", "category", "groupId", "previousId"}},
		{`{"type":"identify","userId":"u","event":"E","properties":{"a":1},"name":"n"}`,
			[]string{"event", "properties", "name"}},
		{`{"type":"page","userId":"u","event":"E","traits":{"a":1},"groupId":"g"}`,
			[]string{"event", "traits", "groupId"}},
		{`{"type":"screen","userId":"u","previousId":"p","traits":{}}`,
			[]string{"previousId", "traits"}},
		{`{"type":"group","userId":"u","groupId":"g","event":"E","properties":{"a":1}}`,
			[]string{"event", "properties"}},
		{`{"type":"alias","userId":"u","previousId":"p","traits":{"a":1},"name":"n","groupId":"g"}`,
			[]string{"traits", "name", "groupId"}},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			in := mustDecode(t, tt.body, "")
			for _, k := range tt.keep {
				if _, ok := in.Fields().Extra[k]; !ok {
					t.Fatalf("%q not in Extra", k)
				}
			}
			out := mustMarshal(t, in)
			fields := topLevel(t, out)
			src := topLevel(t, []byte(tt.body))
			for _, k := range tt.keep {
				if string(fields[k]) != string(src[k]) {
					t.Errorf("%q = %s in the output, want %s: %s", k, fields[k], src[k], out)
				}
			}
			assertEventsEqual(t, mustDecode(t, string(out), ""), in)
		})
	}
}

func TestMarshalOmitsEmpty(t *testing.T) {
	out := string(mustMarshal(t, &Identify{Common: Common{Type: TypeIdentify, UserID: "u", Context: map[string]any{}}, Traits: map[string]any{}}))
	if out != `{"type":"identify","userId":"u"}` {
		t.Errorf("MarshalJSON = %s", out)
	}
	// The fields a call requires are always written, so a receiver sees them
	// as blank rather than missing.
	for _, tt := range []struct {
		e    Event
		want string
	}{
		{&Track{Common: Common{Type: TypeTrack}}, `{"type":"track","event":""}`},
		{&Group{Common: Common{Type: TypeGroup}}, `{"type":"group","groupId":""}`},
		{&Alias{Common: Common{Type: TypeAlias}}, `{"type":"alias","previousId":""}`},
	} {
		if got := string(mustMarshal(t, tt.e)); got != tt.want {
			t.Errorf("MarshalJSON = %s, want %s", got, tt.want)
		}
	}
}

func TestMarshalTimes(t *testing.T) {
	e := mustDecode(t, `{"type":"identify","userId":"u","timestamp":"2024-01-02T08:34:05.120+0530","sentAt":"2024-01-02T03:04:05Z"}`, "")
	fields := topLevel(t, mustMarshal(t, e))
	// The sender's offset is kept; the colon-less form is written as RFC 3339.
	if got := string(fields["timestamp"]); got != `"2024-01-02T08:34:05.12+05:30"` {
		t.Errorf("timestamp = %s", got)
	}
	if got := string(fields["sentAt"]); got != `"2024-01-02T03:04:05Z"` {
		t.Errorf("sentAt = %s", got)
	}
	for _, k := range []string{"originalTimestamp", "receivedAt"} {
		if _, ok := fields[k]; ok {
			t.Errorf("%s written for a zero time", k)
		}
	}
	if !strings.Contains(string(mustMarshal(t, e)), `"type":"identify"`) {
		t.Error("type missing")
	}
}

// TestWithJSON checks, for each call type, that WithJSON leaves the event
// as it was and returns a copy that keeps its JSON: a change to the copy
// does not show in what its MarshalJSON returns, and each caller gets its
// own bytes.
func TestWithJSON(t *testing.T) {
	for _, tt := range []struct {
		json   string
		change func(Event)
	}{
		{`{"type":"track","userId":"u","event":"E","properties":{"n":1}}`, func(e Event) { e.(*Track).Event = "Changed" }},
		{`{"type":"identify","userId":"u","traits":{"plan":"pro"}}`, func(e Event) { e.(*Identify).UserID = "Changed" }},
		{`{"type":"page","userId":"u","name":"Home"}`, func(e Event) { e.(*Page).Name = "Changed" }},
		{`{"type":"screen","userId":"u","name":"Home"}`, func(e Event) { e.(*Screen).Name = "Changed" }},
		{`{"type":"group","userId":"u","groupId":"g"}`, func(e Event) { e.(*Group).GroupID = "Changed" }},
		{`{"type":"alias","userId":"u","previousId":"p"}`, func(e Event) { e.(*Alias).PreviousID = "Changed" }},
	} {
		e := mustDecode(t, tt.json, "")
		want, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		cp, kept, err := WithJSON(e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(kept, want) {
			t.Fatalf("%s: WithJSON = %s, want %s", tt.json, kept, want)
		}
		if cp == e {
			t.Fatalf("%s: WithJSON returned the event itself, not a copy", tt.json)
		}
		if cp.Fields().Size() != e.Fields().Size()+len(want) {
			t.Errorf("%s: the copy's Size is %d, want the event's %d plus its JSON's %d", tt.json, cp.Fields().Size(), e.Fields().Size(), len(want))
		}
		// The event itself keeps nothing: a change shows.
		tt.change(e)
		if got, _ := e.MarshalJSON(); bytes.Equal(got, want) {
			t.Errorf("%s: the event WithJSON was given keeps its JSON: %s", tt.json, got)
		}
		// The copy keeps it: a change (against the rules) does not show.
		tt.change(cp)
		got, _ := cp.MarshalJSON()
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the copy's MarshalJSON = %s, want the kept %s", tt.json, got, want)
		}
		got[0] = 'X'
		if again, _ := cp.MarshalJSON(); !bytes.Equal(again, want) {
			t.Errorf("%s: changing MarshalJSON's result changed the kept JSON: %s", tt.json, again)
		}
		// A value copy of the copy keeps nothing: it writes itself, and
		// its Size does not count bytes it does not keep.
		v := reflect.New(reflect.TypeOf(cp).Elem())
		v.Elem().Set(reflect.ValueOf(cp).Elem())
		vc := v.Interface().(Event)
		if vc.Fields().Size() != e.Fields().Size() {
			t.Errorf("%s: a value copy's Size is %d, want the event's %d", tt.json, vc.Fields().Size(), e.Fields().Size())
		}
		if got, _ := vc.MarshalJSON(); !bytes.Contains(got, []byte(`"Changed"`)) {
			t.Errorf("%s: a value copy, changed, writes %s: the copy's kept JSON, not its own", tt.json, got)
		}
	}
}

// ownJSON is an Event type of another package's kind: it embeds a Track
// but writes JSON of its own.
type ownJSON struct{ Track }

func (o *ownJSON) MarshalJSON() ([]byte, error) { return []byte(`{"own":true}`), nil }

// noJSON is an Event type of another package whose MarshalJSON writes
// nothing.
type noJSON struct{ Track }

func (*noJSON) MarshalJSON() ([]byte, error) { return nil, nil }

// everyCallType holds one call of each type, to decode.
var everyCallType = []string{
	`{"type":"track","userId":"u","event":"E","properties":{"n":1,"s":"\u00e9"}}`,
	`{"type":"identify","userId":"u","traits":{"plan":"pro"}}`,
	`{"type":"page","userId":"u","name":"Home","category":"Docs"}`,
	`{"type":"screen","userId":"u","name":"Home"}`,
	`{"type":"group","userId":"u","groupId":"g","traits":{"size":3}}`,
	`{"type":"alias","userId":"u","previousId":"p","future":[1,2]}`,
}

// TestAppendJSON checks that AppendJSON appends what MarshalJSON returns,
// after what the buffer held, for every call type, for an event that keeps
// its JSON, and for a type of another package; and that on error it
// returns the buffer as it was.
func TestAppendJSON(t *testing.T) {
	prefix := []byte("prefix:")
	check := func(name string, e Event) {
		t.Helper()
		want, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendJSON(slices.Clone(prefix), e)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(got) != string(prefix)+string(want) {
			t.Errorf("%s: AppendJSON = %s, want %s%s", name, got, prefix, want)
		}
	}
	for _, in := range everyCallType {
		e := mustDecode(t, in, "")
		check(in, e)
		kept, want, err := WithJSON(e)
		if err != nil {
			t.Fatal(err)
		}
		check(in+" (kept)", kept)
		// What a copy keeps is what it appends, even changed against the
		// rules: its JSON is not written again.
		kept.Fields().UserID = "Changed"
		if got, _ := AppendJSON(slices.Clone(prefix), kept); string(got) != string(prefix)+string(want) {
			t.Errorf("%s: AppendJSON of a copy that keeps its JSON = %s, want %s%s", in, got, prefix, want)
		}
	}
	check("a type of another package", &ownJSON{Track: *mustDecode(t, everyCallType[0], "").(*Track)})

	bad := &Track{Common: Common{Type: TypeTrack, UserID: "u", Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, Event: "E"}
	buf := append(make([]byte, 0, 64), prefix...)
	got, err := AppendJSON(buf, bad)
	if err == nil {
		t.Fatal("AppendJSON wrote the year 10000, which MarshalJSON refuses")
	}
	if string(got) != string(prefix) {
		t.Errorf("on error AppendJSON returned %q, want the buffer as it was, %q", got, prefix)
	}
	// Nothing is not JSON: a queue passing its header full would also get
	// the header's own array back.
	if got, err := AppendJSON(slices.Clone(prefix), &noJSON{}); err == nil || string(got) != string(prefix) {
		t.Errorf("AppendJSON of an event whose MarshalJSON wrote nothing = %q, %v; want the buffer as it was and an error", got, err)
	}
	if cp, got, err := AppendWithJSON(prefix[:len(prefix):len(prefix)], &noJSON{}); err == nil || cp != nil || string(got) != string(prefix) {
		t.Errorf("AppendWithJSON of an event whose MarshalJSON wrote nothing = %v, %q, %v; want nil, the buffer as it was and an error", cp, got, err)
	}
}

// TestAppendWithJSON checks that AppendWithJSON appends what WithJSON
// returns and hands back a copy that keeps exactly the bytes appended, which
// later appends to the buffer leave as they are.
func TestAppendWithJSON(t *testing.T) {
	for _, in := range everyCallType {
		e := mustDecode(t, in, "")
		_, want, err := WithJSON(e)
		if err != nil {
			t.Fatal(err)
		}
		buf, err := AppendJSON(make([]byte, 0, 4096), mustDecode(t, everyCallType[1], ""))
		if err != nil {
			t.Fatal(err)
		}
		before := slices.Clone(buf)
		n := len(buf)
		cp, buf, err := AppendWithJSON(buf, e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], before) || !bytes.Equal(buf[n:], want) {
			t.Fatalf("%s: the buffer holds %s, want %s then %s", in, buf, before, want)
		}
		if cp == e {
			t.Fatalf("%s: AppendWithJSON returned the event itself, not a copy", in)
		}
		if cp.Fields().Size() != e.Fields().Size()+len(want) {
			t.Errorf("%s: the copy's Size is %d, want the event's %d plus its JSON's %d", in, cp.Fields().Size(), e.Fields().Size(), len(want))
		}
		// The copy keeps the bytes in the buffer: it writes them, changed
		// or not, rather than itself.
		cp.Fields().UserID = "Changed"
		if got, _ := cp.MarshalJSON(); !bytes.Equal(got, want) {
			t.Errorf("%s: the copy writes %s, want the bytes it keeps, %s", in, got, want)
		}
		buf[n+1] = ' ' // against the rules, to show where the bytes are
		if got, _ := AppendJSON(nil, cp); got[1] != ' ' {
			t.Errorf("%s: the copy writes %s, not the bytes in the buffer", in, got)
		}
	}

	other := &ownJSON{Track: *mustDecode(t, everyCallType[0], "").(*Track)}
	cp, buf, err := AppendWithJSON([]byte("p"), other)
	if err != nil || cp != Event(other) || string(buf) != `p{"own":true}` {
		t.Errorf("a type of another package: AppendWithJSON = %v, %s, %v; want the event itself and its own JSON", cp, buf, err)
	}

	bad := &Track{Common: Common{Type: TypeTrack, UserID: "u", Timestamp: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}, Event: "E"}
	cp, buf, err = AppendWithJSON([]byte("p"), bad)
	if err == nil || cp != nil || string(buf) != "p" {
		t.Errorf("an event MarshalJSON refuses: AppendWithJSON = %v, %q, %v; want nil, the buffer as it was, an error", cp, buf, err)
	}
}

// TestDecodeStoredKeepsItsJSON checks that an event read back with
// DecodeStored has the receivedAt stored beside it and keeps the JSON it was
// read from, a copy of it.
func TestDecodeStoredKeepsItsJSON(t *testing.T) {
	e := mustDecode(t, benchTrack, "")
	received := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("", 5400))
	Enrich(e, received, "")
	data, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(data)
	stored, err := DecodeStored(data, received)
	if err != nil {
		t.Fatal(err)
	}
	if !stored.Fields().ReceivedAt.Equal(received) {
		t.Errorf("ReceivedAt = %v, want %v", stored.Fields().ReceivedAt, received)
	}
	clear(data)                       // the buffer the data was read from, used again
	stored.(*Track).Event = "Changed" // against the rules: it does not show
	if got, _ := stored.MarshalJSON(); !bytes.Equal(got, want) {
		t.Errorf("MarshalJSON of a stored event = %s, want the JSON it was read from %s", got, want)
	}
	if _, err := DecodeStored([]byte(`{"type":"track","event":1}`), received); err == nil {
		t.Error("DecodeStored accepted what Decode refuses")
	}
}
