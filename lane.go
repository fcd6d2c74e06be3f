package opentrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opentrackhq/opentrack/internal/retry"
	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

// A lane is one integration's delivery: it reads the integration's records
// from the queue, delivers them with retries, and settles each one.
//
// It holds at most a window of records in memory (Delivery.QueueSize events
// and Delivery.QueueBytes bytes); the rest waits in the queue, which for a
// durable queue is on disk.
//
// Per-integration calls keep each user's order: the events of one user
// (userId, else anonymousId) are delivered one after the other, in the order
// they were accepted, while different users are delivered in parallel by
// the workers. An event waiting to be retried waits on a timer, not in a
// worker, and holds back only its own user's later events.
//
// A Batcher gets each batch in accepted order; a batch's failed events are
// retried, after their wait, in a batch of their own.
type lane struct {
	m       *Manager
	in      Integration
	batcher Batcher
	name    string
	d       Delivery
	policy  retry.Policy
	reader  queue.Reader

	// ctx is cancelled when Shutdown's deadline passes: calls in flight and
	// retry waits end, and workers stop calling the integration.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// stop ends the feeder and the workers once the lane has drained;
	// feedStop ends the feeder alone, so that Shutdown with a durable queue
	// delivers what the lane holds and leaves the rest in the queue.
	stop         chan struct{}
	stopOnce     sync.Once
	feedStop     chan struct{}
	feedStopOnce sync.Once
	wg           sync.WaitGroup

	initDone chan struct{} // closed once Init has succeeded (or the lane stopped)

	mu            sync.Mutex
	ready         bool
	initErr       error                // the last Init error while not ready
	held          map[uint64]*item     // read from the queue and not settled
	heldBytes     int64                // their sizes
	users         map[string]*userQ    // per-user order, for non-batchers
	timers        map[*time.Timer]bool // retry waits
	timersStopped bool
	moved         chan struct{} // closed and replaced whenever a record settles
	room          chan struct{} // signalled when the window has room

	work      chan *userQ  // users with an event to deliver now
	batchIn   chan []*item // from the feeder to the batch collector
	batchSend chan []*item // from the collector (and retry timers) to the senders
	flushNow  chan struct{}
	// flushTo is the highest Seq a Flush (or Shutdown) waits for: the
	// collector sends a batch holding such a record at once.
	flushTo atomic.Uint64

	accepted, delivered, retried, failed, deduplicated, panics, redelivered atomic.Uint64

	tel *laneTelemetry // metrics, spans and the recent calls' outcome
	// retryLog rate-limits the warning that deliveries are being retried:
	// the unix nanoseconds of the last one, and the retries since.
	retryLog      atomic.Int64
	retriesUnsaid atomic.Int64
}

// retryWarnEvery is how often, at most, a lane warns that it retries.
const retryWarnEvery = 30 * time.Second

// noteRetry counts retries and warns about them at most every
// retryWarnEvery, with the last error, so that an outage shows in the logs
// without a line per event.
func (l *lane) noteRetry(n int, wait time.Duration, err error) {
	l.retried.Add(uint64(n))
	unsaid := l.retriesUnsaid.Add(int64(n))
	now := time.Now().UnixNano()
	last := l.retryLog.Load()
	if now-last < int64(retryWarnEvery) || !l.retryLog.CompareAndSwap(last, now) {
		return
	}
	l.retriesUnsaid.Add(-unsaid)
	l.m.log.Warn("opentrack: deliveries failing, retrying", slog.String("integration", l.name),
		slog.Int64("retries", unsaid), slog.Duration("nextWait", wait), slog.Any("lastError", err))
}

// item is a record held by the lane.
type item struct {
	rec      queue.Record
	attempts int
	first    time.Time // first attempt
	claimed  bool      // its outcome is decided; guarded by lane.mu
}

// userQ is one user's events waiting for a non-batch integration, oldest
// first. busy is set while one of them is being delivered or waits to be
// retried, so the user is in at most one place: the work channel, a worker
// or a timer.
type userQ struct {
	key   string
	items []*item
	busy  bool
}

func newLane(m *Manager, in Integration, d Delivery) *lane {
	l := &lane{
		m:        m,
		in:       in,
		name:     in.Name(),
		d:        d,
		policy:   retry.Policy{MaxAttempts: d.Retry.MaxAttempts, Initial: d.Retry.InitialBackoff, Max: d.Retry.MaxBackoff, MaxElapsed: d.Retry.MaxElapsedTime},
		stop:     make(chan struct{}),
		feedStop: make(chan struct{}),
		initDone: make(chan struct{}),
		held:     map[uint64]*item{},
		users:    map[string]*userQ{},
		timers:   map[*time.Timer]bool{},
		moved:    make(chan struct{}),
		room:     make(chan struct{}, 1),
		flushNow: make(chan struct{}, 1),
	}
	if d.Retry.Disable {
		l.policy.MaxAttempts = 1
	}
	l.batcher, _ = in.(Batcher)
	l.ctx, l.cancel = context.WithCancelCause(context.Background())
	return l
}

