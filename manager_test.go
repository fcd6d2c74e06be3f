package opentrack_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

func allTypes() []spec.Event {
	c := func(t spec.Type, id string) spec.Common {
		return spec.Common{Type: t, MessageID: id, UserID: "u1"}
	}
	return []spec.Event{
		&spec.Track{Common: c(spec.TypeTrack, "m1"), Event: "Clicked"},
		&spec.Identify{Common: c(spec.TypeIdentify, "m2"), Traits: map[string]any{"email": "a@example.com"}},
		&spec.Page{Common: c(spec.TypePage, "m3"), Name: "Home"},
		&spec.Screen{Common: c(spec.TypeScreen, "m4"), Name: "Main"},
		&spec.Group{Common: c(spec.TypeGroup, "m5"), GroupID: "g1"},
		&spec.Alias{Common: c(spec.TypeAlias, "m6"), PreviousID: "a1"},
	}
}

func TestManagerDeliversEveryCallToEveryIntegration(t *testing.T) {
	a, b := newRecorder("A"), newRecorder("B")
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a, b}})
	if err := m.Enqueue(t.Context(), allTypes()...); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	for _, r := range []*recorder{a, b} {
		calls := map[string]bool{}
		for _, c := range r.Calls() {
			calls[c] = true
		}
		for _, want := range []string{"Track", "Identify", "Page", "Screen", "Group", "Alias"} {
			if !calls[want] {
				t.Errorf("%s: %s was not called; calls: %v", r.Name(), want, r.Calls())
			}
		}
		if r.Flushed() == 0 {
			t.Errorf("%s: Flush did not reach the Flusher", r.Name())
		}
		s := statsOf(t, m, r.Name())
		if s.Accepted != 6 || s.Delivered != 6 || s.Queued != 0 || s.Cursor != 7 {
			t.Errorf("%s stats = %+v, want 6 accepted and delivered, none queued, position 6", r.Name(), s)
		}
	}
}

func TestManagerRoutesByIntegrationsObject(t *testing.T) {
	tests := []struct {
		name         string
		integrations map[string]any
		want         map[string]bool
	}{
		{"absent means all", nil, map[string]bool{"A": true, "B": true}},
		{"All false", map[string]any{"All": false}, map[string]bool{}},
		{"All false, one on", map[string]any{"All": false, "B": true}, map[string]bool{"B": true}},
		{"one off", map[string]any{"A": false}, map[string]bool{"B": true}},
		{"options object enables", map[string]any{"All": false, "A": map[string]any{"x": 1}}, map[string]bool{"A": true}},
		{"keys are case-sensitive", map[string]any{"All": false, "a": true}, map[string]bool{}},
		{"analytics-go's lower-case all", map[string]any{"all": false, "B": true}, map[string]bool{"B": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newRecorder("A"), newRecorder("B")
			m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a, b}})
			e := track("m1")
			e.Integrations = tt.integrations
			if err := m.Enqueue(t.Context(), e); err != nil {
				t.Fatal(err)
			}
			flush(t, m)
			for _, r := range []*recorder{a, b} {
				if got := len(r.Got()) == 1; got != tt.want[r.Name()] {
					t.Errorf("%s received = %v, want %v", r.Name(), got, tt.want[r.Name()])
				}
			}
		})
	}
}

func TestManagerDropsReplaysWithinDedupWindow(t *testing.T) {
	a := newRecorder("A")
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a}, DedupWindow: 2})
	ctx := t.Context()
	for _, err := range []error{
		m.Enqueue(ctx, track("m1"), track("m1")), // twice in one request
		m.Enqueue(ctx, track("m1")),              // a replay
		m.Enqueue(ctx, track("m2"), track("m3")), // pushes m1 out of a window of 2
		m.Enqueue(ctx, track("m1")),              // outside the window: accepted again
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	flush(t, m)
	got := a.IDs()
	if got["m1"] != 2 || got["m2"] != 1 || got["m3"] != 1 {
		t.Errorf("delivered ids = %v, want m1 twice (once per window), m2 and m3 once", got)
	}
	if s := statsOf(t, m, "A"); s.Deduplicated != 2 {
		t.Errorf("Deduplicated = %d, want 2", s.Deduplicated)
	}
}

func TestManagerDedupCanBeDisabled(t *testing.T) {
	a := newRecorder("A")
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a}, DisableDedup: true})
	if err := m.Enqueue(t.Context(), track("m1"), track("m1")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if got := a.IDs()["m1"]; got != 2 {
		t.Errorf("m1 delivered %d times, want 2", got)
	}
}

