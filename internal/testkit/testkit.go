// Package testkit holds what the project's tests share: a recording
// integration, a collector of OnFailure reports, and a Manager with fast
// retries that shuts down with the test.
package testkit

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// FastRetry retries quickly, so that tests of retry paths run in
// milliseconds.
var FastRetry = opentrack.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxAttempts: 5}

// Quiet is a logger that discards everything.
var Quiet = slog.New(slog.DiscardHandler)

// NewManager returns a Manager for opts, with a quiet logger unless opts has
// one, shut down when the test ends.
func NewManager(t testing.TB, opts opentrack.Options) *opentrack.Manager {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = Quiet
	}
	m, err := opentrack.New(opts)
	if err != nil {
		t.Fatalf("opentrack.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = m.Shutdown(ctx)
	})
	return m
}

// Flush flushes m, failing the test if that takes more than 30 seconds.
func Flush(t testing.TB, m *opentrack.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// StatsOf returns the Stats of the integration called name.
func StatsOf(t testing.TB, m *opentrack.Manager, name string) opentrack.Stats {
	t.Helper()
	for _, s := range m.Stats() {
		if s.Integration == name {
			return s
		}
	}
	t.Fatalf("no stats for %q", name)
	return opentrack.Stats{}
}

// Failures collects what OnFailure receives; pass its Add as the hook.
type Failures struct {
	mu   sync.Mutex
	list []opentrack.Failure
}

// Add records x.
func (f *Failures) Add(x opentrack.Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, x)
}

// List returns what was recorded so far.
func (f *Failures) List() []opentrack.Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]opentrack.Failure(nil), f.list...)
}

// Recorder is an Integration that records the events it receives and the
// calls made to it. Fail, if set, decides the outcome of each delivery.
type Recorder struct {
	name string

	// Fail, if set, returns the error for attempt n (from 1) at e; a nil
	// error delivers it. Set it before the Recorder is used.
	Fail func(e spec.Event, attempt int) error
	// Delivered, if set, receives each event delivered.
	Delivered chan spec.Event

	mu       sync.Mutex
	events   []spec.Event
	calls    []string
	attempts map[string]int
	closed   int
	flushed  int
}

// NewRecorder returns a Recorder named name.
func NewRecorder(name string) *Recorder {
	return &Recorder{name: name, attempts: map[string]int{}}
}

var (
	_ opentrack.Integration = (*Recorder)(nil)
	_ opentrack.Flusher     = (*Recorder)(nil)
	_ opentrack.Closer      = (*Recorder)(nil)
)

// Name implements opentrack.Integration.
func (r *Recorder) Name() string { return r.name }

func (r *Recorder) record(method string, e spec.Event) error {
	r.mu.Lock()
	id := e.Fields().MessageID
	r.attempts[id]++
	attempt := r.attempts[id]
	r.mu.Unlock()
	if r.Fail != nil {
		if err := r.Fail(e, attempt); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.events = append(r.events, e)
	r.calls = append(r.calls, method)
	r.mu.Unlock()
	if r.Delivered != nil {
		r.Delivered <- e
	}
	return nil
}

// Track implements opentrack.Integration.
func (r *Recorder) Track(_ context.Context, e *spec.Track) error { return r.record("Track", e) }

// Identify implements opentrack.Integration.
func (r *Recorder) Identify(_ context.Context, e *spec.Identify) error {
	return r.record("Identify", e)
}

// Page implements opentrack.Integration.
func (r *Recorder) Page(_ context.Context, e *spec.Page) error { return r.record("Page", e) }

// Screen implements opentrack.Integration.
func (r *Recorder) Screen(_ context.Context, e *spec.Screen) error { return r.record("Screen", e) }

// Group implements opentrack.Integration.
func (r *Recorder) Group(_ context.Context, e *spec.Group) error { return r.record("Group", e) }

// Alias implements opentrack.Integration.
func (r *Recorder) Alias(_ context.Context, e *spec.Alias) error { return r.record("Alias", e) }

// Flush implements opentrack.Flusher; it counts the calls.
func (r *Recorder) Flush(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushed++
	return nil
}

// Close implements opentrack.Closer; it counts the calls.
func (r *Recorder) Close(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed++
	return nil
}

// Got returns the events delivered, in order.
func (r *Recorder) Got() []spec.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]spec.Event(nil), r.events...)
}

// Calls returns the methods called for the events delivered, in order.
func (r *Recorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// IDs counts the events delivered by messageId.
func (r *Recorder) IDs() map[string]int {
	out := map[string]int{}
	for _, e := range r.Got() {
		out[e.Fields().MessageID]++
	}
	return out
}

// AttemptsOf returns how many deliveries of the event with messageId id were
// attempted.
func (r *Recorder) AttemptsOf(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[id]
}

// Closed returns how many times Close was called.
func (r *Recorder) Closed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Flushed returns how many times Flush was called.
func (r *Recorder) Flushed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushed
}
