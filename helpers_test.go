package opentrack_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// recorder is an Integration that records what it receives. fail, if set,
// decides the outcome of each call.
type recorder struct {
	name string

	mu       sync.Mutex
	events   []spec.Event
	calls    []string // method names, in order
	attempts map[string]int
	closed   int
	flushed  int

	fail func(e spec.Event, attempt int) error
	// delivered, if set, receives each event delivered.
	delivered chan spec.Event
}

func newRecorder(name string) *recorder {
	return &recorder{name: name, attempts: map[string]int{}}
}

func (r *recorder) Name() string { return r.name }

func (r *recorder) record(method string, e spec.Event) error {
	r.mu.Lock()
	id := e.Fields().MessageID
	r.attempts[id]++
	attempt := r.attempts[id]
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		if err := fail(e, attempt); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.events = append(r.events, e)
	r.calls = append(r.calls, method)
	r.mu.Unlock()
	if r.delivered != nil {
		r.delivered <- e
	}
	return nil
}

func (r *recorder) Track(_ context.Context, e *spec.Track) error { return r.record("Track", e) }
func (r *recorder) Identify(_ context.Context, e *spec.Identify) error {
	return r.record("Identify", e)
}
func (r *recorder) Page(_ context.Context, e *spec.Page) error     { return r.record("Page", e) }
func (r *recorder) Screen(_ context.Context, e *spec.Screen) error { return r.record("Screen", e) }
func (r *recorder) Group(_ context.Context, e *spec.Group) error   { return r.record("Group", e) }
func (r *recorder) Alias(_ context.Context, e *spec.Alias) error   { return r.record("Alias", e) }

func (r *recorder) Flush(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushed++
	return nil
}

func (r *recorder) Close(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed++
	return nil
}

func (r *recorder) got() []spec.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]spec.Event(nil), r.events...)
}

func (r *recorder) ids() map[string]int {
	out := map[string]int{}
	for _, e := range r.got() {
		out[e.Fields().MessageID]++
	}
	return out
}

func (r *recorder) attemptsOf(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[id]
}

// failures collects what OnFailure receives.
type failures struct {
	mu   sync.Mutex
	list []opentrack.Failure
}

func (f *failures) hook(x opentrack.Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, x)
}

func (f *failures) get() []opentrack.Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]opentrack.Failure(nil), f.list...)
}

// fastRetry retries quickly so tests of retry paths run in milliseconds.
var fastRetry = opentrack.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxAttempts: 5}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newManager(t *testing.T, opts opentrack.Options) *opentrack.Manager {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	m, err := opentrack.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Shutdown(ctx)
	})
	return m
}

func track(id string) *spec.Track {
	return &spec.Track{Common: spec.Common{Type: spec.TypeTrack, MessageID: id, UserID: "u1"}, Event: "Clicked"}
}

// trackBy is a track of the given user: a non-batch integration delivers one
// user's events one at a time, different users' in parallel.
func trackBy(user, id string) *spec.Track {
	e := track(id)
	e.UserID = user
	return e
}

func flush(t *testing.T, m *opentrack.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func statsOf(t *testing.T, m *opentrack.Manager, name string) opentrack.Stats {
	t.Helper()
	for _, s := range m.Stats() {
		if s.Integration == name {
			return s
		}
	}
	t.Fatalf("no stats for %q", name)
	return opentrack.Stats{}
}

var errTransient = errors.New("transient")
