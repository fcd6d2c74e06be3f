package opentrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opentrackhq/opentrack/spec"
)

// A lane is one integration's queue, position and workers.
//
// Events get consecutive sequence numbers as they are appended. The lane's
// position is the lowest sequence number not yet settled (delivered or
// failed); room in the queue is QueueSize minus (next - position), so an
// event stuck in retries holds its place, as a journal segment would. This
// is the seam where a durable journal will stand: append assigns positions,
// settle advances them.
type lane struct {
	m       *Manager
	in      Integration
	batcher Batcher
	name    string
	d       Delivery

	ch chan *item

	mu       sync.Mutex
	next     uint64        // sequence number of the next appended event
	pos      uint64        // every sequence number below it is settled
	settled  []bool        // ring of QueueSize: settled[seq%QueueSize]
	appended []int64       // ring: unix nanos when seq was appended
	moved    chan struct{} // closed and replaced when pos advances

	ctx    context.Context // cancelled when Shutdown's deadline passes
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	ready  chan struct{} // closed once Init has succeeded (or was not needed)
	broken error         // set before ready closes when Init failed permanently

	flushNow chan struct{} // asks the batch collector to send what it holds

	accepted, delivered, retried, failed, deduplicated, panics atomic.Uint64
}

type item struct {
	seq      uint64
	ev       spec.Event
	size     int
	attempts int
	first    time.Time // first attempt
}

func newLane(m *Manager, in Integration, d Delivery) *lane {
	l := &lane{
		m:        m,
		in:       in,
		name:     in.Name(),
		d:        d,
		ch:       make(chan *item, d.QueueSize),
		settled:  make([]bool, d.QueueSize),
		appended: make([]int64, d.QueueSize),
		moved:    make(chan struct{}),
		ready:    make(chan struct{}),
		flushNow: make(chan struct{}, 1),
	}
	l.batcher, _ = in.(Batcher)
	l.ctx, l.cancel = context.WithCancelCause(context.Background())
	return l
}

func (l *lane) start() {
	l.wg.Go(l.init)
	if l.batcher != nil {
		batches := make(chan []*item)
		l.wg.Go(func() { l.collect(batches) })
		for range l.d.Workers {
			l.wg.Go(func() {
				<-l.ready
				for b := range batches {
					l.sendBatch(b)
				}
			})
		}
		return
	}
	for range l.d.Workers {
		l.wg.Go(func() {
			<-l.ready
			for it := range l.ch {
				l.deliver(it)
			}
		})
	}
}

// init runs the integration's Init, retrying until it succeeds, fails
// permanently, or the lane is cancelled.
func (l *lane) init() {
	defer close(l.ready)
	in, ok := l.in.(Initializer)
	if !ok {
		return
	}
	for attempt := 1; ; attempt++ {
		err := l.call(func(ctx context.Context) error { return in.Init(ctx) })
		if err == nil {
			return
		}
		if IsPermanent(err) {
			l.broken = fmt.Errorf("opentrack: %s: init: %w", l.name, err)
			l.m.log.Error("opentrack: integration disabled", slog.String("integration", l.name), slog.Any("error", err))
			return
		}
		wait := l.backoff(attempt, err)
		l.m.log.Warn("opentrack: init failed, retrying", slog.String("integration", l.name), slog.Duration("wait", wait), slog.Any("error", err))
		select {
		case <-time.After(wait):
		case <-l.ctx.Done():
			l.broken = context.Cause(l.ctx)
			return
		}
	}
}

// hasRoom reports whether n more events fit. l.mu must be held.
func (l *lane) hasRoom(n int) bool {
	return l.next-l.pos+uint64(n) <= uint64(l.d.QueueSize)
}

// assign gives n events consecutive sequence numbers, returns the first, and
// unlocks l.mu, which reserve locked.
func (l *lane) assign(n int, now time.Time) uint64 {
	first := l.next
	for i := range uint64(n) {
		l.appended[(first+i)%uint64(len(l.appended))] = now.UnixNano()
	}
	l.next += uint64(n)
	l.mu.Unlock()
	l.accepted.Add(uint64(n))
	return first
}

