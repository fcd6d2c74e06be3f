package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// heapPerEvent decodes n copies of data, keeps them, and returns the heap
// they hold per event after a garbage collection, with the first event.
func heapPerEvent(t *testing.T, data []byte, n int) (int, Event) {
	t.Helper()
	events := make([]Event, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range events {
		e, err := decode(data, "", math.MaxInt)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		events[i] = e
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(n)
	runtime.KeepAlive(events)
	return int(grown), events[0]
}

// repeat joins n copies of f(i) with commas.
func repeat(n int, f func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = f(i)
	}
	return strings.Join(parts, ",")
}

// adversarialShapes are events of at most 32 KB whose decoded form is as
// large as JSON allows, one shape of value each.
func adversarialShapes() map[string]string {
	const head = `{"type":"track","userId":"u","event":"E",`
	nest := func(depth int, open, close string) string {
		return strings.Repeat(open, depth) + strings.Repeat(close, depth)
	}
	return map[string]string{
		"empty objects":       head + `"properties":{` + repeat(3200, func(i int) string { return fmt.Sprintf(`"%x":{}`, i) }) + `}}`,
		"empty objects list":  head + `"properties":{"l":[` + repeat(10800, func(int) string { return `{}` }) + `]}}`,
		"one-entry objects":   head + `"properties":{"l":[` + repeat(3600, func(int) string { return `{"a":0}` }) + `]}}`,
		"nine-entry objects":  head + `"properties":{"l":[` + repeat(580, func(int) string { return `{"a":0,"b":0,"c":0,"d":0,"e":0,"f":0,"g":0,"h":0,"i":0}` }) + `]}}`,
		"tiny strings":        head + `"properties":{"l":[` + repeat(10800, func(int) string { return `""` }) + `]}}`,
		"one-byte strings":    head + `"properties":{"l":[` + repeat(8000, func(int) string { return `"a"` }) + `]}}`,
		"string members":      head + `"properties":{` + repeat(3200, func(i int) string { return fmt.Sprintf(`"%x":"a"`, i) }) + `}}`,
		"numbers":             head + `"properties":{"l":[` + repeat(16000, func(int) string { return `0` }) + `]}}`,
		"number members":      head + `"context":{` + repeat(3600, func(i int) string { return fmt.Sprintf(`"%x":0`, i) }) + `}}`,
		"empty arrays":        head + `"properties":{"l":[` + repeat(10800, func(int) string { return `[]` }) + `]}}`,
		"one-element arrays":  head + `"properties":{"l":[` + repeat(8000, func(int) string { return `[0]` }) + `]}}`,
		"deep arrays":         head + `"properties":{"l":[` + repeat(250, func(int) string { return nest(MaxDepth-3, "[", "]") }) + `]}}`,
		"deep objects":        head + `"properties":` + strings.Repeat(`{"a":`, MaxDepth-1) + `0` + strings.Repeat(`}`, MaxDepth-1) + `}`,
		"long string":         head + `"properties":{"s":"` + strings.Repeat("x", 32000) + `"}}`,
		"long string escaped": head + `"properties":{"s":"` + strings.Repeat(`\u00e9`, 5000) + `"}}`,
		"unknown fields":      head + repeat(3000, func(i int) string { return fmt.Sprintf(`"%x":0`, i) }) + `}`,
		"unknown empties":     head + repeat(2800, func(i int) string { return fmt.Sprintf(`"%x":{}`, i) }) + `}`,
		"half-hour offsets":   head + `"timestamp":"2024-01-02T03:04:05+05:30","originalTimestamp":"2024-01-02T03:04:05+05:45","sentAt":"2024-01-02T03:04:05-09:30"}`,
		"minimal":             `{"type":"track","userId":"u","event":"E"}`,
	}
}

// TestSizeBoundsHeap checks Size against the heap decoded events really
// hold, measured with runtime.MemStats: never below it for any shape JSON
// allows in 32 KB, and within half again of it for the SDK payloads in
// testdata. It calibrates the cost constants of scan.go.
func TestSizeBoundsHeap(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the cost model is for 64-bit platforms")
	}
	check := func(name string, data []byte, n int, maxRatio float64) {
		t.Helper()
		heap, e := heapPerEvent(t, data, n)
		size := e.Fields().Size()
		ratio := float64(size) / float64(heap)
		t.Logf("%-22s JSON %6d  heap %8d  Size %8d  Size/heap %.2f", name, len(data), heap, size, ratio)
		if size < heap {
			t.Errorf("%s: Size() = %d, below the %d bytes of heap each decoded event holds", name, size, heap)
		}
		if maxRatio > 0 && ratio > maxRatio {
			t.Errorf("%s: Size() = %d, %.2f times the %d bytes of heap held; want at most %.1f", name, size, ratio, heap, maxRatio)
		}
	}
	for name, body := range adversarialShapes() {
		if len(body) > 32<<10 {
			t.Fatalf("%s: %d bytes, over the 32 KB an event may have", name, len(body))
		}
		n := 20
		if len(body) < 1000 {
			n = 2000
		}
		check(name, []byte(body), n, 0)
	}
	for _, name := range testdataEvents(t) {
		check(name, readTestdata(t, name), 2000, 1.5)
	}
}

