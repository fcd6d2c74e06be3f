package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
)

// The tests in this file drive the package as the HTTP handler does, and
// check what a sender is answered: which items are refused, for which
// field and rule, and what a request costs.

// maxEventBytes is the handler's default limit of one event (32 KB).
const maxEventBytes = 32 << 10

// answer is what the handler answers for a request.
type answer struct {
	status   int              // 200, 400 or 413
	fields   []string         // "field/rule" of a request refused whole
	accepted []Event          // the events enqueued
	rejected map[int][]string // "field/rule" by item index
	sizes    map[int]int      // the merged size of each item measured
}

// serveEvent follows the handler for a single-event call.
func serveEvent(t testing.TB, body string, route Type) answer {
	t.Helper()
	e, err := Decode([]byte(body), route)
	if err == nil {
		err = e.Validate()
	}
	if err != nil {
		return answer{status: 400, fields: fieldRules(t, err)}
	}
	Enrich(e, time.Now(), "203.0.113.7")
	return answer{status: 200, accepted: []Event{e}}
}

// serveBatch follows the handler for a batch call: an item over the limit
// of one event, as sent or once merged, is refused; a batch whose merged
// items add up to more than MaxMergedBatchBytes is refused whole (413).
func serveBatch(t testing.TB, body []byte) answer {
	t.Helper()
	b, err := DecodeBatch(body)
	if err != nil {
		return answer{status: 400, fields: fieldRules(t, err)}
	}
	a := answer{rejected: map[int][]string{}, sizes: map[int]int{}}
	total := 0
	for i, raw := range b.Items {
		if len(raw) > maxEventBytes {
			a.rejected[i] = []string{"/size"}
			continue
		}
		e, err := Decode(raw, "")
		if err == nil {
			n := b.MergedSize(e)
			a.sizes[i] = n
			if n > maxEventBytes {
				a.rejected[i] = []string{"/size"}
				continue
			}
			if total += n; total > MaxMergedBatchBytes {
				return answer{status: 413}
			}
			b.Merge(e)
			err = e.Validate()
		}
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				a.rejected[i] = []string{"/json"}
				continue
			}
			a.rejected[i] = fieldRules(t, err)
			continue
		}
		Enrich(e, time.Now(), "203.0.113.7")
		a.accepted = append(a.accepted, e)
	}
	a.status = 200
	if len(a.accepted) == 0 {
		a.status = 400
	}
	return a
}

// allocated returns the bytes f allocates, and the heap still held after it
// (while keep holds what f returned).
func allocated(f func() any) (total, held int) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	keep := f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keep)
	return int(after.TotalAlloc - before.TotalAlloc), int(int64(after.HeapAlloc) - int64(before.HeapAlloc))
}

// amplificationBatch is the request that took a collector from 23 MB to
// 2.77 GB: 2,500 tiny events under a batch-level context of 10,000 keys,
// about 209 KB. item is the JSON of each event.
func amplificationBatch(item string) []byte {
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i := range 2500 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(item)
	}
	b.WriteString(`],"context":{`)
	for i := range 10000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%04d":0`, i)
	}
	b.WriteString(`}}`)
	return []byte(b.String())
}

// TestMergeSharesTheBatchContext decodes the amplification request and
// merges and enriches every item, without any size check: the items share
// the batch's context (and one copy of it holding the ip) instead of each
// copying its 10,000 keys, so the whole costs a bounded multiple of the
// request. Copying made it 2.5 GB, 12,000 times the request. Decoding JSON
// into Go maps allocates some 50 times its size, most of it garbage at
// once: the bounds below leave room for that, not for a copy per item.
func TestMergeSharesTheBatchContext(t *testing.T) {
	body := amplificationBatch(`{"type":"track","userId":"u","event":"E"}`)
	t.Logf("request: %d bytes", len(body))
	var events []Event
	total, held := allocated(func() any {
		b, err := DecodeBatch(body)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range b.Items {
			e, err := Decode(raw, "")
			if err != nil {
				t.Fatal(err)
			}
			b.Merge(e)
			Enrich(e, time.Now(), "203.0.113.7")
			events = append(events, e)
		}
		return events
	})
	t.Logf("allocated %d bytes (%.1f times the request), %d held", total, float64(total)/float64(len(body)), held)
	if limit := 64 * len(body); total > limit {
		t.Errorf("decoding and merging allocated %d bytes, over %d (64 times the request): items copy the batch context", total, limit)
	}
	if limit := 16 * len(body); held > limit {
		t.Errorf("the merged events hold %d bytes, over %d (16 times the request)", held, limit)
	}
	first := events[0].Fields().Context
	if len(first) != 10001 || first["ip"] != "203.0.113.7" {
		t.Fatalf("context has %d keys, ip %v; want the batch's 10,000 and the ip", len(first), first["ip"])
	}
	for i, e := range events {
		if !sameMap(e.Fields().Context, first) {
			t.Fatalf("item %d holds a context of its own", i)
		}
	}
}

