package opentrack_test

import (
	"context"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// A panic inside Enqueue after a messageId was reserved releases the
// reservation: a later Enqueue of that id is not held up.
func TestRegressionPanicLeavesFlight(t *testing.T) {
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{newRecorder("A")}})
	func() {
		defer func() { t.Logf("first Enqueue panicked: %v", recover()) }()
		var nilTrack *spec.Track
		_ = m.Enqueue(t.Context(), track("poisoned"), nilTrack)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err := m.Enqueue(ctx, track("poisoned"))
	t.Logf("later Enqueue of the same id = %v after %v", err, time.Since(start))
	if err != nil {
		t.Errorf("messageId poisoned: Enqueue = %v", err)
	}
}

// After such a panic Shutdown still returns within its context.
func TestRegressionPanicLeavesFlightShutdownHangs(t *testing.T) {
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{newRecorder("A")}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() { recover() }()
		var nilTrack *spec.Track
		_ = m.Enqueue(t.Context(), track("poisoned"), nilTrack)
	}()
	go m.Enqueue(context.Background(), track("poisoned"))
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Shutdown(ctx) }()
	select {
	case err := <-done:
		t.Logf("Shutdown = %v", err)
	case <-time.After(3 * time.Second):
		t.Errorf("Shutdown(500ms ctx) still running after 3 s: blocked in intake.Lock behind an Enqueue waiting on a flight that never lands")
	}
}