func TestManagerRetriesTransientErrors(t *testing.T) {
	a := newRecorder("A")
	a.Fail = func(_ spec.Event, attempt int) error {
		if attempt < 3 {
			return errTransient
		}
		return nil
	}
	var f failures
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a}, OnFailure: f.Add,
		Delivery: opentrack.Delivery{Retry: fastRetry}})
	if err := m.Enqueue(t.Context(), track("m1")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if got := a.IDs()["m1"]; got != 1 {
		t.Fatalf("delivered %d times, want 1", got)
	}
	if s := statsOf(t, m, "A"); s.Retried != 2 || s.Delivered != 1 || s.Failed != 0 {
		t.Errorf("stats = %+v, want 2 retries, 1 delivered, 0 failed", s)
	}
	if len(f.List()) != 0 {
		t.Errorf("OnFailure called: %v", f.List())
	}
}

func TestManagerDoesNotRetryPermanentErrors(t *testing.T) {
	a := newRecorder("A")
	rejected := errors.New("400 bad request")
	a.Fail = func(spec.Event, int) error { return opentrack.Permanent(rejected) }
	var f failures
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a}, OnFailure: f.Add,
		Delivery: opentrack.Delivery{Retry: fastRetry}})
	if err := m.Enqueue(t.Context(), track("m1")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if n := a.AttemptsOf("m1"); n != 1 {
		t.Errorf("attempts = %d, want 1", n)
	}
	got := f.List()
	if len(got) != 1 || got[0].Integration != "A" || got[0].Attempts != 1 || !errors.Is(got[0].Err, rejected) ||
		got[0].Event.Fields().MessageID != "m1" {
		t.Fatalf("failures = %+v, want one for m1 wrapping the 400", got)
	}
	if s := statsOf(t, m, "A"); s.Failed != 1 || s.Retried != 0 {
		t.Errorf("stats = %+v, want 1 failed, 0 retried", s)
	}
}

func TestManagerGivesUpAfterMaxAttempts(t *testing.T) {
	a := newRecorder("A")
	a.Fail = func(spec.Event, int) error { return errTransient }
	var f failures
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a}, OnFailure: f.Add,
		Delivery: opentrack.Delivery{Retry: fastRetry}})
	if err := m.Enqueue(t.Context(), track("m1")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	got := f.List()
	if len(got) != 1 || got[0].Attempts != fastRetry.MaxAttempts || !errors.Is(got[0].Err, errTransient) {
		t.Fatalf("failures = %+v, want one after %d attempts", got, fastRetry.MaxAttempts)
	}
	if n := a.AttemptsOf("m1"); n != fastRetry.MaxAttempts {
		t.Errorf("attempts = %d, want %d", n, fastRetry.MaxAttempts)
	}
}

func TestManagerGivesUpAfterMaxElapsedTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newRecorder("A")
		a.Fail = func(spec.Event, int) error { return errTransient }
		var f failures
		m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{a}, OnFailure: f.Add, Logger: quietLogger(),
			Delivery: opentrack.Delivery{Retry: opentrack.RetryPolicy{MaxAttempts: 1000, InitialBackoff: time.Second,
				MaxBackoff: time.Second, MaxElapsedTime: 10 * time.Second}}})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := m.Enqueue(t.Context(), track("m1")); err != nil {
			t.Fatal(err)
		}
		if err := m.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		elapsed := time.Since(start)
		if len(f.List()) != 1 {
			t.Fatalf("failures = %d, want 1", len(f.List()))
		}
		if elapsed > 10*time.Second {
			t.Errorf("gave up after %v, want within MaxElapsedTime 10s", elapsed)
		}
		if n := a.AttemptsOf("m1"); n < 9 || n > 21 {
			t.Errorf("attempts = %d, want about 10-20 within 10s of 0.5-1s waits", n)
		}
		_ = m.Shutdown(t.Context())
	})
}

func TestManagerHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newRecorder("A")
		var times []time.Time
		a.Fail = func(_ spec.Event, attempt int) error {
			times = append(times, time.Now())
			if attempt == 1 {
				return opentrack.RetryAfter(errTransient, 30*time.Second)
			}
			return nil
		}
		m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{a}, Logger: quietLogger(),
			Delivery: opentrack.Delivery{Retry: fastRetry}})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Enqueue(t.Context(), track("m1")); err != nil {
			t.Fatal(err)
		}
		if err := m.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(times) != 2 {
			t.Fatalf("attempts = %d, want 2", len(times))
		}
		if gap := times[1].Sub(times[0]); gap < 30*time.Second {
			t.Errorf("second attempt after %v, want at least the 30s Retry-After", gap)
		}
		_ = m.Shutdown(t.Context())
	})
}

