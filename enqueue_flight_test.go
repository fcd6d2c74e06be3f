package opentrack_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/journal"
	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

// idGatedQueue holds (then fails with ErrFull) the Appends that hold the
// messageId gate; every other Append goes through.
type idGatedQueue struct {
	*queue.Memory
	gate    string
	entered chan struct{}
	release chan struct{}
	fail    bool
}

func (g idGatedQueue) Append(ctx context.Context, recs []queue.Record) error {
	for _, r := range recs {
		if r.Event.Fields().MessageID == g.gate {
			g.entered <- struct{}{}
			<-g.release
			if g.fail {
				return queue.ErrFull
			}
			break
		}
	}
	return g.Memory.Append(ctx, recs)
}

// An Enqueue that waits on a duplicate whose append fails does not append
// its own events and then return that failure: all or nothing, counted.
func TestRegressionWaiterFailsAfterItsOwnAppend(t *testing.T) {
	q := idGatedQueue{Memory: queue.NewMemory(nil), gate: "dup", entered: make(chan struct{}, 2), release: make(chan struct{}), fail: true}
	a := newRecorder("A")
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a}, Queue: q})
	first := make(chan error, 1)
	go func() { first <- m.Enqueue(t.Context(), track("dup")) }()
	<-q.entered
	second := make(chan error, 1)
	go func() { second <- m.Enqueue(t.Context(), track("own"), track("dup")) }()
	time.Sleep(100 * time.Millisecond) // "own" appended; waiting on "dup"'s flight
	close(q.release)
	<-first
	err := <-second
	time.Sleep(200 * time.Millisecond)
	s := statsOf(t, m, "A")
	t.Logf("second Enqueue = %v; A got %v; stats Accepted=%d Delivered=%d Queued=%d", err, a.IDs(), s.Accepted, s.Delivered, s.Queued)
	if err != nil && a.IDs()["own"] == 1 {
		t.Errorf("Enqueue failed (%v) yet its event was delivered; Accepted=%d Delivered=%d", err, s.Accepted, s.Delivered)
	}
}

// A Flush in progress when a durable Shutdown leaves records queued
// returns once Shutdown is done, with the memory queue said durable and with
// the journal.
func TestRegressionFlushReturnsAcrossDurableShutdown(t *testing.T) {
	queues := map[string]func(t *testing.T) queue.Queue{
		"durable memory": func(*testing.T) queue.Queue { return durableMemory{queue.NewMemory(nil)} },
		"journal": func(t *testing.T) queue.Queue {
			j, err := journal.Open(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return j
		},
	}
	for name, open := range queues {
		t.Run(name, func(t *testing.T) {
			down := opentrack.Func("Down", func(ctx context.Context, e spec.Event) error { return errTransient })
			m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{down}, Queue: open(t), Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Enqueue(t.Context(), track("x")); err != nil {
				t.Fatal(err)
			}
			flushed := make(chan error, 1)
			go func() { flushed <- m.Flush(context.Background()) }()
			time.Sleep(50 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			t.Logf("Shutdown = %v", m.Shutdown(ctx))
			select {
			case err := <-flushed:
				t.Logf("Flush = %v", err)
			case <-time.After(5 * time.Second):
				t.Errorf("Flush(context.Background()) still blocked 5 s after Shutdown returned")
			}
		})
	}
}

// A durable Shutdown does not cancel a call to a healthy destination that
// takes longer than durableIdle: it lets the call finish and the event land.
func TestRegressionDurableShutdownCancelsSlowHealthyCall(t *testing.T) {
	var cancelled, delivered atomic.Int32
	slow := opentrack.Func("Slow", func(ctx context.Context, e spec.Event) error {
		select {
		case <-time.After(1500 * time.Millisecond):
			delivered.Add(1)
			return nil
		case <-ctx.Done():
			cancelled.Add(1)
			return ctx.Err()
		}
	})
	q := durableMemory{queue.NewMemory(nil)}
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{slow}, Queue: q, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := m.Enqueue(t.Context(), trackBy("u", string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err = m.Shutdown(ctx)
	t.Logf("Shutdown = %v after %v; delivered %d, cancelled %d, queued %d", err, time.Since(start), delivered.Load(), cancelled.Load(), m.Stats()[0].Queued)
	if cancelled.Load() > 0 {
		t.Errorf("a call that would have succeeded 250 ms later was cancelled, with 28 s of Shutdown's deadline left")
	}
}

// A durable Shutdown spends its idle second on all lanes at once, not lane
// after lane.
func TestRegressionDurableIdleIsPerLaneSequential(t *testing.T) {
	var ins []opentrack.Integration
	for i := range 6 {
		ins = append(ins, opentrack.Func(string(rune('A'+i)), func(ctx context.Context, e spec.Event) error { return errTransient }))
	}
	q := durableMemory{queue.NewMemory(nil)}
	m, err := opentrack.New(opentrack.Options{Integrations: ins, Queue: q, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Enqueue(t.Context(), track("x")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_ = m.Shutdown(ctx)
	d := time.Since(start)
	t.Logf("Shutdown of 6 stalled lanes took %v", d)
	if d > 3*time.Second {
		t.Errorf("Shutdown took %v: about 1.25 s per stalled integration instead of ~1.25 s in all", d)
	}
}

// A Flush after a duplicate was answered nil covers the original's record:
// the original's Enqueue raises lastSeq before the id enters the dedup
// window.
func TestRegressionFlushEarlyAfterDuplicate(t *testing.T) {
	q := idGatedQueue{Memory: queue.NewMemory(nil), gate: "y", entered: make(chan struct{}, 2), release: make(chan struct{})}
	hold := make(chan struct{})
	var got atomic.Int32
	in := opentrack.Func("A", func(ctx context.Context, e spec.Event) error {
		if e.Fields().MessageID == "x" {
			<-hold
			got.Add(1)
		}
		return nil
	})
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{in}, Queue: q})
	defer close(hold)
	p := make(chan error, 1)
	go func() { p <- m.Enqueue(t.Context(), trackBy("p", "y")) }()
	<-q.entered
	o := make(chan error, 1)
	go func() { o <- m.Enqueue(t.Context(), trackBy("o", "x"), trackBy("p", "y")) }()
	time.Sleep(100 * time.Millisecond) // O appended x, landed it, waits on y
	if err := m.Enqueue(t.Context(), trackBy("o", "x")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	ferr := m.Flush(ctx)
	if ferr == nil && got.Load() == 0 {
		t.Errorf("Flush returned nil before x, accepted before it, was delivered")
	}
	close(q.release)
	<-p
	<-o
	_ = slices.Contains[[]int]
	_ = errors.Is
}
