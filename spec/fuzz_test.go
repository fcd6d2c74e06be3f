package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fuzzRoutes maps the fuzzer's route byte to Decode's typ argument.
var fuzzRoutes = []Type{"", TypeTrack, TypeIdentify, TypePage, TypeScreen, TypeGroup, TypeAlias}

// fuzzSeeds are hand-written inputs added to every testdata/*.json file.
var fuzzSeeds = []string{
	`{"type":"track","userId":12345,"event":"E","timestamp":"2024-01-02T03:04:05+0000"}`,
	`{"type":"group","anonymousId":-1.5e3,"groupId":9007199254740993,"traits":{"n":1e400}}`,
	`{"type":"alias","userId":"u","previousId":"p","sentAt":"2024-01-02T03:04:05.123456789-05:30","originalTimestamp":"2024-01-02T03:04:00,5Z"}`,
	`{"type":"page","userId":null,"anonymousId":"a","name":null,"properties":{},"context":{"ip":null}}`,
	`{"type":"identify","userId":"u","x":[1, 2 ,{"a" : "<&>"}],"receivedAt":"2000-01-01T00:00:00Z","version":[]}`,
	`{"type":"screen","userId":"u","event":"not mine","traits":{},"groupId":1,"previousId":null}`,
	`{"type":"track","userId":{},"event":1,"properties":"x","timestamp":"yesterday"}`,
	`{"type":"Track"}`,
	`{"type":"identify","userId":"u","timestamp":"2024-01-02T03:04:05+24:00","sentAt":"2024-01-02T03:04:05+2400"}`,
	`{"type":"track","event":"E","anonymousId":"a","timestamp":"0001-01-01T01:00:00+01:00","sentAt":"9999-12-31T23:59:59.999999999+23:59"}`,
	"{\"type\":\"identify\",\"userId\":\"\xff\xfe\",\"\xff\":\"\\ud800\"}",
	`{"batch":[{"type":"track","userId":"u","event":"E"}],"context":{"library":{"name":"x"}},"integrations":{"All":false},"sentAt":"2024-01-02T03:04:05Z","writeKey":"WK"}`,
	`{"batch":[1,null,"x",{}],"sentAt":5}`,
	`{"batch":{}}`,
	`[]`, `""`, ``, `null`, `{`, ` {} `,
}

func addFuzzSeeds(f *testing.F, add func(data []byte)) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	if len(files) == 0 {
		f.Fatal("no testdata/*.json seeds")
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		add(data)
	}
	for _, s := range fuzzSeeds {
		add([]byte(s))
	}
}

// FuzzDecode checks that Decode never panics, and that an event it accepts
// can be written by MarshalJSON as JSON that Decode accepts again and that
// re-marshals to the same bytes.
func FuzzDecode(f *testing.F) {
	addFuzzSeeds(f, func(data []byte) {
		f.Add(data, uint8(0))
		var probe struct{ Type Type }
		if json.Unmarshal(data, &probe) == nil && probe.Type != "" {
			f.Add(data, uint8(1)) // the same body posted to /v1/track
		}
	})
	received := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte, route uint8) {
		typ := fuzzRoutes[int(route)%len(fuzzRoutes)]
		e, err := Decode(data, typ)
		if err != nil {
			var ve *ValidationError
			switch {
			case errors.Is(err, ErrNotObject), strings.HasPrefix(err.Error(), "spec: invalid JSON: "):
				if e != nil {
					t.Fatalf("Decode returned an event with %v", err)
				}
				trimmed := bytes.Trim(data, " \t\r\n") // JSON whitespace only
				if len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(trimmed) {
					t.Fatalf("Decode rejected a valid JSON object: %v", err)
				}
			case errors.As(err, &ve):
				if len(ve.Fields) == 0 {
					t.Fatalf("empty *ValidationError")
				}
			default:
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		if e == nil {
			t.Fatal("Decode returned neither an event nor an error")
		}
		c := e.Fields()
		if !c.Type.Valid() || (typ != "" && c.Type != typ) {
			t.Fatalf("Type = %q with route %q", c.Type, typ)
		}
		if verr := e.Validate(); verr != nil {
			var ve *ValidationError
			if !errors.As(verr, &ve) {
				t.Fatalf("Validate returned %T, not a *ValidationError: %v", verr, verr)
			}
		}

		out, err := e.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON of an accepted event: %v", err)
		}
		if !json.Valid(out) {
			t.Fatalf("MarshalJSON wrote invalid JSON: %q", out)
		}
		e2, err := Decode(out, "")
		if err != nil {
			t.Fatalf("Decode of MarshalJSON output: %v\ninput:  %q\noutput: %q", err, data, out)
		}
		if reflect.TypeOf(e2) != reflect.TypeOf(e) {
			t.Fatalf("round trip changed %T into %T", e, e2)
		}
		out2, err := e2.MarshalJSON()
		if err != nil {
			t.Fatalf("second MarshalJSON: %v", err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("MarshalJSON is not a fixed point after one round:\nfirst:  %q\nsecond: %q", out, out2)
		}

		// An enriched event can be written and read back too.
		Enrich(e, received, "192.0.2.1")
		out3, err := e.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON after Enrich: %v", err)
		}
		if _, err := Decode(out3, ""); err != nil {
			t.Fatalf("Decode of enriched output: %v\n%q", err, out3)
		}
	})
}

// FuzzDecodeBatch checks that DecodeBatch never panics, and that merging
// and enriching the items it yields neither panics, nor changes the
// batch-level maps, nor produces an event MarshalJSON cannot write.
func FuzzDecodeBatch(f *testing.F) {
	addFuzzSeeds(f, func(data []byte) { f.Add(data) })
	received := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data)
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				if b == nil {
					t.Fatalf("DecodeBatch returned no envelope with %v", err)
				}
			} else if b != nil {
				t.Fatalf("DecodeBatch returned an envelope with %v", err)
			}
		}
		if b == nil {
			return
		}
		// The envelope's own scanner must cut the batch as encoding/json does.
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) == nil {
			var items []json.RawMessage
			if json.Unmarshal(m["batch"], &items) == nil && len(m["batch"]) > 0 && m["batch"][0] == '[' {
				if len(items) != len(b.Items) {
					t.Fatalf("batch cut into %d items, encoding/json finds %d", len(b.Items), len(items))
				}
				for i := range items {
					if !bytes.Equal(items[i], b.Items[i]) {
						t.Fatalf("item %d = %q, encoding/json finds %q", i, b.Items[i], items[i])
					}
				}
			}
		}
		before, err := json.Marshal([]any{b.Context, b.Integrations})
		if err != nil {
			t.Fatalf("batch maps cannot be marshalled: %v", err)
		}
		for _, raw := range b.Items {
			e, err := Decode(raw, "")
			if err != nil {
				continue
			}
			b.Merge(e)
			Enrich(e, received, "192.0.2.1")
			_ = e.Validate()
			out, err := e.MarshalJSON()
			if err != nil || !json.Valid(out) {
				t.Fatalf("MarshalJSON of a merged item: %v %q", err, out)
			}
		}
		after, err := json.Marshal([]any{b.Context, b.Integrations})
		if err != nil || !bytes.Equal(before, after) {
			t.Fatalf("batch-level maps changed:\nbefore %s\nafter  %s (%v)", before, after, err)
		}
	})
}
