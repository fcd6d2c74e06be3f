package retry

import (
	"testing"
	"time"
)

func TestBackoffGrowsWithinBounds(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second}
	for attempts := 1; attempts <= 40; attempts++ {
		ceil := min(p.Initial<<min(attempts-1, 30), p.Max)
		for range 50 {
			w := p.Backoff(attempts, 0)
			if w < ceil/2 || w > ceil {
				t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", attempts, w, ceil/2, ceil)
			}
		}
	}
}

func TestBackoffHonoursThrottleUpToMax(t *testing.T) {
	p := Policy{Initial: 10 * time.Millisecond, Max: time.Minute}
	if w := p.Backoff(1, 30*time.Second); w != 30*time.Second {
		t.Errorf("throttle 30s: wait %v", w)
	}
	if w := p.Backoff(1, time.Hour); w != time.Hour {
		t.Errorf("throttle 1h past Max 1m: wait %v, want the 1h asked for", w)
	}
}

func TestNextBounds(t *testing.T) {
	p := Policy{MaxAttempts: 3, Initial: time.Second, Max: time.Second, MaxElapsed: 10 * time.Second}
	if _, ok := p.Next(3, 0, 0); ok {
		t.Error("retried after MaxAttempts")
	}
	if w, ok := p.Next(1, 0, 0); !ok || w < 500*time.Millisecond || w > time.Second {
		t.Errorf("Next(1) = %v, %v", w, ok)
	}
	// Near the horizon: one last attempt at the horizon.
	if w, ok := p.Next(2, 9800*time.Millisecond, 0); !ok || w != 200*time.Millisecond {
		t.Errorf("near the horizon: %v, %v; want the 200ms left", w, ok)
	}
	if _, ok := p.Next(2, 10*time.Second, 0); ok {
		t.Error("retried past MaxElapsed")
	}
	// A destination asking for more than the horizon leaves: one last
	// attempt at the horizon, not a failure after one attempt.
	if w, ok := p.Next(1, 0, 11*time.Second); !ok || w != 10*time.Second {
		t.Errorf("Retry-After past the horizon: %v, %v; want a last attempt after the 10s left", w, ok)
	}
	// A long Retry-After within the horizon is honoured, not cut to the
	// first backoff: a large one waits, it does not fail at once.
	long := Policy{Initial: time.Second, Max: 4 * time.Hour, MaxElapsed: 4 * time.Hour}
	if w, ok := long.Next(1, 0, time.Hour); !ok || w != time.Hour {
		t.Errorf("Retry-After 1h within a 4h horizon: %v, %v", w, ok)
	}
	// No bounds: retried forever.
	forever := Policy{Initial: time.Millisecond, Max: time.Second}
	if w, ok := forever.Next(1000, 1000*time.Hour, 0); !ok || w > time.Second {
		t.Errorf("unbounded policy: %v, %v", w, ok)
	}
}

// TestBackoffDoesNotWrap: a large initial wait doubles up to Max and stays
// there, however many attempts.
func TestBackoffDoesNotWrap(t *testing.T) {
	p := Policy{Initial: 1<<34 + 1, Max: 4 * time.Hour}
	for _, attempts := range []int{20, 31, 40, 1000} {
		if w := p.Backoff(attempts, 0); w < 2*time.Hour {
			t.Errorf("Backoff(%d) = %v, want between 2h and 4h", attempts, w)
		}
	}
}