func (l *lane) start() {
	// The channels are made before feed starts: a queue with records at
	// start (a journal after a restart) has feed hand them on at once.
	if l.batches() {
		l.batchIn = make(chan []*item)
		l.batchSend = make(chan []*item)
	} else {
		l.work = make(chan *userQ, l.d.QueueSize)
	}
	l.wg.Go(l.init)
	l.wg.Go(l.feed)
	if l.batches() {
		l.wg.Go(l.collect)
		for range l.d.Workers {
			l.wg.Go(func() {
				for {
					select {
					case b := <-l.batchSend:
						l.sendBatch(b)
					case <-l.stop:
						return
					}
				}
			})
		}
		return
	}
	for range l.d.Workers {
		l.wg.Go(func() {
			for {
				select {
				case u := <-l.work:
					l.deliverNext(u)
				case <-l.stop:
					return
				}
			}
		})
	}
}

// init runs the integration's Init until it succeeds, for as long as the
// lane runs, with capped backoff: a destination that is down at start is no
// reason to lose events, which wait in the queue meanwhile.
func (l *lane) init() {
	defer close(l.initDone)
	in, ok := l.in.(Initializer)
	if !ok {
		l.setReady(nil)
		return
	}
	p := retry.Policy{Initial: l.d.Retry.InitialBackoff, Max: l.d.Retry.MaxBackoff}
	for attempts := 1; ; attempts++ {
		err := l.call(func(ctx context.Context) error { return in.Init(ctx) })
		if err == nil {
			l.setReady(nil)
			return
		}
		err = fmt.Errorf("opentrack: %s: init failed (attempt %d): %w", l.name, attempts, err)
		l.setReady(err)
		throttle, _ := RetryAfterDelay(err)
		wait := p.Backoff(attempts, throttle)
		l.m.log.Warn("opentrack: integration not ready; its events wait in its queue", slog.String("integration", l.name),
			slog.Duration("retryIn", wait), slog.Any("error", err))
		if !l.sleep(wait) {
			return
		}
		l.retried.Add(1)
	}
}

func (l *lane) setReady(err error) {
	l.mu.Lock()
	l.ready, l.initErr = err == nil, err
	l.mu.Unlock()
}

// feed reads the integration's records from the queue into the lane's
// window and hands them on.
func (l *lane) feed() {
	select {
	case <-l.initDone:
	case <-l.stop:
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.stop:
		case <-l.feedStop:
		}
		cancel()
	}()
	for {
		n := l.waitRoom(ctx)
		if n == 0 {
			return
		}
		recs, err := l.reader.Next(ctx, n)
		if err != nil {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, queue.ErrClosed) {
				l.m.log.Error("opentrack: reading the queue", slog.String("integration", l.name), slog.Any("error", err))
				if !l.sleep(time.Second) {
					return
				}
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		items := make([]*item, len(recs))
		l.mu.Lock()
		for i, r := range recs {
			it := &item{rec: r}
			items[i] = it
			l.held[r.Seq] = it
			l.heldBytes += heldSize(r)
			if r.Redelivered {
				l.redelivered.Add(1)
			}
		}
		if !l.batches() {
			for _, it := range items {
				l.dispatchLocked(it)
			}
		}
		l.mu.Unlock()
		if l.batches() {
			select {
			case l.batchIn <- items:
			case <-l.stop:
				return
			}
		}
	}
}

// batches reports whether the lane collects batches: for a Batcher whose
// batches may hold more than one event. A Batcher of one event at a time
// is fed like a per-call integration, in per-user order.
func (l *lane) batches() bool { return l.batcher != nil && l.d.Batch.MaxEvents > 1 }

// readChunk bounds one read, so that the byte window is passed by at most a
// chunk of events.
const readChunk = 256

// waitRoom waits until the window has room and returns how many records may
// be read, or 0 when the lane stops.
func (l *lane) waitRoom(ctx context.Context) int {
	for {
		l.mu.Lock()
		n := l.d.QueueSize - len(l.held)
		room := l.d.QueueBytes - l.heldBytes
		full := n <= 0 || room <= 0
		l.mu.Unlock()
		if !full {
			// However large the events, a read cannot take the window
			// much past its bytes: each holds about MaxEventMemory at
			// most (plus, from a durable queue, its JSON).
			return max(1, min(n, readChunk, int(room/spec.MaxEventMemory)))
		}
		select {
		case <-l.room:
		case <-ctx.Done():
			return 0
		}
	}
}

