package integrationtest_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrationtest"
	"github.com/opentrackhq/opentrack/spec"
)

var errClosed = errors.New("memsink: closed")

// backend is an in-memory stand-in: each request carries events as JSON,
// and its next requests can be made to fail.
type backend struct {
	mu        sync.Mutex
	got       []integrationtest.Record
	fail      int
	permanent bool
}

// request receives lines, or none for a ping.
func (b *backend) request(ctx context.Context, lines [][]byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail > 0 {
		b.fail--
		if b.permanent {
			return opentrack.Permanent(errors.New("memsink: 400"))
		}
		return errors.New("memsink: 503")
	}
	for _, l := range lines {
		r, err := integrationtest.RecordFromJSON(l)
		if err != nil {
			return opentrack.Permanent(err)
		}
		b.got = append(b.got, r)
	}
	return nil
}

// sink is an integration with an Init that calls its backend, as one that
// checks its credentials or creates a table would. With batch set it is a
// Batcher that sends a batch in one request.
type sink struct {
	b      *backend
	batch  bool
	closed atomic.Bool
}

func (s *sink) Name() string { return "memsink" }

func (s *sink) Init(ctx context.Context) error { return s.b.request(ctx, nil) }

func (s *sink) Close(context.Context) error {
	s.closed.Store(true)
	return nil
}

func (s *sink) send(ctx context.Context, events ...spec.Event) error {
	if s.closed.Load() {
		return opentrack.Permanent(errClosed)
	}
	lines := make([][]byte, 0, len(events))
	for _, e := range events {
		b, err := e.MarshalJSON()
		if err != nil {
			return opentrack.Permanent(err)
		}
		lines = append(lines, b)
	}
	return s.b.request(ctx, lines)
}

func (s *sink) Track(ctx context.Context, e *spec.Track) error       { return s.send(ctx, e) }
func (s *sink) Identify(ctx context.Context, e *spec.Identify) error { return s.send(ctx, e) }
func (s *sink) Page(ctx context.Context, e *spec.Page) error         { return s.send(ctx, e) }
func (s *sink) Screen(ctx context.Context, e *spec.Screen) error     { return s.send(ctx, e) }
func (s *sink) Group(ctx context.Context, e *spec.Group) error       { return s.send(ctx, e) }
func (s *sink) Alias(ctx context.Context, e *spec.Alias) error       { return s.send(ctx, e) }

type batchSink struct{ *sink }

func (s batchSink) Batch(ctx context.Context, events []spec.Event) error {
	return s.send(ctx, events...)
}

var (
	_ opentrack.Initializer = (*sink)(nil)
	_ opentrack.Closer      = (*sink)(nil)
	_ opentrack.Batcher     = batchSink{}
)

type harness struct {
	batch bool
	b     *backend
}

func (h *harness) New(t *testing.T) opentrack.Integration {
	h.b = &backend{}
	s := &sink{b: h.b}
	if h.batch {
		return batchSink{s}
	}
	return s
}

func (h *harness) Received(t *testing.T) []integrationtest.Record {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	return append([]integrationtest.Record(nil), h.b.got...)
}

func (h *harness) FailNext(t *testing.T, n int, permanent bool) bool {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	h.b.fail, h.b.permanent = n, permanent
	return true
}

func (h *harness) Types() []spec.Type {
	return []spec.Type{spec.TypeTrack, spec.TypeIdentify, spec.TypePage, spec.TypeScreen, spec.TypeGroup, spec.TypeAlias}
}

// TestRun runs the suite against a reference integration whose Init calls
// its backend, per call and as a Batcher.
func TestRun(t *testing.T) {
	t.Run("PerCall", func(t *testing.T) { integrationtest.Run(t, &harness{}) })
	t.Run("Batcher", func(t *testing.T) { integrationtest.Run(t, &harness{batch: true}) })
}
