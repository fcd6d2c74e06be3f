// Package retry holds the one retry rule of the Manager, used for an
// integration's Init, for one event and for a batch: exponential backoff with
// full jitter in the upper half, capped, bounded by attempts and by the time
// since the first attempt, and raised to whatever wait the destination asked
// for.
package retry

import (
	"math"
	"math/rand/v2"
	"time"
)

// Policy bounds the retries of one piece of work. A zero MaxAttempts or
// MaxElapsed means no bound of that kind.
type Policy struct {
	// MaxAttempts counts the first attempt too.
	MaxAttempts int
	// Initial is the ceiling of the first wait; each later ceiling doubles.
	Initial time.Duration
	// Max caps one wait (a destination's own wait included).
	Max time.Duration
	// MaxElapsed caps the time from the first attempt to the next one.
	MaxElapsed time.Duration
}

// Backoff returns the wait after the given number of failed attempts: a
// random wait between half and all of Initial·2ⁿ⁻¹, capped at Max, and at
// least throttle (a destination's Retry-After), which Max does not cap.
func (p Policy) Backoff(attempts int, throttle time.Duration) time.Duration {
	ceil := p.Initial
	for i := 1; i < attempts && ceil < p.Max && ceil < math.MaxInt64/2; i++ {
		ceil *= 2 // doubling that saturates rather than wraps
	}
	if ceil <= 0 || (p.Max > 0 && ceil > p.Max) {
		ceil = p.Max
	}
	wait := ceil/2 + rand.N(ceil/2+1)
	return max(wait, throttle)
}

// Next decides whether work that has failed attempts times, first tried
// elapsed ago, is tried again, and after how long. throttle is the wait the
// destination asked for (0 for none). ok is false when the work should be
// given up: the attempts are spent, or the wait would pass MaxElapsed.
func (p Policy) Next(attempts int, elapsed, throttle time.Duration) (wait time.Duration, ok bool) {
	if p.MaxAttempts > 0 && attempts >= p.MaxAttempts {
		return 0, false
	}
	wait = p.Backoff(attempts, throttle)
	if p.MaxElapsed > 0 && elapsed+wait > p.MaxElapsed {
		// One last attempt at the horizon: a destination that asks for a
		// longer wait than is left gets as long as the horizon allows.
		left := p.MaxElapsed - elapsed
		if left <= 0 {
			return 0, false
		}
		wait = left
	}
	return wait, true
}