func TestManagerRecoversPanickingIntegration(t *testing.T) {
	bad, good := newRecorder("Bad"), newRecorder("Good")
	bad.Fail = func(spec.Event, int) error { panic("boom") }
	var f failures
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{bad, good}, OnFailure: f.Add,
		Delivery: opentrack.Delivery{Retry: fastRetry}})
	if err := m.Enqueue(t.Context(), track("m1"), track("m2")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if s := statsOf(t, m, "Bad"); s.Panics != 2 || s.Failed != 2 {
		t.Errorf("Bad stats = %+v, want 2 panics, 2 failed", s)
	}
	if len(f.List()) != 2 {
		t.Errorf("failures = %d, want 2", len(f.List()))
	}
	if len(good.Got()) != 2 {
		t.Errorf("Good received %d, want 2", len(good.Got()))
	}
}

// blocker is an integration whose calls wait until released or cancelled.
type blocker struct {
	opentrack.Base
	release chan struct{}
	started chan struct{}
	n       atomic.Int64
}

func newBlocker(name string) *blocker {
	return &blocker{Base: opentrack.Base{ID: name}, release: make(chan struct{}), started: make(chan struct{}, 1000)}
}

func (b *blocker) Track(ctx context.Context, e *spec.Track) error {
	b.started <- struct{}{}
	select {
	case <-b.release:
		b.n.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestManagerSlowIntegrationDoesNotDelayOthers(t *testing.T) {
	slow := newBlocker("Slow")
	fast := newRecorder("Fast")
	fast.Delivered = make(chan spec.Event, 100)
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{slow, fast},
		Delivery: opentrack.Delivery{QueueSize: 100, Workers: 1}})
	for i := range 50 {
		if err := m.Enqueue(t.Context(), track(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	timeout := time.After(10 * time.Second)
	for i := range 50 {
		select {
		case <-fast.Delivered:
		case <-timeout:
			t.Fatalf("Fast got %d of 50 events while Slow was stuck", i)
		}
	}
	if s := statsOf(t, m, "Slow"); s.Queued != 50 || s.Delivered != 0 {
		t.Errorf("Slow stats = %+v, want 50 queued, 0 delivered", s)
	}
	close(slow.release)
	flush(t, m)
	if slow.n.Load() != 50 {
		t.Errorf("Slow delivered %d, want 50", slow.n.Load())
	}
}

func TestManagerQueueFullIsAllOrNothing(t *testing.T) {
	slow := newBlocker("Slow")
	other := newRecorder("Other")
	other.Delivered = make(chan spec.Event, 3)
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{slow, other},
		Delivery: opentrack.Delivery{QueueSize: 3, Workers: 1}})
	ctx := t.Context()
	if err := m.Enqueue(ctx, track("m1"), track("m2"), track("m3")); err != nil {
		t.Fatal(err)
	}
	// Other has room again once it delivered; Slow has none.
	for range 3 {
		<-other.Delivered
	}
	for statsOf(t, m, "Other").Queued > 0 { // settled just after delivery
		runtime.Gosched()
	}
	err := m.Enqueue(ctx, track("m4"), track("m5"))
	if !errors.Is(err, opentrack.ErrQueueFull) {
		t.Fatalf("Enqueue = %v, want ErrQueueFull", err)
	}
	// Routed only to Other, the event fits.
	only := track("m6")
	only.Integrations = map[string]any{"Slow": false}
	if err := m.Enqueue(ctx, only); err != nil {
		t.Fatalf("Enqueue to Other only = %v", err)
	}
	close(slow.release)
	flush(t, m)
	if got := other.IDs(); got["m4"] != 0 || got["m5"] != 0 || got["m6"] != 1 {
		t.Errorf("Other received %v: a refused request must leave nothing behind", got)
	}
	if s := statsOf(t, m, "Slow"); s.Accepted != 3 || s.Delivered != 3 || s.Deduplicated != 0 {
		t.Errorf("Slow stats = %+v, want 3 accepted and delivered, none deduplicated", s)
	}
	// A refused request's ids are not remembered: its retry is accepted.
	if err := m.Enqueue(ctx, track("m4")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if other.IDs()["m4"] != 1 {
		t.Errorf("the retry of a refused event was deduplicated")
	}
}

func TestManagerStatsShowQueueAndAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := newBlocker("Slow")
		m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{slow}, Logger: quietLogger(),
			Delivery: opentrack.Delivery{Workers: 1}})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Enqueue(t.Context(), track("m1"), track("m2")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		s := m.Stats()[0]
		if s.Queued != 2 || s.OldestAge != 5*time.Second || s.Cursor != 1 {
			t.Errorf("stats = %+v, want 2 queued, oldest 5s, position 0", s)
		}
		close(slow.release)
		if err := m.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		s = m.Stats()[0]
		if s.Queued != 0 || s.OldestAge != 0 || s.Cursor != 3 {
			t.Errorf("after flush stats = %+v, want 0 queued, age 0, position 2", s)
		}
		_ = m.Shutdown(t.Context())
	})
}

