package opentrack_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestQueueBytesBoundMemoryUnderAHangingDestination: events of 31 KB whose
// properties hold thousands of empty objects decode to far more memory than
// their JSON; a destination that hangs fills its queue up to QueueBytes of
// that memory, not QueueSize events of it, and the rest is refused with
// ErrQueueFull.
func TestQueueBytesBoundMemoryUnderAHangingDestination(t *testing.T) {
	slow := newBlocker("Hangs")
	defer close(slow.release)
	const bound = 16 << 20
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{slow}, DisableDedup: true,
		Delivery: opentrack.Delivery{QueueSize: 10000, QueueBytes: bound, Workers: 1}})
	var b strings.Builder
	for i := range 2750 {
		fmt.Fprintf(&b, `"k%04d":{},`, i)
	}
	props := `{` + strings.TrimSuffix(b.String(), ",") + `}`
	before := heapInUse()
	accepted := 0
	for i := range 10000 {
		body := fmt.Sprintf(`{"userId":"u%d","event":"E","properties":%s}`, i, props)
		if len(body) > 32<<10 {
			t.Fatalf("event of %d bytes; the test wants them under 32 KB", len(body))
		}
		e, err := spec.Decode([]byte(body), spec.TypeTrack)
		if err != nil {
			t.Fatal(err)
		}
		err = m.Enqueue(t.Context(), e)
		if err != nil {
			if !errors.Is(err, opentrack.ErrQueueFull) {
				t.Fatalf("Enqueue: %v", err)
			}
			break
		}
		accepted++
	}
	held := heapInUse() - before
	if accepted == 0 || accepted >= 10000 {
		t.Fatalf("accepted %d events; want the byte bound to refuse some", accepted)
	}
	// The bound counts what the events hold; allow the lane's bookkeeping.
	if held > bound*5/4 {
		t.Errorf("%d events hold %d MB of heap, over the %d MB bound", accepted, held>>20, bound>>20)
	}
	t.Logf("%d events accepted, %d MB held, bound %d MB", accepted, held>>20, bound>>20)
}

// TestAmplificationBatchIsRefused: 2,500 tiny events under a batch-level
// context of 10,000 keys are each too large once the context is merged in;
// the request costs memory in proportion to its size and nothing reaches the
// destination.
func TestAmplificationBatchIsRefused(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	var ctx strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&ctx, `"c%05d":1,`, i)
	}
	items := strings.Repeat(`{"type":"track","userId":"u","event":"E"},`, 2500)
	body := `{"context":{` + strings.TrimSuffix(ctx.String(), ",") + `},"batch":[` + strings.TrimSuffix(items, ",") + `]}`
	if len(body) > 500<<10 {
		t.Fatalf("body of %d bytes; the test wants it under the batch limit", len(body))
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	a := c.do(t, "POST", "/batch", body, nil)
	runtime.ReadMemStats(&ms1)
	if a.status != 400 || a.body["rejected"] != float64(2500) {
		t.Errorf("answer %d %.300s; want 400 with every item too large", a.status, a.raw)
	}
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 100*uint64(len(body)) {
		t.Errorf("the request allocated %d MB for a %d KB body", alloc>>20, len(body)>>10)
	}
	flush(t, c.m)
	if n := len(c.rec.Got()); n != 0 {
		t.Errorf("%d events delivered", n)
	}
	// A batch whose merged events together pass the bound gets 413.
	var ctx2 strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&ctx2, `"c%04d":1,`, i)
	}
	body = `{"context":{` + strings.TrimSuffix(ctx2.String(), ",") + `},"batch":[` + strings.TrimSuffix(strings.Repeat(`{"type":"track","userId":"u","event":"E"},`, 2000), ",") + `]}`
	if a := c.do(t, "POST", "/batch", body, nil); a.status != 413 || !strings.Contains(a.raw, "Batch too large") {
		t.Errorf("merged total over the bound: %d %.200s, want 413", a.status, a.raw)
	}
}

// TestMergedEventWithinMemoryBound: a batch-level context small as JSON but
// costly once decoded (thousands of empty objects) makes each item that
// inherits it hold more than one event may: the item is refused (rule
// "size"), not accepted and then unreadable from a durable queue.
func TestMergedEventWithinMemoryBound(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	ctx := `{"k":[` + strings.TrimSuffix(strings.Repeat(`{},`, 8000), ",") + `]}`
	body := `{"context":` + ctx + `,"batch":[{"type":"track","userId":"u","event":"E"}]}`
	a := c.do(t, "POST", "/batch", body, nil)
	if a.status != 400 || !strings.Contains(a.raw, `"rule":"size"`) || !strings.Contains(a.raw, "batch-level context") {
		t.Errorf("answer %d %.300s; want 400 with the item too large once merged", a.status, a.raw)
	}
	// The same context with a few objects is fine.
	body = `{"context":{"k":[{},{}]},"batch":[{"type":"track","userId":"u","event":"E"}]}`
	if a := c.do(t, "POST", "/batch", body, nil); a.status != 200 {
		t.Errorf("a small batch-level context: %d %.200s, want 200", a.status, a.raw)
	}
}

