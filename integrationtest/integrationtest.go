// Package integrationtest is a conformance suite for OpenTrack integrations,
// built-in or your own. It drives an integration through a real
// opentrack.Manager against a stand-in of its backend and checks the
// contract of opentrack.Integration: every call arrives, transient failures
// are retried until delivered, permanent ones are reported without retries,
// a cancelled context is honoured, concurrent delivery is safe, and Close
// may be called twice.
//
// An integration's test supplies a [Harness]:
//
//	func TestConformance(t *testing.T) {
//		integrationtest.Run(t, &harness{})
//	}
package integrationtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// Harness connects the suite to an integration and a stand-in of its
// backend. Each case calls New for a fresh integration and backend.
type Harness interface {
	// New returns an integration wired to a fresh stand-in backend; the
	// harness cleans both up with t.Cleanup.
	New(t *testing.T) opentrack.Integration
	// Received returns how many events of each call type the backend holds,
	// decoded from what it received on the wire.
	Received(t *testing.T) map[spec.Type]int
	// FailNext makes the backend fail its next n requests: transiently (a
	// 503, a write error) or permanently (a 400). It returns false if the
	// backend cannot fail that way; the case is then skipped.
	FailNext(t *testing.T, n int, permanent bool) bool
	// Types lists the call types the integration stores; the suite expects
	// exactly one backend record per event of these types.
	Types() []spec.Type
}

// Events returns one valid, enriched event of each type, with messageIds
// prefixed by prefix. The identify carries an email trait and the page a
// url, so that mappings that need them have them. Numbers are json.Number,
// as decoded from a request, except the screen's, which is an int as a Go
// caller would build it.
func Events(prefix string) []spec.Event {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	c := func(t spec.Type, n int) spec.Common {
		return spec.Common{Type: t, MessageID: fmt.Sprintf("%s-%d", prefix, n), UserID: "user-1", AnonymousID: "anon-1",
			Timestamp: now, OriginalTimestamp: now, SentAt: now, ReceivedAt: now,
			Context: map[string]any{"ip": "127.0.0.1", "library": map[string]any{"name": "integrationtest"}}}
	}
	return []spec.Event{
		&spec.Track{Common: c(spec.TypeTrack, 0), Event: "Order Completed", Properties: map[string]any{"revenue": json.Number("12.5"), "currency": "EUR"}},
		&spec.Identify{Common: c(spec.TypeIdentify, 1), Traits: map[string]any{"email": "ada@example.com", "name": "Ada"}},
		&spec.Page{Common: c(spec.TypePage, 2), Name: "Pricing", Properties: map[string]any{"url": "https://example.com/pricing", "path": "/pricing"}},
		&spec.Screen{Common: c(spec.TypeScreen, 3), Name: "Checkout", Properties: map[string]any{"step": 2}}, // a value built in Go, not decoded,
		&spec.Group{Common: c(spec.TypeGroup, 4), GroupID: "acme", Traits: map[string]any{"name": "Acme Inc"}},
		&spec.Alias{Common: c(spec.TypeAlias, 5), PreviousID: "anon-1"},
	}
}

// Run runs every case of the suite as a subtest of t.
func Run(t *testing.T, h Harness) {
	t.Run("DeliversEveryCall", func(t *testing.T) { testDeliversEveryCall(t, h) })
	t.Run("RetriesTransientFailures", func(t *testing.T) { testRetriesTransient(t, h) })
	t.Run("ReportsPermanentFailuresWithoutRetry", func(t *testing.T) { testPermanent(t, h) })
	t.Run("HonoursCancelledContext", func(t *testing.T) { testCancelled(t, h) })
	t.Run("ConcurrentDelivery", func(t *testing.T) { testConcurrent(t, h) })
	t.Run("CloseTwice", func(t *testing.T) { testCloseTwice(t, h) })
}

type failures struct {
	mu   sync.Mutex
	list []opentrack.Failure
}

func (f *failures) add(x opentrack.Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, x)
}

func (f *failures) n() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.list)
}

