package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// readTestdata returns the contents of testdata/name.
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testdataEvents returns the names of the single-event files in testdata
// (every *.json file that is not a batch envelope).
func testdataEvents(t testing.TB) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		base := filepath.Base(n)
		if !strings.HasPrefix(base, "batch_") {
			out = append(out, base)
		}
	}
	if len(out) == 0 {
		t.Fatal("no event files in testdata")
	}
	return out
}

// mustDecode decodes data or fails the test.
func mustDecode(t testing.TB, data string, typ Type) Event {
	t.Helper()
	e, err := Decode([]byte(data), typ)
	if err != nil {
		t.Fatalf("Decode(%s): %v", data, err)
	}
	if e == nil {
		t.Fatalf("Decode(%s) returned a nil event and no error", data)
	}
	return e
}

// mustMarshal marshals e, fails the test on error, and checks the output is
// valid JSON.
func mustMarshal(t testing.TB, e Event) []byte {
	t.Helper()
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatalf("MarshalJSON: %v", err)
	}
	if !json.Valid(b) {
		t.Fatalf("MarshalJSON wrote invalid JSON: %s", b)
	}
	return b
}

// validationError returns err as a *ValidationError or fails the test.
func validationError(t testing.TB, err error) *ValidationError {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if len(ve.Fields) == 0 {
		t.Fatalf("*ValidationError has no fields: %v", err)
	}
	return ve
}

// fieldRules lists the "field/rule" pairs of a *ValidationError, in order.
func fieldRules(t testing.TB, err error) []string {
	t.Helper()
	ve := validationError(t, err)
	out := make([]string, len(ve.Fields))
	for i, f := range ve.Fields {
		if f.Message == "" {
			t.Errorf("field %q rule %q has an empty message", f.Field, f.Rule)
		}
		out[i] = f.Field + "/" + f.Rule
	}
	return out
}

// assertFieldRules checks that err is a *ValidationError listing exactly want
// ("field/rule" pairs, sorted by field then rule as the package sorts them).
func assertFieldRules(t testing.TB, err error, want ...string) {
	t.Helper()
	got := fieldRules(t, err)
	if !slices.Equal(got, want) {
		t.Errorf("field/rule pairs = %q, want %q (error: %v)", got, want, err)
	}
}

// assertSameTime checks that got is the same instant as want and keeps the
// same UTC offset.
func assertSameTime(t testing.TB, name string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v", name, got, want)
		return
	}
	_, gotOff := got.Zone()
	_, wantOff := want.Zone()
	if gotOff != wantOff {
		t.Errorf("%s offset = %ds, want %ds (%v vs %v)", name, gotOff, wantOff, got, want)
	}
}

// assertEventsEqual checks that two events carry the same data. Times are
// compared as instants with the same offset; an empty top-level map equals a
// nil one (MarshalJSON omits empty objects); the decoded size is ignored.
func assertEventsEqual(t testing.TB, got, want Event) {
	t.Helper()
	if reflect.TypeOf(got) != reflect.TypeOf(want) {
		t.Fatalf("event type = %T, want %T", got, want)
	}
	gc, wc := *got.Fields(), *want.Fields()
	for _, f := range []struct {
		name      string
		got, want time.Time
	}{
		{"timestamp", gc.Timestamp, wc.Timestamp},
		{"originalTimestamp", gc.OriginalTimestamp, wc.OriginalTimestamp},
		{"sentAt", gc.SentAt, wc.SentAt},
		{"receivedAt", gc.ReceivedAt, wc.ReceivedAt},
	} {
		assertSameTime(t, f.name, f.got, f.want)
	}
	g, w := normalized(got), normalized(want)
	if !reflect.DeepEqual(g, w) {
		gj, _ := json.MarshalIndent(g, "", "  ")
		wj, _ := json.MarshalIndent(w, "", "  ")
		t.Errorf("events differ:\n got: %s\n      extra %q\nwant: %s\n      extra %q",
			gj, extraStrings(g.Fields().Extra), wj, extraStrings(w.Fields().Extra))
	}
}

func extraStrings(m map[string][]byte) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

// normalized returns a copy of e prepared for reflect.DeepEqual: no times,
// no size, nil for empty top-level maps, Extra values compacted.
func normalized(e Event) Event {
	var c Event
	switch v := e.(type) {
	case *Track:
		x := *v
		x.Properties = nilIfEmpty(x.Properties)
		c = &x
	case *Identify:
		x := *v
		x.Traits = nilIfEmpty(x.Traits)
		c = &x
	case *Page:
		x := *v
		x.Properties = nilIfEmpty(x.Properties)
		c = &x
	case *Screen:
		x := *v
		x.Properties = nilIfEmpty(x.Properties)
		c = &x
	case *Group:
		x := *v
		x.Traits = nilIfEmpty(x.Traits)
		c = &x
	case *Alias:
		x := *v
		c = &x
	default:
		panic("unknown event type")
	}
	f := c.Fields()
	f.size, f.mem, f.shared, f.merged = 0, 0, nil, false
	f.Timestamp, f.OriginalTimestamp, f.SentAt, f.ReceivedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	f.Context = nilIfEmpty(f.Context)
	f.Integrations = nilIfEmpty(f.Integrations)
	if len(f.Extra) == 0 {
		f.Extra = nil
	} else {
		extra := make(map[string][]byte, len(f.Extra))
		for k, v := range f.Extra {
			var buf bytes.Buffer
			if json.Compact(&buf, v) == nil {
				v = buf.Bytes()
			}
			extra[k] = v
		}
		f.Extra = extra
	}
	return c
}

func nilIfEmpty(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	return m
}

// jsonKeys returns the top-level keys of a JSON object in the order they
// appear, duplicates included.
func jsonKeys(t testing.TB, data []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", data)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("reading key: %v in %s", err, data)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("reading value: %v in %s", err, data)
		}
	}
	return keys
}

// topLevel decodes a JSON object into its raw fields.
func topLevel(t testing.TB, data []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("unmarshal %s: %v", data, err)
	}
	return m
}

// mustTime parses an RFC 3339 time or panics; for test tables.
func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}
