package opentrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opentrackhq/opentrack/spec"
)

// A lane is one integration's queue, position and workers.
//
// Events get consecutive sequence numbers as they are appended and stay on a
// list, oldest first, until settled (delivered, or failed and reported). The
// lane's position is the sequence number of the oldest unsettled event (or
// the next one, when none is): every event below it is settled. Room in the
// queue is QueueSize minus the unsettled events, so an event stuck in
// retries holds one place, not the queue. This is the seam where a durable
// journal will stand: append assigns positions, settling advances them.
type lane struct {
	m       *Manager
	in      Integration
	batcher Batcher
	name    string
	d       Delivery

	ch chan *item

	mu        sync.Mutex
	next      uint64        // sequence number of the next appended event
	head      *item         // the unsettled events, oldest first, linked
	tail      *item         // the newest unsettled event
	unsettled int           // how many events are linked
	moved     chan struct{} // closed and replaced when an event settles
	ready     bool          // Init succeeded, or was not needed
	broken    error         // why Init failed for good
	initDone  chan struct{} // closed once Init has succeeded or failed for good
	ctx       context.Context
	cancel    context.CancelCauseFunc // cancels calls and waits when Shutdown's deadline passes
	wg        sync.WaitGroup
	flushNow  chan struct{} // asks the batch collector to send what it holds
	batchSend chan []*item  // from the collector to the batch senders

	accepted, delivered, retried, failed, deduplicated, panics atomic.Uint64
}

type item struct {
	seq      uint64
	ev       spec.Event
	size     int
	at       time.Time // appended
	attempts int
	first    time.Time // first attempt
	claimed  bool      // its outcome is decided; guarded by lane.mu

	prev, next *item // the lane's list of unsettled events; guarded by lane.mu
}

func newLane(m *Manager, in Integration, d Delivery) *lane {
	l := &lane{
		m:        m,
		in:       in,
		name:     in.Name(),
		d:        d,
		ch:       make(chan *item, d.QueueSize),
		moved:    make(chan struct{}),
		initDone: make(chan struct{}),
		flushNow: make(chan struct{}, 1),
	}
	l.batcher, _ = in.(Batcher)
	l.ctx, l.cancel = context.WithCancelCause(context.Background())
	return l
}

func (l *lane) start() {
	l.wg.Go(l.init)
	if l.batcher != nil {
		l.batchSend = make(chan []*item)
		l.wg.Go(l.collect)
		for range l.d.Workers {
			l.wg.Go(func() {
				<-l.initDone
				for b := range l.batchSend {
					l.sendBatch(b)
				}
			})
		}
		return
	}
	for range l.d.Workers {
		l.wg.Go(func() {
			<-l.initDone
			for it := range l.ch {
				l.deliver(it)
			}
		})
	}
}

// init runs the integration's Init, retrying under the lane's RetryPolicy.
// If it fails for good the lane is broken: its events go to OnFailure.
func (l *lane) init() {
	defer close(l.initDone)
	in, ok := l.in.(Initializer)
	if !ok {
		l.setReady(nil)
		return
	}
	it := &item{first: time.Now()} // tracks attempts and elapsed time
	for {
		it.attempts++
		err := l.call(func(ctx context.Context) error { return in.Init(ctx) })
		if err == nil {
			l.setReady(nil)
			return
		}
		wait, ok := l.retryWait(it, err)
		if ok {
			l.m.log.Warn("opentrack: init failed, retrying", slog.String("integration", l.name), slog.Duration("wait", wait), slog.Any("error", err))
			if ok = l.sleep(wait); ok {
				l.retried.Add(1)
				continue
			}
			err = errors.Join(context.Cause(l.ctx), err)
		}
		err = fmt.Errorf("opentrack: %s: init failed after %d attempts: %w", l.name, it.attempts, err)
		l.m.log.Error("opentrack: integration disabled; its events go to OnFailure", slog.String("integration", l.name), slog.Any("error", err))
		l.setReady(err)
		return
	}
}