// manager runs in through a Manager with fast retries.
func manager(t *testing.T, in opentrack.Integration, f *failures) *opentrack.Manager {
	t.Helper()
	m, err := opentrack.New(opentrack.Options{
		Integrations: []opentrack.Integration{in},
		OnFailure:    f.add,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Delivery: opentrack.Delivery{
			CallTimeout: 10 * time.Second,
			Retry:       opentrack.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxAttempts: 5},
			Batch:       opentrack.BatchOptions{Interval: 20 * time.Millisecond},
		},
	})
	if err != nil {
		t.Fatalf("opentrack.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return m
}

func flush(t *testing.T, m *opentrack.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func only(events []spec.Event, types []spec.Type) []spec.Event {
	keep := map[spec.Type]bool{}
	for _, ty := range types {
		keep[ty] = true
	}
	var out []spec.Event
	for _, e := range events {
		if keep[e.Fields().Type] {
			out = append(out, e)
		}
	}
	return out
}

func checkReceived(t *testing.T, h Harness, want map[spec.Type]int) {
	t.Helper()
	got := h.Received(t)
	for _, ty := range h.Types() {
		if got[ty] != want[ty] {
			t.Errorf("backend holds %d %s events, want %d (all: %v)", got[ty], ty, want[ty], got)
		}
	}
}

func testDeliversEveryCall(t *testing.T, h Harness) {
	var f failures
	m := manager(t, h.New(t), &f)
	events := only(Events("every"), h.Types())
	if err := m.Enqueue(t.Context(), events...); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if f.n() != 0 {
		t.Fatalf("%d events reported as failed: %+v", f.n(), f.list)
	}
	want := map[spec.Type]int{}
	for _, e := range events {
		want[e.Fields().Type]++
	}
	checkReceived(t, h, want)
	if s := m.Stats()[0]; s.Delivered != uint64(len(events)) {
		t.Errorf("Delivered = %d, want %d", s.Delivered, len(events))
	}
}

func testRetriesTransient(t *testing.T, h Harness) {
	var f failures
	in := h.New(t)
	if !h.FailNext(t, 2, false) {
		t.Skip("the backend cannot fail transiently")
	}
	m := manager(t, in, &f)
	e := only(Events("transient"), h.Types())[:1]
	if err := m.Enqueue(t.Context(), e...); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if f.n() != 0 {
		t.Fatalf("a transient failure was reported as final: %+v", f.list)
	}
	// Whether the integration retried by itself (as the BigQuery client
	// does) or the Manager did, the event must land exactly once.
	checkReceived(t, h, map[spec.Type]int{e[0].Fields().Type: 1})
}

func testPermanent(t *testing.T, h Harness) {
	var f failures
	in := h.New(t)
	if !h.FailNext(t, 1, true) {
		t.Skip("the backend cannot fail permanently")
	}
	m := manager(t, in, &f)
	e := only(Events("permanent"), h.Types())[:1]
	if err := m.Enqueue(t.Context(), e...); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if f.n() != 1 {
		t.Fatalf("failures reported = %d, want 1", f.n())
	}
	if !opentrack.IsPermanent(f.list[0].Err) || f.list[0].Attempts != 1 {
		t.Errorf("failure = %+v, want a Permanent error after 1 attempt", f.list[0])
	}
	checkReceived(t, h, map[spec.Type]int{})
}

func testCancelled(t *testing.T, h Harness) {
	in := h.New(t)
	if i, ok := in.(opentrack.Initializer); ok {
		if err := i.Init(t.Context()); err != nil {
			t.Fatalf("Init: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	e := only(Events("cancelled"), h.Types())[:1]
	var err error
	if b, ok := in.(opentrack.Batcher); ok {
		err = b.Batch(ctx, e)
	} else {
		err = opentrack.Deliver(ctx, in, e[0])
	}
	if err == nil {
		t.Errorf("a call with a cancelled context returned nil")
	}
	if opentrack.IsPermanent(err) {
		t.Errorf("a cancelled call was marked Permanent (%v); the Manager must be free to retry it", err)
	}
	checkReceived(t, h, map[spec.Type]int{})
	if c, ok := in.(opentrack.Closer); ok {
		_ = c.Close(t.Context())
	}
}

func testConcurrent(t *testing.T, h Harness) {
	var f failures
	m := manager(t, h.New(t), &f)
	want := map[spec.Type]int{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				events := only(Events(fmt.Sprintf("c%d-%d", g, i)), h.Types())
				if err := m.Enqueue(t.Context(), events...); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, e := range events {
					want[e.Fields().Type]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	flush(t, m)
	if f.n() != 0 {
		t.Fatalf("%d events reported as failed", f.n())
	}
	checkReceived(t, h, want)
}

func testCloseTwice(t *testing.T, h Harness) {
	in := h.New(t)
	c, ok := in.(opentrack.Closer)
	if !ok {
		t.Skip("the integration has no Close")
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}