func TestManagerShutdownDrainsAndCloses(t *testing.T) {
	a := newRecorder("A")
	a.Fail = func(_ spec.Event, attempt int) error {
		time.Sleep(100 * time.Microsecond)
		if attempt == 1 {
			return errTransient // every event needs a retry
		}
		return nil
	}
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{a}, Logger: quietLogger(),
		Delivery: opentrack.Delivery{Retry: fastRetry}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		if err := m.Enqueue(t.Context(), track(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := len(a.IDs()); got != n {
		t.Errorf("delivered %d distinct events, want %d", got, n)
	}
	if a.Closed() != 1 {
		t.Errorf("Close called %d times, want 1", a.Closed())
	}
	if err := m.Enqueue(t.Context(), track("late")); !errors.Is(err, opentrack.ErrClosed) {
		t.Errorf("Enqueue after Shutdown = %v, want ErrClosed", err)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown = %v, want the first's result (nil)", err)
	}
	if a.Closed() != 1 {
		t.Errorf("Close called %d times after a second Shutdown, want 1", a.Closed())
	}
}

func TestManagerShutdownDeadlineReportsUndelivered(t *testing.T) {
	slow := newBlocker("Slow")
	var f failures
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{slow}, OnFailure: f.Add, Logger: quietLogger(),
		Delivery: opentrack.Delivery{Workers: 2}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		if err := m.Enqueue(t.Context(), track(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	<-slow.started
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err = m.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	got := f.List()
	if len(got) != n {
		t.Fatalf("OnFailure got %d events, want all %d: nothing may be lost silently", len(got), n)
	}
	for _, x := range got {
		if !errors.Is(x.Err, opentrack.ErrClosed) {
			t.Errorf("failure error = %v, want it to wrap ErrClosed", x.Err)
		}
	}
	if s := m.Stats()[0]; s.Failed != n || s.Queued != 0 {
		t.Errorf("stats = %+v, want %d failed, 0 queued", s, n)
	}
}

// batcher records the batches it receives; fail decides per event.
type batcher struct {
	opentrack.Base
	mu      sync.Mutex
	batches [][]string
	fail    func(e spec.Event, call int) error
	calls   int
}

func (b *batcher) Batch(_ context.Context, events []spec.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	be := &opentrack.BatchError{}
	var ok []string
	for i, e := range events {
		if b.fail != nil {
			if err := b.fail(e, b.calls); err != nil {
				be.Fail(i, err)
				continue
			}
		}
		ok = append(ok, e.Fields().MessageID)
	}
	b.batches = append(b.batches, ok)
	return be.Err()
}

func TestManagerBatchesByCount(t *testing.T) {
	b := &batcher{Base: opentrack.Base{ID: "W"}}
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{b},
		Delivery: opentrack.Delivery{Workers: 1, Batch: opentrack.BatchOptions{MaxEvents: 10, Interval: time.Hour}}})
	var events []spec.Event
	for i := range 25 {
		events = append(events, track(fmt.Sprint("m", i)))
	}
	if err := m.Enqueue(t.Context(), events...); err != nil {
		t.Fatal(err)
	}
	flush(t, m) // sends the last partial batch without waiting an hour
	b.mu.Lock()
	defer b.mu.Unlock()
	total := 0
	for _, batch := range b.batches {
		if len(batch) > 10 {
			t.Errorf("batch of %d events, want at most 10", len(batch))
		}
		total += len(batch)
	}
	if total != 25 || len(b.batches) != 3 {
		t.Errorf("got %d events in %d batches, want 25 in 3", total, len(b.batches))
	}
}

func TestManagerBatchesByInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &batcher{Base: opentrack.Base{ID: "W"}}
		m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{b}, Logger: quietLogger(),
			Delivery: opentrack.Delivery{Batch: opentrack.BatchOptions{Interval: time.Second}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Enqueue(t.Context(), track("m1"), track("m2")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		b.mu.Lock()
		early := len(b.batches)
		b.mu.Unlock()
		if early != 0 {
			t.Fatalf("batch sent before the interval")
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		b.mu.Lock()
		got := b.batches
		b.mu.Unlock()
		if len(got) != 1 || len(got[0]) != 2 {
			t.Fatalf("batches = %v, want one batch of 2 after the 1s interval", got)
		}
		_ = m.Shutdown(t.Context())
	})
}

func TestManagerRetriesOnlyFailedEventsOfABatch(t *testing.T) {
	b := &batcher{Base: opentrack.Base{ID: "W"}}
	b.fail = func(e spec.Event, call int) error {
		switch e.Fields().MessageID {
		case "m2":
			if call == 1 {
				return errTransient
			}
		case "m3":
			return opentrack.Permanent(errors.New("rejected"))
		}
		return nil
	}
	var f failures
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{b}, OnFailure: f.Add,
		Delivery: opentrack.Delivery{Workers: 1, Retry: fastRetry}})
	if err := m.Enqueue(t.Context(), track("m1"), track("m2"), track("m3")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	b.mu.Lock()
	got := fmt.Sprint(b.batches)
	b.mu.Unlock()
	if got != "[[m1] [m2]]" {
		t.Errorf("delivered batches = %s, want [[m1] [m2]]: only m2 retried, m3 not", got)
	}
	fails := f.List()
	if len(fails) != 1 || fails[0].Event.Fields().MessageID != "m3" {
		t.Errorf("failures = %+v, want m3 only", fails)
	}
	if s := statsOf(t, m, "W"); s.Delivered != 2 || s.Failed != 1 || s.Retried != 1 {
		t.Errorf("stats = %+v, want 2 delivered, 1 failed, 1 retried", s)
	}
}

// initer counts Init calls and fails the first ones.
type initer struct {
	*recorder
	inits     atomic.Int64
	failUntil int64
	permanent bool
	healed    atomic.Bool
}

// heal makes every later Init succeed.
func (i *initer) heal() { i.healed.Store(true) }

func (i *initer) Init(context.Context) error {
	n := i.inits.Add(1)
	if i.healed.Load() {
		return nil
	}
	if i.permanent {
		return opentrack.Permanent(errors.New("bad credentials"))
	}
	if n <= i.failUntil {
		return errTransient
	}
	return nil
}

func TestManagerInitsBeforeFirstEvent(t *testing.T) {
	in := &initer{recorder: newRecorder("A"), failUntil: 2}
	in.recorder.Fail = func(spec.Event, int) error {
		if in.inits.Load() != 3 {
			return opentrack.Permanent(fmt.Errorf("event before Init succeeded (inits=%d)", in.inits.Load()))
		}
		return nil
	}
	var f failures
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{in}, OnFailure: f.Add,
		Delivery: opentrack.Delivery{Retry: fastRetry}})
	if err := m.Enqueue(t.Context(), track("m1")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if len(f.List()) != 0 || len(in.Got()) != 1 || in.inits.Load() != 3 {
		t.Errorf("inits = %d, delivered = %d, failures = %v; want 3 inits then delivery", in.inits.Load(), len(in.Got()), f.List())
	}
}