func (l *lane) setReady(broken error) {
	l.mu.Lock()
	l.ready, l.broken = broken == nil, broken
	l.mu.Unlock()
}

// hasRoom reports whether n more events fit. l.mu must be held.
func (l *lane) hasRoom(n int) bool {
	return l.unsettled+n <= l.d.QueueSize
}

// appendLocked gives items consecutive sequence numbers, links them and puts
// them in the channel, and unlocks l.mu, which reserve locked. The sends
// cannot block: reserve checked that the queue has room, and the channel
// holds no more than the unsettled events. Sending under the lock means that
// whoever reads next also finds the items in the channel (Flush relies on it).
func (l *lane) appendLocked(items []*item) {
	for _, it := range items {
		it.seq = l.next
		l.next++
		it.prev = l.tail
		if l.tail != nil {
			l.tail.next = it
		} else {
			l.head = it
		}
		l.tail = it
		l.unsettled++
		l.ch <- it
	}
	l.mu.Unlock()
	l.accepted.Add(uint64(len(items)))
}

// position is the sequence number of the oldest unsettled event, or next.
// l.mu must be held.
func (l *lane) position() uint64 {
	if l.head != nil {
		return l.head.seq
	}
	return l.next
}

// settleLocked unlinks a claimed item and wakes those waiting for the
// position. l.mu must be held.
func (l *lane) settleLocked(it *item) {
	if it.prev == nil && l.head != it {
		return // not linked (settled before)
	}
	if it.prev != nil {
		it.prev.next = it.next
	} else {
		l.head = it.next
	}
	if it.next != nil {
		it.next.prev = it.prev
	} else {
		l.tail = it.prev
	}
	it.prev, it.next = nil, nil
	l.unsettled--
	close(l.moved)
	l.moved = make(chan struct{})
}

// claim decides an item's outcome; it returns false if the outcome was
// already decided (by Shutdown's sweep, or a worker).
func (l *lane) claim(it *item) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if it.claimed {
		return false
	}
	it.claimed = true
	return true
}

// done settles it as delivered (err == nil) or as failed, in which case it
// is reported before its position is released, so that Flush returns only
// after OnFailure has seen it.
func (l *lane) done(it *item, err error) {
	if !l.claim(it) {
		return
	}
	if err == nil {
		l.delivered.Add(1)
	} else {
		l.m.report(l, it, err)
	}
	l.mu.Lock()
	l.settleLocked(it)
	l.mu.Unlock()
}

// failPending reports, with err, every event not yet claimed, so that
// nothing accepted is left unaccounted for when Shutdown returns, even if a
// call never came back. Events that workers are reporting at that moment are
// waited for until deadline, no longer: they are in OnFailure's hands.
func (l *lane) failPending(err error, deadline time.Time) {
	l.mu.Lock()
	var todo []*item
	for it := l.head; it != nil; it = it.next {
		if !it.claimed {
			it.claimed = true
			todo = append(todo, it)
		}
	}
	l.mu.Unlock()
	for _, it := range todo {
		l.m.report(l, it, err)
		l.mu.Lock()
		l.settleLocked(it)
		l.mu.Unlock()
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		l.mu.Lock()
		empty, moved := l.head == nil, l.moved
		l.mu.Unlock()
		if empty {
			return
		}
		select {
		case <-moved:
		case <-timer.C:
			return
		}
	}
}