// TestBatchAmplificationRefused sends the amplification request through the
// handler's steps: each item is 100 KB once merged, over the 32 KB limit of
// one event, so each is refused before anything is copied.
func TestBatchAmplificationRefused(t *testing.T) {
	for name, item := range map[string]string{
		"items without context":    `{"type":"track","userId":"u","event":"E"}`,
		"items with their own":     `{"type":"track","userId":"u","event":"E","context":{"locale":"de-DE"}}`,
		"items overriding one key": `{"type":"track","userId":"u","event":"E","context":{"k0001":1}}`,
	} {
		t.Run(name, func(t *testing.T) {
			body := amplificationBatch(item)
			var a answer
			total, _ := allocated(func() any { a = serveBatch(t, body); return nil })
			t.Logf("request %d bytes: allocated %d (%.1f times)", len(body), total, float64(total)/float64(len(body)))
			if a.status != 400 || len(a.accepted) != 0 || len(a.rejected) != 2500 {
				t.Fatalf("status %d, %d accepted, %d refused; want 400 and all 2,500 refused", a.status, len(a.accepted), len(a.rejected))
			}
			if got := a.rejected[1234]; !slices.Equal(got, []string{"/size"}) {
				t.Errorf("item 1234 refused for %q, want its size", got)
			}
			if n := a.sizes[0]; n < 100000 || n > len(body) {
				t.Errorf("merged size of item 0 = %d, want the item plus the 100 KB context", n)
			}
			if limit := 64 * len(body); total > limit {
				t.Errorf("answering allocated %d bytes, over %d (64 times the request)", total, limit)
			}
		})
	}
}

// TestMergedBatchLimit checks that a batch whose merged items add up to
// more than MaxMergedBatchBytes is refused whole, and one just under it is
// accepted.
func TestMergedBatchLimit(t *testing.T) {
	item := `{"type":"track","userId":"u","event":"E"}`
	ctx := `{"library":{"name":"` + strings.Repeat("x", 900) + `"}}`
	batch := func(n int) []byte {
		return []byte(`{"batch":[` + repeat(n, func(int) string { return item }) + `],"context":` + ctx + `}`)
	}
	per := len(item) + len(`"context":`) + len(ctx) + len(",")
	fits := MaxMergedBatchBytes / per
	a := serveBatch(t, batch(fits))
	if a.status != 200 || len(a.accepted) != fits {
		t.Fatalf("%d items of %d merged bytes (%d in all): status %d, %d accepted; want 200 and all", fits, per, fits*per, a.status, len(a.accepted))
	}
	if got := a.sizes[0]; got != per {
		t.Errorf("merged size = %d, want %d", got, per)
	}
	if a := serveBatch(t, batch(fits+1)); a.status != 413 {
		t.Errorf("%d items of %d merged bytes (%d in all, over %d): status %d, want 413", fits+1, per, (fits+1)*per, MaxMergedBatchBytes, a.status)
	}
	// The request itself is small: the bound is on what it becomes.
	if n := len(batch(fits + 1)); n > 500<<10 {
		t.Errorf("the refused request is %d bytes; the test wants one under the 500 KB batch limit", n)
	}
}