// TestManagerRetriesInitUntilItSucceeds: a destination that is down at
// start, even one that answers "permanently", is no reason to lose events:
// Init is retried with capped backoff, the events wait in the queue, Stats
// says why the integration is not ready, and they are delivered once Init
// succeeds.
func TestManagerRetriesInitUntilItSucceeds(t *testing.T) {
	for _, permanent := range []bool{false, true} {
		t.Run(fmt.Sprint("permanent=", permanent), func(t *testing.T) {
			in := &initer{recorder: newRecorder("A"), failUntil: 1 << 30, permanent: permanent}
			var f failures
			m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{in}, OnFailure: f.Add,
				Delivery: opentrack.Delivery{Retry: fastRetry}})
			if err := m.Enqueue(t.Context(), track("m1")); err != nil {
				t.Fatal(err)
			}
			// Far more Init attempts than the delivery retry policy allows.
			for in.inits.Load() < 3*int64(fastRetry.MaxAttempts) {
				runtime.Gosched()
			}
			s := statsOf(t, m, "A")
			if s.Ready || s.Err == nil || s.Queued != 1 || len(f.List()) != 0 {
				t.Fatalf("while Init fails: stats = %+v, failures %v; want not ready, the Init error, the event queued, nothing reported", s, f.List())
			}
			in.heal()
			flush(t, m)
			if s := statsOf(t, m, "A"); !s.Ready || s.Err != nil || s.Delivered != 1 || len(in.Got()) != 1 || len(f.List()) != 0 {
				t.Errorf("after Init succeeded: stats = %+v, delivered %d, failures %v", s, len(in.Got()), f.List())
			}
		})
	}
}

