package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
	`{"type":"identify","userId":"\ud800","anonymousId":"a\u0000","x":"<&>\u2028","y":{"z":[1, {"\u0061":2}]}}`,
	`{"type":"track","userId":"u","event":"E","writeKey":"WK","properties":` + strings.Repeat(`{"a":[`, 40) + strings.Repeat(`]}`, 40) + `}`,
	`{"type":"track","userId":"u","event":"E","custom":` + strings.Repeat(`[`, 70) + strings.Repeat(`]`, 70) + `,"other":1}`,
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
		// Unknown fields hold what encoding/json reads for them.
		var all map[string]json.RawMessage
		if err := json.Unmarshal(data, &all); err != nil {
			t.Fatalf("Decode accepted what encoding/json refuses: %v", err)
		}
		for k, raw := range c.Extra {
			if got, want := decodeAny(t, raw), decodeAny(t, all[k]); !reflect.DeepEqual(got, want) {
				t.Fatalf("Extra[%q] = %s, encoding/json reads %s", k, raw, all[k])
			}
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
		// Appended after a header, as the queues write it, the JSON is
		// the same, and so is what the copy keeping it writes.
		header := append(make([]byte, 0, len(data)+1024), "header"...)
		cp, rec, err := AppendWithJSON(header, e)
		if err != nil {
			t.Fatalf("AppendWithJSON: %v", err)
		}
		if string(rec[:len(header)]) != "header" || !bytes.Equal(rec[len(header):], out3) {
			t.Fatalf("AppendWithJSON wrote %q, want %q then %q", rec, "header", out3)
		}
		if kept, err := AppendJSON(nil, cp); err != nil || !bytes.Equal(kept, out3) {
			t.Fatalf("AppendJSON of the copy = %q, %v; want %q", kept, err, out3)
		}
		if got, want := cp.Fields().Size(), e.Fields().Size()+len(out3); e.Fields().Size() > 0 && got != want {
			t.Fatalf("the copy's Size is %d, want the event's plus its JSON's, %d", got, want)
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

// mergeSeeds are batch envelopes for FuzzMerge, beside testdata's.
var mergeSeeds = []string{
	`{"batch":[{"type":"identify","userId":"u"},{"type":"track","userId":"u","event":"E","context":{"b":2,"c":[1]},"integrations":{}}],"context":{"a":1,"b":"x"},"integrations":{"All":false},"sentAt":"2024-01-02T03:04:05+0530"}`,
	`{"batch":[{"type":"page","anonymousId":12,"context":{"\u0061":"own","z":null},"sentAt":null}],"context":{"a":"<b>&amp;</b>","a":"dup","\u2028":1} , "integrations":{"X":{"y":true}}}`,
	`{"batch":[ {"type":"group","userId":"u","groupId":7,"sentAt":"0001-01-01T00:00:00Z","context":null,"integrations":{"All":true,"All":false}} ],"context":{"ip":null,"library":{"name":"analytics-go"}},"sentAt":"2024-01-02T03:04:05.123456789Z"}`,
	`{"batch":[{"type":"alias","userId":"u","previousId":"p","context":{"ip":"1.1.1.1"}}],"context":{},"integrations":null}`,
	`{"batch":[{"type":"screen","userId":"u","context":{"k":{"deep":[{"x":1}]}}}],"context":{"k":{"deep":[]},"l":"\ud800"}}`,
}

// FuzzMerge checks Batch.Merge against a naive merge done with encoding/json
// maps (each item's context and integrations are the batch's, key by key
// under the item's own; its sentAt is the batch's when it has none), and
// Batch.MergedSize against the merged event: at least the merged item
// written as compact JSON in the request's spelling, at most the item plus
// the batch-level members; MarshalJSON writes no more than MergedSize plus
// the escapes it adds. Enrich must change neither the batch's maps nor
// another item's.
func FuzzMerge(f *testing.F) {
	for _, name := range []string{"batch_go.json", "batch_node.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range mergeSeeds {
		f.Add([]byte(s))
	}
	received := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data)
		if err != nil {
			return
		}
		var env map[string]json.RawMessage
		if err := json.Unmarshal(data, &env); err != nil {
			t.Fatalf("DecodeBatch accepted what encoding/json refuses: %v", err)
		}
		refCtx, refInts := rawObject(t, env["context"]), rawObject(t, env["integrations"])
		batchSentAt := b.SentAt
		batchBytes := memberLen("context", env["context"]) + memberLen("integrations", env["integrations"])
		if !batchSentAt.IsZero() {
			batchBytes += memberLen("sentAt", env["sentAt"])
		}
		before := mustJSON(t, []any{b.Context, b.Integrations})
		var merged []Event
		var mergedCtx []string
		for i, raw := range b.Items {
			e, err := Decode(raw, "")
			if err != nil {
				continue
			}
			unmerged := topLevel(t, mustMarshal(t, e))
			size := b.MergedSize(e)
			b.Merge(e)
			if again := b.MergedSize(e); again != size {
				t.Fatalf("item %d: MergedSize %d before Merge, %d after", i, size, again)
			}
			out := mustMarshal(t, e)
			got := decodeAny(t, out).(map[string]any)

			// The same JSON object as the naive merge.
			item := rawObject(t, raw)
			wantCtx := mergeRaw(rawObject(t, item["context"]), refCtx)
			wantInts := mergeRaw(rawObject(t, item["integrations"]), refInts)
			for _, f := range []struct {
				name string
				want map[string]json.RawMessage
			}{{"context", wantCtx}, {"integrations", wantInts}} {
				var wantV any
				if len(f.want) > 0 {
					wantV = decodeAny(t, mustJSON(t, f.want))
				}
				if !reflect.DeepEqual(got[f.name], wantV) {
					t.Fatalf("item %d: %s = %#v, naive merge %#v", i, f.name, got[f.name], wantV)
				}
			}
			// An item has a sentAt of its own when it gave a time other
			// than Go's zero time, which MarshalJSON leaves out.
			wantSent := batchSentAt
			own, err := parseOwnTime(item["sentAt"])
			inherits := err != nil || own.IsZero()
			if !inherits {
				wantSent = own
			}
			if !e.Fields().SentAt.Equal(wantSent) {
				t.Fatalf("item %d: sentAt = %v, want %v", i, e.Fields().SentAt, wantSent)
			}
			outTop := topLevel(t, out)
			for k, v := range unmerged {
				if k != "context" && k != "integrations" && k != "sentAt" && !bytes.Equal(outTop[k], v) {
					t.Fatalf("item %d: Merge changed %s from %s to %s", i, k, v, outTop[k])
				}
			}

			// The size, against the merged item in the request's spelling.
			item["context"], item["integrations"] = mustJSONRaw(t, wantCtx), mustJSONRaw(t, wantInts)
			if inherits && !batchSentAt.IsZero() {
				item["sentAt"] = env["sentAt"]
			}
			if n := requestLen(t, item); size < n {
				t.Fatalf("item %d: MergedSize %d, below the %d bytes of the merged item, compact", i, size, n)
			}
			if most := len(bytes.Trim(raw, " \t\r\n")) + batchBytes; size > most {
				t.Fatalf("item %d: MergedSize %d, over the item and the batch-level members (%d)", i, size, most)
			}
			escapes := 0
			for _, text := range [][]byte{raw, env["context"], env["integrations"]} {
				escapes += 5*bytes.Count(text, []byte("<")) + 5*bytes.Count(text, []byte(">")) + 5*bytes.Count(text, []byte("&")) +
					3*bytes.Count(text, []byte("\u2028")) + 3*bytes.Count(text, []byte("\u2029"))
			}
			if len(out) > size+escapes+16 {
				t.Fatalf("item %d: MarshalJSON wrote %d bytes, over MergedSize %d and the %d bytes of escapes added", i, len(out), size, escapes)
			}
			merged = append(merged, e)
			mergedCtx = append(mergedCtx, string(mustJSON(t, e.Fields().Context)))
		}
		// Enriching each item touches neither the batch nor the others.
		for i, e := range merged {
			Enrich(e, received, fmt.Sprintf("192.0.2.%d", i%250))
			if len(merged) > 50 {
				continue // checking every pair would take too long
			}
			for j := range merged[i+1:] {
				if now := string(mustJSON(t, merged[i+1+j].Fields().Context)); now != mergedCtx[i+1+j] {
					t.Fatalf("enriching item %d changed item %d's context: %s -> %s", i, i+1+j, mergedCtx[i+1+j], now)
				}
			}
		}
		if after := mustJSON(t, []any{b.Context, b.Integrations}); !bytes.Equal(before, after) {
			t.Fatalf("batch-level maps changed:\nbefore %s\nafter  %s", before, after)
		}
	})
}

