package opentrack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opentrackhq/opentrack/spec"
)

// Integration delivers accepted events to one destination.
//
// The Manager calls one method per Segment call. Methods may be called
// concurrently, up to the integration's Delivery.Workers at once; they must
// honour ctx, which carries the per-call timeout, and must treat the event as
// read-only and not keep it after they return: the same event is handed to
// every integration.
//
// A nil error means the event was delivered. Any other error is retried with
// backoff unless it is marked with [Permanent]; wrap it with [RetryAfter] to
// ask for a wait. An event that cannot be delivered reaches
// [Options.OnFailure]. A panic in a method is recovered, counted in
// [Stats].Panics and treated as a permanent failure of that event.
//
// The events of one user (userId, else anonymousId) are handed to the
// per-call methods one at a time, in the order they were accepted.
//
// Optional capabilities are found by type assertion: [Initializer],
// [Batcher], [Flusher], [Closer] and [DeliveryTuner]. Embed [Base] to get
// no-op methods, or use [Func] to build an Integration from one function.
type Integration interface {
	// Name is the key of the integration in Segment's "integrations"
	// object ("BigQuery", "Customer.io"). It must be stable and unique
	// within a Manager; matching is case-sensitive, as Segment's is.
	Name() string
	Track(ctx context.Context, e *spec.Track) error
	Identify(ctx context.Context, e *spec.Identify) error
	Page(ctx context.Context, e *spec.Page) error
	Screen(ctx context.Context, e *spec.Screen) error
	Group(ctx context.Context, e *spec.Group) error
	Alias(ctx context.Context, e *spec.Alias) error
}

// Initializer is implemented by an integration that must prepare before its
// first event (open a connection, create a dataset). The Manager calls Init
// from the integration's own goroutine before delivering anything to it;
// events wait in its queue meanwhile. A failed Init, even a [Permanent] one,
// is retried with capped backoff for as long as the Manager runs, since a
// destination down at start is no reason to lose events; [Stats].Err says
// why the integration is not ready. Init is not called again once it has
// succeeded.
type Initializer interface {
	Init(ctx context.Context) error
}

// Batcher is implemented by an integration that takes events in batches, such
// as a warehouse sink. The Manager then collects events into batches (by
// count, bytes and interval; see [BatchOptions]) and calls Batch instead of
// the per-call methods.
//
// Batch must not keep the slice or its events after it returns. A nil error
// delivers the whole batch; a [*BatchError] says which events failed; any
// other error applies to the whole batch. Only failed events are retried.
type Batcher interface {
	Batch(ctx context.Context, events []spec.Event) error
}

// Flusher is implemented by an integration that buffers writes. The Manager
// calls Flush from [Manager.Flush], after every event enqueued before that
// call has been handed to the integration, and from [Manager.Shutdown].
// Flush may run while later events are being delivered: it must be safe to
// call concurrently with the other methods.
type Flusher interface {
	Flush(ctx context.Context) error
}

// Closer is implemented by an integration that holds resources. The Manager
// calls Close once, last, from [Manager.Shutdown]; no method is called after it.
type Closer interface {
	Close(ctx context.Context) error
}

// DeliveryTuner is implemented by an integration that wants delivery settings
// of its own. The non-zero fields of the returned Delivery are its defaults:
// the host's non-zero [Options.Delivery] fields win over them, and they win
// over the package's defaults.
type DeliveryTuner interface {
	Delivery() Delivery
}

// Base is an Integration with no-op methods, meant to be embedded: a custom
// integration embeds Base, sets its name, and overrides only the calls it
// cares about.
//
//	type slack struct{ opentrack.Base }
//	func (slack) Track(ctx context.Context, e *spec.Track) error { ... }
//	... opentrack.Options{Integrations: []opentrack.Integration{slack{opentrack.Base{ID: "Slack"}}}}
type Base struct {
	// ID is returned by Name.
	ID string
}

// Name returns b.ID.
func (b Base) Name() string { return b.ID }

// Track does nothing and returns nil.
func (Base) Track(context.Context, *spec.Track) error { return nil }

// Identify does nothing and returns nil.
func (Base) Identify(context.Context, *spec.Identify) error { return nil }

// Page does nothing and returns nil.
func (Base) Page(context.Context, *spec.Page) error { return nil }