type tuned struct {
	*recorder
	d opentrack.Delivery
}

func (t tuned) Delivery() opentrack.Delivery { return t.d }

type tunedBlocker struct {
	*blocker
	d opentrack.Delivery
}

func (t tunedBlocker) Delivery() opentrack.Delivery { return t.d }

func TestManagerDeliveryTunerOverridesDefaults(t *testing.T) {
	in := tunedBlocker{blocker: newBlocker("A"), d: opentrack.Delivery{QueueSize: 1, Workers: 1}}
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{in}})
	if err := m.Enqueue(t.Context(), track("m1"), track("m2")); !errors.Is(err, opentrack.ErrTooLarge) {
		t.Errorf("Enqueue of 2 into a tuned queue of 1 = %v, want ErrTooLarge", err)
	}
	if err := m.Enqueue(t.Context(), track("m1")); err != nil {
		t.Fatal(err)
	}
	if err := m.Enqueue(t.Context(), track("m2")); !errors.Is(err, opentrack.ErrQueueFull) {
		t.Errorf("Enqueue into a full tuned queue of 1 = %v, want ErrQueueFull", err)
	}
	close(in.release)
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name  string
		opts  opentrack.Options
		field string
	}{
		{"duplicate name", opentrack.Options{Integrations: []opentrack.Integration{newRecorder("A"), newRecorder("A")}}, "Integrations[1]"},
		{"nil integration", opentrack.Options{Integrations: []opentrack.Integration{nil}}, "Integrations[0]"},
		{"empty name", opentrack.Options{Integrations: []opentrack.Integration{newRecorder("")}}, "Integrations[0]"},
		{"negative queue", opentrack.Options{Delivery: opentrack.Delivery{QueueSize: -1}}, "Delivery.QueueSize"},
		{"negative dedup", opentrack.Options{DedupWindow: -1}, "DedupWindow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := opentrack.New(tt.opts)
			var ce *opentrack.ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("New = %v, want *ConfigError for %s", err, tt.field)
			}
		})
	}
}

func TestErrorMarkers(t *testing.T) {
	base := errors.New("x")
	if opentrack.Permanent(nil) != nil || opentrack.RetryAfter(nil, time.Second) != nil {
		t.Error("markers of nil must be nil")
	}
	wrapped := fmt.Errorf("ctx: %w", opentrack.RetryAfter(opentrack.Permanent(base), 3*time.Second))
	if !opentrack.IsPermanent(wrapped) || !errors.Is(wrapped, base) {
		t.Errorf("markers must survive wrapping and keep the cause")
	}
	if d, ok := opentrack.RetryAfterDelay(wrapped); !ok || d != 3*time.Second {
		t.Errorf("RetryAfterDelay = %v, %v; want 3s", d, ok)
	}
}

func TestFuncAndBaseIntegrations(t *testing.T) {
	var mu sync.Mutex
	var got []spec.Type
	fn := opentrack.Func("Fn", func(_ context.Context, e spec.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e.Fields().Type)
		return nil
	})
	base := opentrack.Base{ID: "Noop"}
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{fn, base}})
	if err := m.Enqueue(t.Context(), allTypes()...); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 6 {
		t.Errorf("Func got %v, want all 6 calls", got)
	}
	if s := statsOf(t, m, "Noop"); s.Delivered != 6 {
		t.Errorf("Base delivered %d, want 6", s.Delivered)
	}
}

// stuck ignores its context: a call never returns until released.
type stuck struct {
	opentrack.Base
	release chan struct{}
	calls   atomic.Int64
}

func (s *stuck) Track(context.Context, *spec.Track) error {
	s.calls.Add(1)
	<-s.release
	return nil
}