// TestDecodeRefusesEventsTooCostly: an event that would hold more than
// MaxEventMemory once decoded is refused, with the rule "size", before it
// is decoded (allocating a small part of what it would hold); real SDK
// payloads are far below the bound.
func TestDecodeRefusesEventsTooCostly(t *testing.T) {
	refused := 0
	for name, body := range adversarialShapes() {
		e, err := decode([]byte(body), "", math.MaxInt)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if e.Fields().Size() <= MaxEventMemory {
			continue
		}
		refused++
		allocs := testing.AllocsPerRun(3, func() { _, _ = Decode([]byte(body), "") })
		_, err = Decode([]byte(body), "")
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Fields[len(ve.Fields)-1].Rule != "size" {
			t.Errorf("%s (Size %d): %v, want a size error", name, e.Fields().Size(), err)
		}
		if allocs > 100 {
			t.Errorf("%s: refusing it took %.0f allocations; it must not be decoded", name, allocs)
		}
	}
	if refused == 0 {
		t.Fatal("no adversarial shape passes MaxEventMemory; the test checks nothing")
	}
	for _, name := range testdataEvents(t) {
		if _, err := Decode(readTestdata(t, name), ""); err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) && ve.Fields[len(ve.Fields)-1].Rule == "size" {
				t.Errorf("%s refused for its size", name)
			}
		}
	}
}

// TestSizeOfMergedEvents checks that Size counts what Merge and Enrich add:
// at least the heap the merged events hold, counting the shared batch
// context once per event as Size does.
func TestSizeOfMergedEvents(t *testing.T) {
	ctx := `{"library":{"name":"analytics-go","version":"3.0.0"},"page":{"path":"/a","url":"https://x.example/a"},"locale":"en-US"}`
	body := []byte(`{"batch":[` + repeat(200, func(i int) string {
		if i%2 == 0 {
			return `{"type":"track","userId":"u","event":"E"}`
		}
		return `{"type":"track","userId":"u","event":"E","context":{"locale":"de-DE"},"integrations":{"All":false}}`
	}) + `],"context":` + ctx + `,"integrations":{"BigQuery":true}}`)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b, err := DecodeBatch(body)
	if err != nil {
		t.Fatal(err)
	}
	events := make([]Event, 0, len(b.Items))
	size := 0
	for _, raw := range b.Items {
		e := mustDecode(t, string(raw), "")
		b.Merge(e)
		Enrich(e, time.Now(), "203.0.113.7")
		events = append(events, e)
		size += e.Fields().Size()
	}
	b.Items = nil // the request body is not held by the events
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int(int64(after.HeapAlloc) - int64(before.HeapAlloc))
	runtime.KeepAlive(events)
	runtime.KeepAlive(b)
	t.Logf("%d events: heap %d, Size total %d", len(events), heap, size)
	if size < heap {
		t.Errorf("the merged events' Size adds up to %d, below the %d bytes of heap they hold", size, heap)
	}
}

// TestMemOfMatchesScan checks that memOf, used for batches built in Go,
// follows the scanner's model: equal for text without escapes.
func TestMemOfMatchesScan(t *testing.T) {
	for _, body := range []string{
		`{}`, `{"a":1}`, `{"a":"","b":[],"c":[1,"x",{}],"d":{"e":{"f":null,"g":true}}}`,
		`{` + repeat(20, func(i int) string { return fmt.Sprintf(`"k%d":"%s"`, i, strings.Repeat("v", i)) }) + `}`,
		`{"list":[` + repeat(300, func(int) string { return `{"n":12.5}` }) + `]}`,
	} {
		sc := scanObject([]byte(body), 1, "", nil)
		var v any
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if got := memOf(v); got != sc.mem {
			t.Errorf("%.40s: memOf = %d, scanner = %d", body, got, sc.mem)
		}
	}
}