// waitSettled waits until every event appended before the call is settled.
func (l *lane) waitSettled(ctx context.Context) error {
	l.mu.Lock()
	target := l.next
	l.mu.Unlock()
	if l.batcher != nil {
		select {
		case l.flushNow <- struct{}{}:
		default:
		}
	}
	for {
		l.mu.Lock()
		settled, moved := l.position() >= target, l.moved
		l.mu.Unlock()
		if settled {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (l *lane) stats(now time.Time) Stats {
	l.mu.Lock()
	queued := l.unsettled
	pos := l.position()
	var age time.Duration
	if l.head != nil {
		age = now.Sub(l.head.at)
	}
	ready, broken := l.ready, l.broken
	l.mu.Unlock()
	return Stats{
		Integration:  l.name,
		Accepted:     l.accepted.Load(),
		Delivered:    l.delivered.Load(),
		Retried:      l.retried.Load(),
		Failed:       l.failed.Load(),
		Deduplicated: l.deduplicated.Load(),
		Panics:       l.panics.Load(),
		Queued:       queued,
		OldestAge:    age,
		Position:     pos,
		Ready:        ready,
		Err:          broken,
	}
}

// call runs fn with the call timeout, turning a panic into a permanent error.
func (l *lane) call(fn func(ctx context.Context) error) (err error) {
	ctx, cancel := context.WithTimeout(l.ctx, l.d.CallTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			l.panics.Add(1)
			l.m.log.Error("opentrack: integration panicked", slog.String("integration", l.name),
				slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			err = Permanent(fmt.Errorf("opentrack: %s panicked: %v", l.name, r))
		}
	}()
	return fn(ctx)
}

// hook runs one of the integration's lifecycle methods (Flush, Close),
// turning a panic into an error.
func (l *lane) hook(name string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			l.panics.Add(1)
			err = fmt.Errorf("opentrack: %s: %s panicked: %v", l.name, name, r)
		}
	}()
	if err := fn(); err != nil {
		return fmt.Errorf("opentrack: %s: %s: %w", l.name, name, err)
	}
	return nil
}

// backoff returns the wait before attempt+1: a random wait between half and
// all of an exponential ceiling, raised to any Retry-After the error asks for.
func (l *lane) backoff(attempt int, err error) time.Duration {
	r := l.d.Retry
	ceil := r.InitialBackoff << min(attempt-1, 30)
	if ceil <= 0 || ceil > r.MaxBackoff {
		ceil = r.MaxBackoff
	}
	wait := ceil/2 + rand.N(ceil/2+1)
	if ra, ok := RetryAfterDelay(err); ok && ra > wait {
		wait = ra
	}
	return wait
}

// retryWait decides whether it is worth another attempt after err and how long
// to wait first. ok is false when the event should fail now.
func (l *lane) retryWait(it *item, err error) (time.Duration, bool) {
	r := l.d.Retry
	if r.Disable || IsPermanent(err) || it.attempts >= r.MaxAttempts || l.ctx.Err() != nil {
		return 0, false
	}
	wait := l.backoff(it.attempts, err)
	if time.Since(it.first)+wait > r.MaxElapsedTime {
		return 0, false
	}
	return wait, true
}

// sleep waits d, or returns false if the lane is cancelled first.
func (l *lane) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
		return false
	}
}

// unusable returns why the lane cannot call its integration any more: Init
// failed for good, or Shutdown's deadline has passed. Nil otherwise.
func (l *lane) unusable() error {
	if err := context.Cause(l.ctx); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.broken
}

// deliver sends one event to a non-batch integration, with retries.
func (l *lane) deliver(it *item) {
	it.first = time.Now()
	for {
		if err := l.unusable(); err != nil {
			l.done(it, err)
			return
		}
		it.attempts++
		err := l.call(func(ctx context.Context) error { return Deliver(ctx, l.in, it.ev) })
		if err == nil {
			l.done(it, nil)
			return
		}
		wait, ok := l.retryWait(it, err)
		if !ok || !l.sleep(wait) {
			if cause := context.Cause(l.ctx); cause != nil {
				err = errors.Join(cause, err)
			}
			l.done(it, err)
			return
		}
		l.retried.Add(1)
		l.m.log.Debug("opentrack: retrying", slog.String("integration", l.name), slog.Int("attempt", it.attempts), slog.Any("error", err))
	}
}