func TestManagerShutdownAccountsForEveryEventEvenWhenCallsHang(t *testing.T) {
	in := &stuck{Base: opentrack.Base{ID: "Stuck"}, release: make(chan struct{})}
	defer close(in.release)
	var f failures
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{in}, OnFailure: f.Add, Logger: quietLogger(),
		Delivery: opentrack.Delivery{Workers: 2}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		if err := m.Enqueue(t.Context(), trackBy(fmt.Sprint("u", i), fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := m.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	// When Shutdown returns, every accepted event has been reported, though
	// two calls are still stuck.
	if got := len(f.List()); got != n {
		t.Errorf("OnFailure got %d events when Shutdown returned, want %d", got, n)
	}
	if s := m.Stats()[0]; s.Queued != 0 || s.Failed != n {
		t.Errorf("stats = %+v, want nothing queued and %d failed", s, n)
	}
	if c := in.calls.Load(); c != 2 {
		t.Errorf("integration called %d times, want only the 2 stuck calls: nothing is sent after the deadline", c)
	}
}

func TestManagerShutdownDoesNotCallIntegrationAfterDeadline(t *testing.T) {
	slow := newBlocker("Slow")
	var f failures
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{slow}, OnFailure: f.Add, Logger: quietLogger(),
		Delivery: opentrack.Delivery{Workers: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := m.Enqueue(t.Context(), track(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	<-slow.started
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_ = m.Shutdown(ctx)
	if n := len(slow.started); n != 0 {
		t.Errorf("%d more calls started after the first, during a cancelled shutdown", n)
	}
	if len(f.List()) != 100 {
		t.Errorf("OnFailure got %d, want 100", len(f.List()))
	}
}

func TestManagerTreatsMismatchedBatchErrorAsWholeBatchFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  func() error
	}{
		{"index out of range", func() error { be := &opentrack.BatchError{}; be.Fail(7, errTransient); return be }},
		{"nil error", func() error { return &opentrack.BatchError{Failed: map[int]error{0: nil}} }},
		{"empty", func() error { return &opentrack.BatchError{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			b := &funcBatcher{Base: opentrack.Base{ID: "W"}, fn: func(events []spec.Event) error {
				if calls.Add(1) == 1 {
					return tc.err()
				}
				return nil
			}}
			m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{b}, Delivery: opentrack.Delivery{Retry: fastRetry}})
			if err := m.Enqueue(t.Context(), track("m1"), track("m2")); err != nil {
				t.Fatal(err)
			}
			flush(t, m)
			if s := statsOf(t, m, "W"); calls.Load() != 2 || s.Retried != 2 || s.Delivered != 2 {
				t.Errorf("calls = %d, stats = %+v; want the whole batch retried once, then delivered", calls.Load(), s)
			}
		})
	}
}

func TestManagerHonoursMarksAroundBatchError(t *testing.T) {
	var calls atomic.Int64
	b := &funcBatcher{Base: opentrack.Base{ID: "W"}, fn: func(events []spec.Event) error {
		calls.Add(1)
		be := &opentrack.BatchError{}
		be.Fail(0, errTransient)
		return opentrack.Permanent(be)
	}}
	var f failures
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{b}, OnFailure: f.Add, Delivery: opentrack.Delivery{Retry: fastRetry}})
	if err := m.Enqueue(t.Context(), track("m1"), track("m2")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if calls.Load() != 1 || len(f.List()) != 1 || f.List()[0].Event.Fields().MessageID != "m1" {
		t.Errorf("calls = %d, failures = %+v; want one call and m1 failed permanently", calls.Load(), f.List())
	}
}

type funcBatcher struct {
	opentrack.Base
	fn func([]spec.Event) error
}

func (b *funcBatcher) Batch(_ context.Context, events []spec.Event) error { return b.fn(events) }

type panicky struct {
	*recorder
	flushPanics bool
}

func (p *panicky) Flush(context.Context) error {
	if p.flushPanics {
		panic("flush bug")
	}
	return nil
}

func TestManagerRecoversPanicsInHooks(t *testing.T) {
	a := &panicky{recorder: newRecorder("A"), flushPanics: true}
	a.recorder.Fail = func(spec.Event, int) error { return opentrack.Permanent(errors.New("no")) }
	b := newRecorder("B")
	var hookCalls atomic.Int64
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{a, b}, Logger: quietLogger(),
		OnFailure: func(opentrack.Failure) { hookCalls.Add(1); panic("dead-letter sink down") }})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Enqueue(t.Context(), track("m1")); err != nil {
		t.Fatal(err)
	}
	err = m.Shutdown(t.Context())
	if err == nil || !strings.Contains(err.Error(), "flush bug") {
		t.Errorf("Shutdown = %v, want the Flush panic as an error", err)
	}
	if hookCalls.Load() != 1 {
		t.Errorf("OnFailure called %d times, want 1 (its panic recovered)", hookCalls.Load())
	}
	if a.Closed() != 1 || b.Closed() != 1 {
		t.Errorf("closed A %d, B %d times; a panicking Flush must not stop the other Closes", a.Closed(), b.Closed())
	}
	if err := m.Flush(t.Context()); !errors.Is(err, opentrack.ErrClosed) {
		t.Errorf("Flush after Shutdown = %v, want ErrClosed", err)
	}
}