// Screen does nothing and returns nil.
func (Base) Screen(context.Context, *spec.Screen) error { return nil }

// Group does nothing and returns nil.
func (Base) Group(context.Context, *spec.Group) error { return nil }

// Alias does nothing and returns nil.
func (Base) Alias(context.Context, *spec.Alias) error { return nil }

// Func returns an Integration named name that passes every event, whatever
// its call, to fn. It is the shortest way to write a sink that treats all
// events alike.
func Func(name string, fn func(ctx context.Context, e spec.Event) error) Integration {
	return funcIntegration{name: name, fn: fn}
}

type funcIntegration struct {
	name string
	fn   func(context.Context, spec.Event) error
}

func (f funcIntegration) Name() string                                     { return f.name }
func (f funcIntegration) Track(ctx context.Context, e *spec.Track) error   { return f.fn(ctx, e) }
func (f funcIntegration) Page(ctx context.Context, e *spec.Page) error     { return f.fn(ctx, e) }
func (f funcIntegration) Group(ctx context.Context, e *spec.Group) error   { return f.fn(ctx, e) }
func (f funcIntegration) Alias(ctx context.Context, e *spec.Alias) error   { return f.fn(ctx, e) }
func (f funcIntegration) Screen(ctx context.Context, e *spec.Screen) error { return f.fn(ctx, e) }
func (f funcIntegration) Identify(ctx context.Context, e *spec.Identify) error {
	return f.fn(ctx, e)
}

// Deliver calls the method of in that matches e's type. It is what the
// Manager does for integrations that are not Batchers, exported for
// integrations that dispatch events themselves (a Batcher that falls back to
// per-call delivery, a wrapper around another integration) and for
// conformance tests.
func Deliver(ctx context.Context, in Integration, e spec.Event) error {
	switch ev := e.(type) {
	case *spec.Track:
		return in.Track(ctx, ev)
	case *spec.Identify:
		return in.Identify(ctx, ev)
	case *spec.Page:
		return in.Page(ctx, ev)
	case *spec.Screen:
		return in.Screen(ctx, ev)
	case *spec.Group:
		return in.Group(ctx, ev)
	case *spec.Alias:
		return in.Alias(ctx, ev)
	}
	return Permanent(fmt.Errorf("opentrack: unknown event type %T", e))
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix (a 4xx answer, an event
// the destination rejects). The Manager does not retry it; the event goes to
// [Options.OnFailure] at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or any error it wraps, was marked with
// [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError asks for a minimum wait before the next attempt.
type retryAfterError struct {
	err  error
	wait time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err as retryable no sooner than after d, as a destination's
// Retry-After header asks. The Manager waits at least d (but not past its
// retry budget) before the next attempt. RetryAfter(nil, d) is nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, wait: d}
}

// RetryAfterDelay returns the wait requested by [RetryAfter] in err's chain,
// and whether there was one: for an integration that wraps another's errors
// and for tests of an integration's error classification.
func RetryAfterDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.wait, true
	}
	return 0, false
}

// BatchError reports which events of a batch failed; the others were
// delivered. The keys of Failed are indexes into the slice passed to
// [Batcher.Batch]. Each error may be marked [Permanent] or [RetryAfter]; a
// mark around the BatchError itself applies to each of its events. A
// BatchError with no failures, an index outside the batch or a nil error
// does not say what happened, so the Manager fails the whole batch with it.
type BatchError struct {
	Failed map[int]error
}

// Fail records that the event at index i failed with err.
func (e *BatchError) Fail(i int, err error) {
	if e.Failed == nil {
		e.Failed = make(map[int]error)
	}
	e.Failed[i] = err
}

// Err returns e if any event failed and nil otherwise, so a Batch method can
// end with `return be.Err()`.
func (e *BatchError) Err() error {
	if e == nil || len(e.Failed) == 0 {
		return nil
	}
	return e
}

// Error implements error.
func (e *BatchError) Error() string {
	first := -1
	for i := range e.Failed {
		if first < 0 || i < first {
			first = i
		}
	}
	if first < 0 {
		return "opentrack: batch error with no failed events"
	}
	return fmt.Sprintf("opentrack: %d of the batch's events failed; event %d: %v", len(e.Failed), first, e.Failed[first])
}