// settle marks seq delivered or failed and advances the position.
func (l *lane) settle(seq uint64) {
	l.mu.Lock()
	size := uint64(len(l.settled))
	l.settled[seq%size] = true
	advanced := false
	for l.pos < l.next && l.settled[l.pos%size] {
		l.settled[l.pos%size] = false
		l.pos++
		advanced = true
	}
	if advanced {
		close(l.moved)
		l.moved = make(chan struct{})
	}
	l.mu.Unlock()
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
		done, moved := l.pos >= target, l.moved
		l.mu.Unlock()
		if done {
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
	queued := int(l.next - l.pos)
	pos := l.pos
	var age time.Duration
	if queued > 0 {
		age = now.Sub(time.Unix(0, l.appended[l.pos%uint64(len(l.appended))]))
	}
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
	}
}

// call runs fn with the call timeout, turning a panic into a permanent error.
func (l *lane) call(fn func(ctx context.Context) error) (err error) {
	ctx, cancel := context.WithTimeout(l.ctx, l.d.CallTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			l.panics.Add(1)
			err = Permanent(fmt.Errorf("opentrack: %s panicked: %v", l.name, r))
		}
	}()
	return fn(ctx)
}

// backoff returns the wait before attempt+1: full jitter over an exponential
// ceiling, raised to any Retry-After the error asks for.
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

// deliver sends one event to a non-batch integration, with retries, and
// settles it.
func (l *lane) deliver(it *item) {
	defer l.settle(it.seq)
	if l.broken != nil {
		l.m.fail(l, it, l.broken)
		return
	}
	it.first = time.Now()
	for {
		it.attempts++
		err := l.call(func(ctx context.Context) error { return Deliver(ctx, l.in, it.ev) })
		if err == nil {
			l.delivered.Add(1)
			return
		}
		if cause := context.Cause(l.ctx); cause != nil {
			err = errors.Join(cause, err)
		}
		wait, ok := l.retryWait(it, err)
		if !ok || !l.sleep(wait) {
			l.m.fail(l, it, err)
			return
		}
		l.retried.Add(1)
		l.m.log.Debug("opentrack: retrying", slog.String("integration", l.name), slog.Int("attempt", it.attempts), slog.Any("error", err))
	}
}

// collect groups queued events into batches and hands them to the senders.
func (l *lane) collect(out chan<- []*item) {
	defer close(out)
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
		out <- cur
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
	if l.broken != nil {
		for _, it := range items {
			l.m.fail(l, it, l.broken)
			l.settle(it.seq)
		}
		return
	}
	now := time.Now()
	for _, it := range items {
		it.first = now
	}
	events := make([]spec.Event, 0, len(items))
	for len(items) > 0 {
		events = events[:0]
		for _, it := range items {
			it.attempts++
			events = append(events, it.ev)
		}
		err := l.call(func(ctx context.Context) error { return l.batcher.Batch(ctx, events) })
		var be *BatchError
		if err != nil && !errors.As(err, &be) {
			be = &BatchError{}
			for i := range items {
				be.Fail(i, err)
			}
		}
		var retry []*item
		var retryErr error
		for i, it := range items {
			ierr := be.failedAt(i)
			if ierr == nil {
				l.delivered.Add(1)
				l.settle(it.seq)
				continue
			}
			if cause := context.Cause(l.ctx); cause != nil {
				ierr = errors.Join(cause, ierr)
			}
			if _, ok := l.retryWait(it, ierr); !ok {
				l.m.fail(l, it, ierr)
				l.settle(it.seq)
				continue
			}
			retry = append(retry, it)
			if retryErr == nil {
				retryErr = ierr
			}
		}
		items = retry
		if len(items) == 0 {
			return
		}
		wait, _ := l.retryWait(items[0], retryErr)
		if !l.sleep(wait) {
			for _, it := range items {
				l.m.fail(l, it, fmt.Errorf("%w: %w", context.Cause(l.ctx), retryErr))
				l.settle(it.seq)
			}
			return
		}
		l.retried.Add(uint64(len(items)))
		l.m.log.Debug("opentrack: retrying batch", slog.String("integration", l.name), slog.Int("events", len(items)), slog.Any("error", retryErr))
	}
}

func (e *BatchError) failedAt(i int) error {
	if e == nil {
		return nil
	}
	return e.Failed[i]
}