func TestManagerFlushSeesEventsEnqueuedConcurrently(t *testing.T) {
	b := &batcher{Base: opentrack.Base{ID: "W"}}
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{b}, DisableDedup: true,
		Delivery: opentrack.Delivery{QueueSize: 100000, Batch: opentrack.BatchOptions{Interval: time.Hour}}})
	events := make([]spec.Event, 3000)
	for i := range events {
		events[i] = track(fmt.Sprint("m", i))
	}
	for round := range 30 {
		before := statsOf(t, m, "W").Accepted
		go func() { _ = m.Enqueue(t.Context(), events...) }()
		for statsOf(t, m, "W").Accepted == before {
			runtime.Gosched()
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := m.Flush(ctx) // must not wait for the hour-long interval
		cancel()
		if err != nil {
			t.Fatalf("round %d: Flush = %v", round, err)
		}
	}
}

func TestManagerOneRetryingEventHoldsOnePlaceOnly(t *testing.T) {
	a := newRecorder("A")
	a.Fail = func(e spec.Event, _ int) error {
		if e.Fields().MessageID == "stuck" {
			return opentrack.RetryAfter(errTransient, time.Hour)
		}
		return nil
	}
	a.Delivered = make(chan spec.Event, 200)
	other := newRecorder("Other")
	other.Delivered = make(chan spec.Event, 200)
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a, other},
		Delivery: opentrack.Delivery{QueueSize: 10, Workers: 2, Retry: opentrack.RetryPolicy{MaxElapsedTime: 2 * time.Hour}}})
	if err := m.Enqueue(t.Context(), trackBy("someone else", "stuck")); err != nil {
		t.Fatal(err)
	}
	// Far more events than the queue holds pass while "stuck" waits an hour.
	delivered := 0
	for i := range 100 {
		for {
			err := m.Enqueue(t.Context(), track(fmt.Sprint("m", i)))
			if err == nil {
				break
			}
			if !errors.Is(err, opentrack.ErrQueueFull) {
				t.Fatal(err)
			}
			// Room comes back as A or Other delivers.
			select {
			case <-a.Delivered:
				delivered++
			case <-other.Delivered:
			}
		}
	}
	for ; delivered < 100; delivered++ {
		<-a.Delivered
	}
	for statsOf(t, m, "A").Queued > 1 { // settled just after delivery
		runtime.Gosched()
	}
	s := statsOf(t, m, "A")
	if s.Queued != 1 || s.Cursor != 1 {
		t.Errorf("A stats = %+v, want only the stuck event queued, the position held at it", s)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_ = m.Shutdown(ctx) // the stuck event is reported, not waited for
	if s := statsOf(t, m, "A"); s.Failed != 1 || s.Queued != 0 {
		t.Errorf("after Shutdown: %+v, want the stuck event failed", s)
	}
}

func TestManagerKeepsAnEventsLongerRetryAfterInsideABatchError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var times []time.Time
		b := &funcBatcher{Base: opentrack.Base{ID: "W"}, fn: func(events []spec.Event) error {
			times = append(times, time.Now())
			if len(times) > 1 {
				return nil
			}
			be := &opentrack.BatchError{}
			be.Fail(0, opentrack.RetryAfter(errTransient, 40*time.Second))
			return opentrack.RetryAfter(be, time.Second)
		}}
		m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{b}, Logger: quietLogger(),
			Delivery: opentrack.Delivery{Retry: fastRetry}})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Enqueue(t.Context(), track("m1")); err != nil {
			t.Fatal(err)
		}
		if err := m.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(times) != 2 || times[1].Sub(times[0]) < 40*time.Second {
			t.Errorf("attempts at %v; want the retry after the event's own 40s, not the batch's 1s", times)
		}
		_ = m.Shutdown(t.Context())
	})
}