// rawObject decodes a JSON object into its members, as written; anything
// else (absent, null) is nil.
func rawObject(t *testing.T, raw []byte) map[string]json.RawMessage {
	t.Helper()
	if len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("unmarshal %s: %v", raw, err)
	}
	return m
}

// mergeRaw is the naive merge: base's members under own's.
func mergeRaw(own, base map[string]json.RawMessage) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	maps.Copy(out, base)
	maps.Copy(out, own)
	return out
}

// parseOwnTime reads an item's own timestamp as Decode does.
func parseOwnTime(raw []byte) (time.Time, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, err
	}
	return parseTime(s)
}

// memberLen is the length of `"name":raw,`, or 0 for an absent member.
func memberLen(name string, raw []byte) int {
	if len(raw) == 0 {
		return 0
	}
	return len(name) + len(`"":,`) + len(raw)
}

// requestLen is the length of m written as compact JSON, each value as in
// the request and each key with the fewest escapes.
func requestLen(t *testing.T, m map[string]json.RawMessage) int {
	t.Helper()
	n := len("{}")
	for k, v := range m {
		if len(v) == 0 {
			continue
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			t.Fatal(err)
		}
		n += minQuotedLen(k) + len(":,") + buf.Len()
	}
	return n - 1
}

// minQuotedLen is the length of s as the shortest JSON string.
func minQuotedLen(s string) int {
	n := len(`""`)
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
			n += 2
		case c < 0x20:
			n += 6
		default:
			n++
		}
	}
	return n
}

func decodeAny(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSONRaw(t *testing.T, m map[string]json.RawMessage) json.RawMessage {
	t.Helper()
	if len(m) == 0 {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(buf.Bytes())
}