// heldSize is what a record costs the lane's window: the memory its event
// holds, as spec counts it, which a durable queue's Size (its JSON) is not.
func heldSize(r queue.Record) int64 {
	return int64(max(r.Size, r.Event.Fields().Size()))
}

// userKey is the key of an event's user for per-user order.
func userKey(e spec.Event) string {
	c := e.Fields()
	if c.UserID != "" {
		return "u:" + c.UserID
	}
	return "a:" + c.AnonymousID
}

// dispatchLocked queues it behind its user's earlier events. l.mu is held.
// The send cannot block: the channel holds as many users as the window
// holds events, and each user is in it at most once.
func (l *lane) dispatchLocked(it *item) {
	key := userKey(it.rec.Event)
	u := l.users[key]
	if u == nil {
		u = &userQ{key: key}
		l.users[key] = u
	}
	u.items = append(u.items, it)
	if !u.busy {
		u.busy = true
		l.work <- u
	}
}

// deliverNext makes one attempt at u's oldest event.
func (l *lane) deliverNext(u *userQ) {
	l.mu.Lock()
	if len(u.items) == 0 {
		l.mu.Unlock()
		return
	}
	it := u.items[0]
	l.mu.Unlock()
	if err := l.unusable(); err != nil {
		if l.m.durable {
			return // Shutdown's deadline: it stays in the queue for the next start
		}
		l.settle(it, err)
		l.advance(u)
		return
	}
	if it.attempts == 0 {
		it.first = time.Now()
	}
	it.attempts++
	call := l.tel.startEvent(it)
	err := l.call(func(ctx context.Context) error { return l.deliverOne(call.context(ctx), it.rec.Event) })
	if err == nil {
		call.end(nil, false)
		l.settle(it, nil)
		l.advance(u)
		return
	}
	wait, ok := l.retryWait(it, err)
	call.end(err, ok)
	if !ok {
		if l.m.durable && l.ctx.Err() != nil {
			return // cut off by Shutdown's deadline: it stays in the queue
		}
		l.settle(it, l.withCause(err))
		l.advance(u)
		return
	}
	l.noteRetry(1, wait, err)
	l.after(wait, func() { l.requeue(u) })
}

// deliverOne hands one event to the integration: by its per-call method, or
// as a batch of one to a Batcher whose batches hold one event (which keeps
// per-user order, as per-call delivery does).
func (l *lane) deliverOne(ctx context.Context, e spec.Event) error {
	if l.batcher != nil {
		return l.batchOutcome(l.batcher.Batch(ctx, []spec.Event{e}), 1)(0)
	}
	return Deliver(ctx, l.in, e)
}

// advance drops u's delivered or failed head and queues u again if it has
// more events.
func (l *lane) advance(u *userQ) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u.items[0] = nil
	u.items = u.items[1:]
	if len(u.items) == 0 {
		u.busy = false
		delete(l.users, u.key)
		return
	}
	l.work <- u
}

// requeue puts u back in line after a retry wait.
func (l *lane) requeue(u *userQ) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.work <- u
}

// after runs fn after d on a timer that stopTimers can stop.
func (l *lane) after(d time.Duration, fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timersStopped {
		return // Shutdown: the event stays held (reported, or kept by a durable queue)
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		l.mu.Lock()
		_, waiting := l.timers[t]
		delete(l.timers, t)
		l.mu.Unlock()
		if waiting {
			fn()
		}
	})
	l.timers[t] = true
}

// stopTimers stops every retry wait; used once Shutdown has given up on
// delivery. The events they held stay held: failPending reports them, or a
// durable queue keeps them.
func (l *lane) stopTimers() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timersStopped = true
	for t := range l.timers {
		t.Stop()
		delete(l.timers, t)
	}
}

// settle decides it's outcome once: delivered (err == nil), or failed and
// reported to OnFailure, and then frees its place in the queue, so that
// Flush returns only after OnFailure has seen it.
func (l *lane) settle(it *item, err error) {
	if !l.claim(it) {
		return
	}
	if err != nil {
		l.m.report(l, it, err)
	}
	if err == nil {
		l.delivered.Add(1)
	} else {
		l.failed.Add(1)
		l.tel.countFailure(err)
	}
	l.reader.Settle(it.rec.Seq)
	l.mu.Lock()
	delete(l.held, it.rec.Seq)
	l.heldBytes -= heldSize(it.rec)
	close(l.moved)
	l.moved = make(chan struct{})
	l.mu.Unlock()
	select {
	case l.room <- struct{}{}:
	default:
	}
}