// TestMergedSize checks MergedSize against the merged item written out by
// hand, compact, with the request's spelling.
func TestMergedSize(t *testing.T) {
	envelope := `{"batch":[%s],"sentAt":"2024-01-02T03:04:05Z","context":{"a":1,"bb":"x"},"integrations":{"All":false}}`
	tests := []struct {
		name, item, merged string
	}{
		{
			"inherits all",
			`{"type":"identify","userId":"u"}`,
			`{"type":"identify","userId":"u","sentAt":"2024-01-02T03:04:05Z","context":{"a":1,"bb":"x"},"integrations":{"All":false}}`,
		},
		{
			"own sentAt and a key of its own",
			`{"type":"identify","userId":"u","sentAt":"2024-01-02T03:04:00Z","context":{"c":true}}`,
			`{"type":"identify","userId":"u","sentAt":"2024-01-02T03:04:00Z","context":{"c":true,"a":1,"bb":"x"},"integrations":{"All":false}}`,
		},
		{
			"overrides a key",
			`{"type":"identify","userId":"u","context":{"bb":"own value"},"integrations":{"All":true}}`,
			`{"type":"identify","userId":"u","context":{"bb":"own value","a":1},"integrations":{"All":true},"sentAt":"2024-01-02T03:04:05Z"}`,
		},
		{
			"overrides everything",
			`{"type":"identify","userId":"u","sentAt":"2024-01-02T03:04:00Z","context":{"bb":"","a":2},"integrations":{"All":true}}`,
			`{"type":"identify","userId":"u","sentAt":"2024-01-02T03:04:00Z","context":{"bb":"","a":2},"integrations":{"All":true}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := DecodeBatch([]byte(fmt.Sprintf(envelope, tt.item)))
			if err != nil {
				t.Fatal(err)
			}
			e := mustDecode(t, string(b.Items[0]), "")
			got := b.MergedSize(e)
			if want := len(tt.merged); got != want {
				t.Errorf("MergedSize = %d, want %d, the length of %s", got, want, tt.merged)
			}
			b.Merge(e)
			if again := b.MergedSize(e); again != got {
				t.Errorf("MergedSize after Merge = %d, want the %d recorded", again, got)
			}
			assertEventsEqual(t, e, mustDecode(t, tt.merged, ""))
		})
	}
	// A batch built in Go is measured by encoding its fields.
	b := &Batch{Context: map[string]any{"a": json1, "bb": "x"}, Integrations: map[string]any{"All": false}, SentAt: mustTime("2024-01-02T03:04:05Z")}
	e := mustDecode(t, tests[0].item, "")
	if got, want := b.MergedSize(e), len(tests[0].merged); got != want {
		t.Errorf("Batch built in Go: MergedSize = %d, want %d", got, want)
	}
}

// json1 is the number 1 as Decode reads it.
var json1 = json.Number("1")

// TestDepthLimit checks that an event nested MaxDepth levels deep is
// accepted and can be written out, and one a level deeper is refused at
// decode, naming the field, without being decoded.
func TestDepthLimit(t *testing.T) {
	nested := func(levels int, open, close string) string {
		return strings.Repeat(open, levels) + "0" + strings.Repeat(close, levels)
	}
	// The event's object is level 1, properties level 2.
	okBody := `{"type":"track","userId":"u","event":"E","properties":` + nested(MaxDepth-1, `{"a":`, `}`) + `}`
	a := serveEvent(t, okBody, "")
	if a.status != 200 {
		t.Fatalf("an event %d levels deep: %d %q, want it accepted", MaxDepth, a.status, a.fields)
	}
	if _, err := a.accepted[0].MarshalJSON(); err != nil {
		t.Errorf("MarshalJSON of an accepted event %d levels deep: %v", MaxDepth, err)
	}

	// The path names the first container past the limit.
	deepPath := "properties" + strings.Repeat(".a", MaxDepth-1)
	tests := []struct {
		name, body string
		want       []string
	}{
		{
			"objects",
			`{"type":"track","userId":"u","event":"E","properties":` + nested(MaxDepth, `{"a":`, `}`) + `}`,
			[]string{deepPath + "/depth"},
		},
		{
			"arrays in context",
			`{"type":"track","userId":"u","event":"E","context":{"x":[7,` + nested(MaxDepth-1, `[`, `]`) + `]}}`,
			[]string{"context.x[1]" + strings.Repeat("[0]", MaxDepth-3) + "/depth"},
		},
		{
			"unknown field",
			`{"type":"track","userId":"u","event":"E","custom":` + nested(MaxDepth, `[`, `]`) + `}`,
			[]string{"custom" + strings.Repeat("[0]", MaxDepth-1) + "/depth"},
		},
		{
			"10,000 levels, as far as encoding/json goes",
			`{"type":"track","userId":"u","event":"E","properties":{"a":` + nested(9990, `[`, `]`) + `}}`,
			[]string{"properties.a" + strings.Repeat("[0]", MaxDepth-2) + "/depth"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := serveEvent(t, tt.body, "")
			if a.status != 400 || !slices.Equal(a.fields, tt.want) {
				t.Errorf("answer %d %q, want 400 %q", a.status, a.fields, tt.want)
			}
		})
	}

	// The event is returned as far as it could be read: its writeKey, for
	// the handler to check, and the fields beside the deep one.
	body := `{"type":"track","properties":` + nested(MaxDepth+5, `{"a":`, `}`) + `,"userId":"u","event":"E","writeKey":"WK"}`
	e, err := Decode([]byte(body), "")
	assertFieldRules(t, err, deepPath+"/depth")
	if e == nil || e.Fields().WriteKey != "WK" || e.Fields().UserID != "u" || e.(*Track).Properties != nil {
		t.Errorf("event returned with the depth error = %#v, want writeKey and userId read and properties not", e)
	}
	// Refusing a deep value costs little: it is not decoded.
	deep := []byte(tests[3].body)
	if allocs := testing.AllocsPerRun(20, func() { _, _ = Decode(deep, "") }); allocs > 100 {
		t.Errorf("refusing 10,000 levels took %.0f allocations; the value must not be decoded", allocs)
	}

	// A batch-level context nested too deep for the events is refused
	// whole.
	a = serveBatch(t, []byte(`{"batch":[{"type":"track","userId":"u","event":"E"}],"context":{"c":`+nested(MaxDepth-1, `[`, `]`)+`}}`))
	if want := []string{"context.c" + strings.Repeat("[0]", MaxDepth-2) + "/depth"}; a.status != 400 || !slices.Equal(a.fields, want) {
		t.Errorf("deep batch context: %d %q, want 400 %q", a.status, a.fields, want)
	}
	// An item too deep is refused alone.
	a = serveBatch(t, []byte(`{"batch":[{"type":"track","userId":"u","event":"E"},{"type":"track","userId":"u","event":"E","properties":`+nested(MaxDepth, `{"a":`, `}`)+`}]}`))
	if a.status != 200 || len(a.accepted) != 1 || !slices.Equal(a.rejected[1], []string{deepPath + "/depth"}) {
		t.Errorf("deep item: %d, %d accepted, refused %v", a.status, len(a.accepted), a.rejected)
	}

	// An event built in Go deeper than MaxDepth is not written.
	var v any = 0.0
	for range MaxDepth - 1 {
		v = []any{v}
	}
	built := &Track{Common: Common{Type: TypeTrack, UserID: "u"}, Event: "E", Properties: map[string]any{"a": v}}
	if _, err := built.MarshalJSON(); err == nil {
		t.Errorf("MarshalJSON wrote an event %d levels deep", MaxDepth+1)
	}
}

// TestDepthErrorPathIsShort checks that the field path named for a deep
// value stays short when the keys are long.
func TestDepthErrorPathIsShort(t *testing.T) {
	key := strings.Repeat("k", 400)
	body := `{"type":"track","userId":"u","event":"E","properties":` +
		strings.Repeat(`{"`+key+`":`, MaxDepth) + "0" + strings.Repeat("}", MaxDepth) + `}`
	_, err := Decode([]byte(body), "")
	ve := validationError(t, err)
	if f := ve.Fields[0]; f.Rule != "depth" || len(f.Field) > maxPathLength+len("…") || !strings.HasPrefix(f.Field, "properties."+key[:50]) {
		t.Errorf("field %q (%d bytes), rule %q; want a depth error naming at most %d bytes of path", f.Field, len(f.Field), f.Rule, maxPathLength)
	}
}

// stackGrowth runs fn on a goroutine of its own and returns how much the
// stacks in use grew meanwhile: a goroutine's stack grows with its
// recursion, and only a garbage collection shrinks it, which is off while
// this measures.
func stackGrowth(fn func()) int64 {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var before, after runtime.MemStats
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.ReadMemStats(&before)
		fn()
		runtime.ReadMemStats(&after)
	}()
	<-done
	return int64(after.StackInuse) - int64(before.StackInuse)
}

// TestDeepInputCostsNoStack: JSON nested 9,999 levels deep (20 KB, which
// encoding/json still takes as valid) where it is refused costs no deep
// recursion: a batch's writeKey or sentAt that is an array, and an event
// whose syntax error comes after the nesting. Decoding such a value would
// take megabytes of stack for a request of kilobytes; the first check shows
// that the measure sees that.
func TestDeepInputCostsNoStack(t *testing.T) {
	deep := strings.Repeat("[", 9998) + strings.Repeat("]", 9998) // 9,999 levels with the batch
	if g := stackGrowth(func() { _, _ = decodeValue([]byte(deep)) }); g < 1<<20 {
		t.Fatalf("decoding the deep value grew the stacks by %d bytes; the measure does not see recursion", g)
	}
	for _, tc := range []struct {
		name, body, want string
		batch            bool
	}{
		{"writeKey", `{"batch":[],"writeKey":` + deep + `}`, "writeKey", true},
		{"sentAt", `{"batch":[],"sentAt":` + deep + `}`, "sentAt", true},
		{"event", `{"type":"track","userId":"u","event":"E","x":` + strings.Repeat("[", 10000) + `}`, "invalid JSON", false},
	} {
		var err error
		g := stackGrowth(func() {
			if tc.batch {
				_, err = DecodeBatch([]byte(tc.body))
			} else {
				_, err = Decode([]byte(tc.body), "")
			}
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.name, err, tc.want)
		}
		if g > 256<<10 {
			t.Errorf("%s: the stacks grew by %d bytes", tc.name, g)
		}
	}
}

// TestIDText checks the text rules of ids: invalid UTF-8, U+FFFD (which a
// lone surrogate decodes to) and control characters are refused, naming
// the id, so that two different ids never become one user.
func TestIDText(t *testing.T) {
	ids := []struct {
		field string
		typ   Type
	}{
		{"userId", TypeIdentify}, {"anonymousId", TypeIdentify}, {"messageId", TypeIdentify},
		{"groupId", TypeGroup}, {"previousId", TypeAlias},
	}
	values := []struct {
		name, raw, rule string
	}{
		{"invalid byte", "\"u\xff\"", "utf8"},
		{"other invalid byte", "\"u\xfe\"", "utf8"},
		{"truncated sequence", "\"u\xe2\x82\"", "utf8"},
		{"lone high surrogate", `"u\ud800"`, "utf8"},
		{"lone low surrogate", `"u\udc00"`, "utf8"},
		{"U+FFFD as sent", "\"u\uFFFD\"", "utf8"},
		{"NUL", `"u\u0000"`, "control"},
		{"newline", `"u\n"`, "control"},
		{"tab", `"u\t"`, "control"},
		{"unit separator", `"u\u001f"`, "control"},
		{"DEL escaped", `"u\u007f"`, "control"},
		{"DEL as sent", "\"u\x7f\"", "control"},
	}
	base := map[Type]string{
		TypeIdentify: `{"type":"identify","userId":"u","anonymousId":"a","messageId":"m"`,
		TypeGroup:    `{"type":"group","userId":"u","groupId":"g"`,
		TypeAlias:    `{"type":"alias","userId":"u","previousId":"p"`,
	}
	for _, id := range ids {
		for _, v := range values {
			t.Run(id.field+"/"+v.name, func(t *testing.T) {
				body := base[id.typ] + `,"` + id.field + `":` + v.raw + `}`
				a := serveEvent(t, body, "")
				if want := []string{id.field + "/" + v.rule}; a.status != 400 || !slices.Equal(a.fields, want) {
					t.Errorf("answer %d %q, want 400 %q", a.status, a.fields, want)
				}
				// The same in a batch: the item is refused, the others kept.
				batch := `{"batch":[` + body + `,{"type":"identify","userId":"ok"}]}`
				b := serveBatch(t, []byte(batch))
				if want := []string{id.field + "/" + v.rule}; b.status != 200 || len(b.accepted) != 1 || !slices.Equal(b.rejected[0], want) {
					t.Errorf("batch: %d, %d accepted, refused %v; want item 0 refused %q", b.status, len(b.accepted), b.rejected, want)
				}
			})
		}
	}
	// Ids in other scripts, emoji and escapes are text like any other.
	for _, raw := range []string{`"ユーザー"`, `"🎉"`, `"caf\u00e9"`, `"\ud83c\udf89"`, `" spaced id "`, `"a\u0080b"`} {
		if a := serveEvent(t, `{"type":"identify","userId":`+raw+`}`, ""); a.status != 200 {
			t.Errorf("userId %s: answer %d %q, want it accepted", raw, a.status, a.fields)
		}
	}
	// An event built in Go is held to the same rules by Validate.
	for _, id := range []string{"u\xff", "u\uFFFD", "u\x00", "u\x7f"} {
		e := &Identify{Common: Common{Type: TypeIdentify, UserID: id}}
		if err := e.Validate(); err == nil {
			t.Errorf("Validate accepted userId %q", id)
		}
	}
}

// TestTextOutsideIDs checks the rule for text in other fields: bytes that
// are not UTF-8 are refused wherever they are, naming the field; a lone
// surrogate escape is read as U+FFFD, and control characters are kept.
func TestTextOutsideIDs(t *testing.T) {
	refused := []struct {
		name, body, want string
	}{
		{"event name", "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"Order\xff\"}", "event/utf8"},
		{"property value", "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"E\",\"properties\":{\"list\":[1,\"\xc3\x28\"]}}", "properties.list[1]/utf8"},
		{"property key", "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"E\",\"properties\":{\"k\xff\":1}}", "properties.k\uFFFD/utf8"},
		{"context", "{\"type\":\"page\",\"userId\":\"u\",\"context\":{\"page\":{\"title\":\"\xed\xa0\x80\"}}}", "context.page.title/utf8"},
		{"unknown field", "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"E\",\"custom\":\"\xff\"}", "custom/utf8"},
		{"unknown key", "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"E\",\"\xff\":1}", "\uFFFD/utf8"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			a := serveEvent(t, tt.body, "")
			if a.status != 400 || !slices.Equal(a.fields, []string{tt.want}) {
				t.Errorf("answer %d %q, want 400 %q", a.status, a.fields, tt.want)
			}
		})
	}
	// Well-formed JSON text is accepted as encoding/json reads it.
	a := serveEvent(t, `{"type":"track","userId":"u","event":"Tab\there","properties":{"title":"cut \ud83c","ctl":"\u0001"}}`, "")
	if a.status != 200 {
		t.Fatalf("answer %d %q, want it accepted", a.status, a.fields)
	}
	tr := a.accepted[0].(*Track)
	if tr.Event != "Tab\there" || tr.Properties["title"] != "cut \uFFFD" || tr.Properties["ctl"] != "\x01" {
		t.Errorf("event %q, properties %q", tr.Event, tr.Properties)
	}
	// A batch-level context that is not UTF-8 is refused whole.
	b := serveBatch(t, []byte("{\"batch\":[{\"type\":\"identify\",\"userId\":\"u\"}],\"context\":{\"library\":{\"name\":\"\xff\"}}}"))
	if want := []string{"context.library.name/utf8"}; b.status != 400 || !slices.Equal(b.fields, want) {
		t.Errorf("batch context: %d %q, want 400 %q", b.status, b.fields, want)
	}
}

// TestTimesOutsideTheWarehouseRange: instants whose UTC year is outside
// 1..9999 are refused at the door, since sinks cannot store them.
func TestTimesOutsideTheWarehouseRange(t *testing.T) {
	for _, ts := range []string{"0000-06-01T00:00:00Z", "0001-01-01T00:30:00+01:00", "9999-12-31T23:00:00-05:00"} {
		_, err := Decode([]byte(`{"type":"track","userId":"u","event":"E","timestamp":"`+ts+`"}`), "")
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Fields[0].Field != "timestamp" {
			t.Errorf("timestamp %s: %v, want a ValidationError on timestamp", ts, err)
		}
	}
	if _, err := Decode([]byte(`{"type":"track","userId":"u","event":"E","timestamp":"0001-01-01T00:30:00Z"}`), ""); err != nil {
		t.Errorf("year 1 in UTC: %v", err)
	}
}