// collect groups queued events into batches and hands them to the senders.
func (l *lane) collect() {
	defer close(l.batchSend)
	b := l.d.Batch
	var (
		cur   []*item
		bytes int
		timer = time.NewTimer(time.Hour)
	)
	timer.Stop()
	send := func() {
		if len(cur) == 0 {
			return
		}
		l.batchSend <- cur
		cur, bytes = nil, 0
		timer.Stop()
	}
	add := func(it *item) {
		if len(cur) == 0 {
			timer.Reset(b.Interval)
		}
		cur = append(cur, it)
		bytes += it.size
		if len(cur) >= b.MaxEvents || bytes >= b.MaxBytes {
			send()
		}
	}
	for {
		select {
		case it, ok := <-l.ch:
			if !ok {
				send()
				return
			}
			add(it)
		case <-timer.C:
			send()
		case <-l.flushNow:
			// Send what is held and what is already queued, without waiting
			// for the interval.
		drain:
			for {
				select {
				case it, ok := <-l.ch:
					if !ok {
						send()
						return
					}
					add(it)
				default:
					break drain
				}
			}
			send()
		}
	}
}

// sendBatch delivers a batch with retries; only failed events are retried.
func (l *lane) sendBatch(items []*item) {
	now := time.Now()
	for _, it := range items {
		it.first = now
	}
	events := make([]spec.Event, 0, len(items))
	for len(items) > 0 {
		if err := l.unusable(); err != nil {
			for _, it := range items {
				l.done(it, err)
			}
			return
		}
		events = events[:0]
		for _, it := range items {
			it.attempts++
			events = append(events, it.ev)
		}
		err := l.call(func(ctx context.Context) error { return l.batcher.Batch(ctx, events) })
		outcome := l.batchOutcome(err, len(items))
		var (
			retry    []*item
			longest  time.Duration
			retryErr error
		)
		for i, it := range items {
			ierr := outcome(i)
			if ierr == nil {
				l.done(it, nil)
				continue
			}
			wait, ok := l.retryWait(it, ierr)
			if !ok {
				if cause := context.Cause(l.ctx); cause != nil {
					ierr = errors.Join(cause, ierr)
				}
				l.done(it, ierr)
				continue
			}
			retry = append(retry, it)
			if wait > longest {
				longest, retryErr = wait, ierr
			}
		}
		items = retry
		if len(items) == 0 {
			return
		}
		if !l.sleep(longest) {
			for _, it := range items {
				l.done(it, errors.Join(context.Cause(l.ctx), retryErr))
			}
			return
		}
		l.retried.Add(uint64(len(items)))
		l.m.log.Debug("opentrack: retrying batch", slog.String("integration", l.name), slog.Int("events", len(items)), slog.Any("error", retryErr))
	}
}

// batchOutcome returns a function giving the error for event i of a batch of
// n, from what Batch returned. A *BatchError applies per event; an outer
// Permanent mark, or an outer RetryAfter longer than an event's own, applies
// to each of its events. A BatchError that names no event, an index outside
// the batch or a nil error cannot be trusted, so the whole batch counts as
// failed with it.
func (l *lane) batchOutcome(err error, n int) func(i int) error {
	if err == nil {
		return func(int) error { return nil }
	}
	var be *BatchError
	if !errors.As(err, &be) {
		return func(int) error { return err }
	}
	if !be.valid(n) {
		l.m.log.Error("opentrack: integration returned a BatchError that does not match the batch; failing the whole batch",
			slog.String("integration", l.name), slog.Int("events", n), slog.Any("error", err))
		return func(int) error { return err }
	}
	wrapped := err != error(be)
	outer, hasOuter := RetryAfterDelay(err)
	permanent := wrapped && IsPermanent(err)
	return func(i int) error {
		ierr := be.Failed[i]
		if ierr == nil || !wrapped {
			return ierr
		}
		// The BatchError was wrapped: carry the outer marks over.
		if own, _ := RetryAfterDelay(ierr); hasOuter && outer > own {
			ierr = RetryAfter(ierr, outer)
		}
		if permanent {
			ierr = Permanent(ierr)
		}
		return ierr
	}
}

// valid reports whether e names at least one event, each within a batch of n,
// each with a non-nil error.
func (e *BatchError) valid(n int) bool {
	if len(e.Failed) == 0 {
		return false
	}
	for i, err := range e.Failed {
		if i < 0 || i >= n || err == nil {
			return false
		}
	}
	return true
}