// claim decides an item's outcome; it returns false if it was decided
// already (by Shutdown's sweep, or a worker).
func (l *lane) claim(it *item) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if it.claimed {
		return false
	}
	it.claimed = true
	return true
}

// retryWait decides whether another attempt is worth it after err, and how
// long to wait first.
func (l *lane) retryWait(it *item, err error) (time.Duration, bool) {
	if IsPermanent(err) || l.ctx.Err() != nil {
		return 0, false
	}
	throttle, _ := RetryAfterDelay(err)
	return l.policy.Next(it.attempts, time.Since(it.first), throttle)
}

// drained reports whether every record of the integration in the queue is
// settled.
func (l *lane) drained() bool { return l.reader.Stats().Unsettled == 0 }

// durableIdle is how long Shutdown goes on delivering from a durable queue
// after the last record settled: while the destination takes events the
// queue is drained, and once it stops (down, or retrying) what is left
// stays in the queue for the next start instead of holding Shutdown up to
// its deadline.
const durableIdle = time.Second

// stopFeeding ends the feeder: the lane reads nothing more from the queue.
func (l *lane) stopFeeding() { l.feedStopOnce.Do(func() { close(l.feedStop) }) }

// recheck bounds a wait on moved: records may also be settled by another
// collector reading a shared queue, which no local signal announces.
const recheck = 250 * time.Millisecond

// flushUpTo asks the batch collector to send, without waiting for the
// interval, every batch that holds a record with a Seq up to last.
func (l *lane) flushUpTo(last uint64) {
	if !l.batches() {
		return
	}
	for {
		old := l.flushTo.Load()
		if old >= last || l.flushTo.CompareAndSwap(old, last) {
			break
		}
	}
	select {
	case l.flushNow <- struct{}{}:
	default:
	}
}

// waitSettled waits until every record with a Seq up to last is settled.
func (l *lane) waitSettled(ctx context.Context, last uint64) error {
	l.flushUpTo(last)
	for {
		l.mu.Lock()
		moved := l.moved
		l.mu.Unlock()
		if l.reader.Stats().Cursor > last {
			return nil
		}
		t := time.NewTimer(recheck)
		select {
		case <-moved:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-l.m.done:
			t.Stop()
			if l.reader.Stats().Cursor > last {
				return nil
			}
			return ErrClosed
		}
		t.Stop()
	}
}