// TestHostileFieldsAreRefusedAtTheDoor: what a sink would refuse later, or
// what would merge two users into one, is a 400 that names the field.
func TestHostileFieldsAreRefusedAtTheDoor(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	deep := strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100)
	// encoding/json takes 9,999 levels as valid JSON. This checks the
	// answer only; spec's TestDeepInputCostsNoStack checks that the value
	// is refused without being decoded.
	deepArray := strings.Repeat("[", 9998) + strings.Repeat("]", 9998)
	for _, tt := range []struct{ name, path, body, field, rule string }{
		{"nested past the depth limit", "/track", `{"userId":"u","event":"E","properties":` + deep + `}`, "properties", "depth"},
		{"invalid UTF-8 in userId", "/track", "{\"userId\":\"u\xff\",\"event\":\"E\"}", "userId", "utf8"},
		{"NUL in userId", "/track", `{"userId":"u\u0000","event":"E"}`, "userId", "control"},
		{"a batch's writeKey nested 9,998 levels", "/batch", `{"batch":[{"type":"track","userId":"u","event":"E"}],"writeKey":` + deepArray + `}`, "writeKey", "type"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := c.do(t, "POST", tt.path, tt.body, nil)
			if a.status != 400 || !strings.Contains(a.raw, `"rule":"`+tt.rule+`"`) || !strings.Contains(a.raw, `"field":"`+tt.field) {
				t.Errorf("answer %d %s; want 400 naming %s and rule %s", a.status, a.raw, tt.field, tt.rule)
			}
		})
	}
	flush(t, c.m)
	if n := len(c.rec.Got()); n != 0 {
		t.Errorf("%d events delivered", n)
	}
}

// TestStatsAddUp: Stats are read without stopping the collector; once it is
// at rest, Accepted = Delivered + Failed + Queued for every integration.
func TestStatsAddUp(t *testing.T) {
	a := newRecorder("A")
	a.Fail = func(e spec.Event, _ int) error {
		if strings.HasSuffix(e.Fields().MessageID, "7") {
			return opentrack.Permanent(errTransient)
		}
		return nil
	}
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a}, Delivery: opentrack.Delivery{QueueSize: 100000}})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; i < 3000; i++ {
				_ = m.Enqueue(t.Context(), trackBy(fmt.Sprint("u", i%50), fmt.Sprintf("g%d-%d", g, i)))
			}
		})
	}
	var stop atomic.Bool
	wg.Go(func() { // Stats under load must not disturb the collector
		for !stop.Load() {
			_ = m.Stats()
		}
	})
	for m.Stats()[0].Accepted < 12000 {
		runtime.Gosched()
	}
	stop.Store(true)
	wg.Wait()
	flush(t, m)
	s := m.Stats()[0]
	if s.Accepted != 12000 || s.Accepted != s.Delivered+s.Failed+uint64(s.Queued) || s.Failed != 1200 {
		t.Errorf("at rest: %+v; want 12000 accepted = delivered + failed (1200) + queued", s)
	}
}

// TestCostlyBatchesAreCutShort: a small gzip body whose items decode into
// far more memory than their bytes is refused before most of it is
// decoded, and a wrong write key is refused before any item is.
func TestCostlyBatchesAreCutShort(t *testing.T) {
	c := newCollector(t, &opentrack.HandlerOptions{WriteKeys: []string{"k"}}, opentrack.Options{})
	item := `{"type":"track","userId":"u","event":"E","properties":{"l":[` + strings.TrimSuffix(strings.Repeat(`{},`, 1500), ",") + `]}}`
	body := `{"batch":[` + strings.TrimSuffix(strings.Repeat(item+",", 110), ",") + `]}`
	if len(body) > 500<<10 {
		t.Fatalf("body of %d bytes", len(body))
	}
	gz := map[string]string{"Content-Encoding": "gzip", "Authorization": basic("k")}
	zipped := gzipped(t, body)
	measure := func(h map[string]string) (answer, uint64) {
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		a := c.do(t, "POST", "/batch", zipped, h)
		runtime.ReadMemStats(&ms1)
		return a, ms1.TotalAlloc - ms0.TotalAlloc
	}
	a, alloc := measure(gz)
	if a.status != 413 || alloc > 40*uint64(len(body)) {
		t.Errorf("%d-byte gzip of a %d KB batch: %d, allocated %d MB; want 413 within 40x the body", len(zipped), len(body)>>10, a.status, alloc>>20)
	}
	delete(gz, "Authorization")
	a, alloc = measure(gz) // no key in the body either
	if a.status != 401 || alloc > 8*uint64(len(body)) {
		t.Errorf("without a key: %d, allocated %d KB; want 401 before the items are decoded", a.status, alloc>>10)
	}
}
