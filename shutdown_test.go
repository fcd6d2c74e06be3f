package opentrack_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/queue"
)

// durableMemory is a memory queue that says it is durable, so that the
// Manager treats it as it treats the journal.
type durableMemory struct{ *queue.Memory }

func (durableMemory) Durable() bool { return true }

// TestDurableShutdownLeavesUndeliveredEventsQueued: past Shutdown's deadline,
// events in a call or waiting to be retried stay in a durable queue; none
// is reported or settled.
func TestDurableShutdownLeavesUndeliveredEventsQueued(t *testing.T) {
	slow := newBlocker("Slow")
	defer close(slow.release)
	var f failures
	q := durableMemory{queue.NewMemory(nil)}
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{slow}, Queue: q, OnFailure: f.Add,
		Logger: quietLogger(), Delivery: opentrack.Delivery{Workers: 2}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := m.Enqueue(t.Context(), trackBy(string(rune('a'+i)), string(rune('A'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	<-slow.started
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := m.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	if s := m.Stats()[0]; len(f.List()) != 0 || s.Failed != 0 || s.Queued != 5 {
		t.Errorf("after Shutdown: %d reported, stats %+v; want nothing reported and all 5 left queued", len(f.List()), s)
	}
}

// gatedQueue holds every Append until released, then fails it.
type gatedQueue struct {
	*queue.Memory
	entered chan struct{}
	release chan struct{}
}

func (g gatedQueue) Append(ctx context.Context, recs []queue.Record) error {
	g.entered <- struct{}{}
	<-g.release
	return queue.ErrFull
}

// TestDuplicateOfAnAppendInProgressSharesItsOutcome: a sender's retry that
// arrives while the first copy is still being appended is not taken for an
// accepted replay: if the first copy fails, so does the retry.
func TestDuplicateOfAnAppendInProgressSharesItsOutcome(t *testing.T) {
	q := gatedQueue{queue.NewMemory(nil), make(chan struct{}, 2), make(chan struct{})}
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{newRecorder("A")}, Queue: q})
	first := make(chan error, 1)
	go func() { first <- m.Enqueue(t.Context(), track("same")) }()
	<-q.entered
	second := make(chan error, 1)
	go func() { second <- m.Enqueue(t.Context(), track("same")) }()
	close(q.release)
	if err := <-first; !errors.Is(err, opentrack.ErrQueueFull) {
		t.Fatalf("first = %v, want ErrQueueFull", err)
	}
	if err := <-second; !errors.Is(err, opentrack.ErrQueueFull) {
		t.Errorf("the retry of an event whose append failed = %v, want the same failure", err)
	}
}

// TestEnqueueOfANilEventLeavesNoFlight: a call refused for a nil event
// reserves nothing: the same messageId is accepted by the next call.
func TestEnqueueOfANilEventLeavesNoFlight(t *testing.T) {
	a := newRecorder("A")
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a}})
	if err := m.Enqueue(t.Context(), track("x"), nil); err == nil {
		t.Fatal("Enqueue with a nil event: no error")
	}
	if err := m.Enqueue(t.Context(), track("x")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if n := a.IDs()["x"]; n != 1 {
		t.Errorf("x delivered %d times, want 1", n)
	}
}