// waitDrained waits until every record of the integration is settled or,
// with a durable queue, until none has settled for durableIdle.
func (l *lane) waitDrained(ctx context.Context) error {
	lastMove := time.Now()
	for {
		l.mu.Lock()
		moved := l.moved
		l.mu.Unlock()
		if l.drained() {
			return nil
		}
		if l.m.durable && time.Since(lastMove) > durableIdle {
			return nil
		}
		l.flushUpTo(math.MaxUint64)
		t := time.NewTimer(recheck)
		select {
		case <-moved:
			lastMove = time.Now()
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

// halt stops the feeder and the workers; calls in flight finish first.
func (l *lane) halt() { l.stopOnce.Do(func() { close(l.stop) }) }

// failPending reports, with err, every record of the integration not yet
// settled, read or not, so that nothing accepted is left unaccounted for
// when Shutdown returns. Used for queues that are not durable only.
func (l *lane) failPending(err error) {
	l.mu.Lock()
	var todo []*item
	for _, it := range l.held {
		if !it.claimed {
			todo = append(todo, it)
		}
	}
	l.mu.Unlock()
	for _, it := range todo {
		l.settle(it, err)
	}
	// What the lane never read: take it from the queue without waiting.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for {
		recs, rerr := l.reader.Next(done, readChunk)
		if rerr != nil || len(recs) == 0 {
			return
		}
		for _, r := range recs {
			it := &item{rec: r}
			l.mu.Lock()
			l.held[r.Seq] = it
			l.heldBytes += heldSize(r)
			l.mu.Unlock()
			l.settle(it, err)
		}
	}
}

func (l *lane) stats(now time.Time) Stats {
	rs := l.reader.Stats()
	l.mu.Lock()
	ready, initErr := l.ready, l.initErr
	l.mu.Unlock()
	var age time.Duration
	if !rs.Oldest.IsZero() {
		age = max(now.Sub(rs.Oldest), 0)
	}
	return Stats{
		Integration:  l.name,
		Accepted:     l.accepted.Load(),
		Delivered:    l.delivered.Load(),
		Retried:      l.retried.Load(),
		Failed:       l.failed.Load(),
		Deduplicated: l.deduplicated.Load(),
		Redelivered:  l.redelivered.Load(),
		Panics:       l.panics.Load(),
		Queued:       rs.Unsettled,
		QueuedBytes:  rs.Bytes,
		OldestAge:    age,
		Cursor:       rs.Cursor,
		Ready:        ready,
		Err:          initErr,
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
			err = Permanent(&panicError{fmt.Sprintf("opentrack: %s panicked: %v", l.name, r)})
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

// sleep waits d, or returns false if the lane is cancelled or stopped first.
func (l *lane) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
		return false
	case <-l.stop:
		return false
	}
}

// withCause joins err with the reason the lane was cancelled, if it was, so
// that an event failed by Shutdown's deadline says so.
func (l *lane) withCause(err error) error {
	if cause := context.Cause(l.ctx); cause != nil {
		return errors.Join(cause, err)
	}
	return err
}

// unusable returns why the lane cannot call its integration any more:
// Shutdown's deadline has passed. Nil otherwise.
func (l *lane) unusable() error { return context.Cause(l.ctx) }

// collect groups records into batches, in accepted order, and hands them to
// the senders: when a batch is full (events or bytes), Interval after its
// first record, or at once when it holds a record a Flush waits for.
func (l *lane) collect() {
	b := l.d.Batch
	var (
		cur   []*item
		bytes int
		timer = time.NewTimer(time.Hour)
	)
	timer.Stop()
	send := func() bool {
		if len(cur) == 0 {
			return true
		}
		select {
		case l.batchSend <- cur:
		case <-l.stop:
			return false
		}
		cur, bytes = nil, 0
		timer.Stop()
		return true
	}
	for {
		select {
		case chunk := <-l.batchIn:
			for _, it := range chunk {
				if len(cur) == 0 {
					timer.Reset(b.Interval)
				}
				cur = append(cur, it)
				bytes += it.rec.Size
				if len(cur) >= b.MaxEvents || bytes >= b.MaxBytes {
					if !send() {
						return
					}
				}
			}
			if len(cur) > 0 && cur[0].rec.Seq <= l.flushTo.Load() && !send() {
				return
			}
		case <-timer.C:
			if !send() {
				return
			}
		case <-l.flushNow:
			if len(cur) > 0 && cur[0].rec.Seq <= l.flushTo.Load() && !send() {
				return
			}
		case <-l.stop:
			return
		}
	}
}

// sendBatch makes one attempt at a batch. Failed events that may be retried
// wait on a timer and go again as a batch of their own.
// settlement is an item of a batch and the outcome it settles with.
type settlement struct {
	it  *item
	err error
}

func (l *lane) sendBatch(items []*item) {
	if err := l.unusable(); err != nil {
		if l.m.durable {
			return // Shutdown's deadline: they stay in the queue for the next start
		}
		for _, it := range items {
			l.settle(it, err)
		}
		return
	}
	now := time.Now()
	events := make([]spec.Event, len(items))
	for i, it := range items {
		if it.attempts == 0 {
			it.first = now
		}
		it.attempts++
		events[i] = it.rec.Event
	}
	call := l.tel.startBatch(items)
	err := l.call(func(ctx context.Context) error { return l.batcher.Batch(call.context(ctx), events) })
	outcome := l.batchOutcome(err, len(items))
	var (
		again    []*item
		longest  time.Duration
		retryErr error
		toSettle []settlement // once the span has ended
	)
	for i, it := range items {
		ierr := outcome(i)
		if ierr == nil {
			toSettle = append(toSettle, settlement{it, nil})
			continue
		}
		wait, ok := l.retryWait(it, ierr)
		if !ok {
			if l.m.durable && l.ctx.Err() != nil {
				continue // cut off by Shutdown's deadline: it stays in the queue
			}
			toSettle = append(toSettle, settlement{it, l.withCause(ierr)})
			continue
		}
		again = append(again, it)
		if wait > longest {
			longest, retryErr = wait, ierr
		}
	}
	// The span ends before the events settle, so that whoever waits for
	// them (Flush) finds the call's span ended.
	call.endBatch(err, len(again))
	for _, st := range toSettle {
		l.settle(st.it, st.err)
	}
	if len(again) == 0 {
		return
	}
	l.noteRetry(len(again), longest, retryErr)
	l.after(longest, func() {
		select {
		case l.batchSend <- again:
		case <-l.stop:
		}
	})
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
