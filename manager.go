package opentrack

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

// Manager accepts events and delivers each to every integration it targets,
// asynchronously. Each integration has its own workers and its own part of
// the queue, so a slow or failing destination fills only its own part.
//
// Accepted events wait in a [queue.Queue] until every target has settled
// them (delivered them, or reported them to [Options.OnFailure]). By default
// the queue is memory ([queue.Memory]): [Manager.Shutdown] drains it, and a
// crash loses what it holds. With a durable queue (Options.Queue, such as
// the journal package's) a 2xx means the events are on disk, and after a
// restart each integration resumes where it was.
//
// A Manager is safe for concurrent use. Create it with [New].
type Manager struct {
	log       *slog.Logger
	onFailure func(Failure)
	lanes     []*lane
	names     []string // the lanes' names, shared by records that target all
	q         queue.Queue
	durable   bool
	dedup     *dedup // nil when disabled
	unrouted  atomic.Uint64
	lastSeq   atomic.Uint64 // the highest Seq appended

	// stats makes a Stats snapshot consistent: Enqueue (append and count)
	// and settling (count and settle) hold it for reading, Stats for
	// writing.
	stats sync.RWMutex

	// intake guards closed: Enqueue holds it for reading, Shutdown for
	// writing when it stops intake.
	intake sync.RWMutex
	closed bool

	shutdownOnce sync.Once
	shutdownErr  error

	// hooks orders the integrations' Flush (from Manager.Flush) before
	// Shutdown's Flush and Close, so nothing is called after Close.
	hooks       sync.RWMutex
	hooksClosed bool

	tel *telemetry
}

// durableQueue is implemented by queues whose Append survives a crash. The
// Manager then leaves undelivered events in the queue at Shutdown instead of
// reporting them, and retries for hours by default.
type durableQueue interface {
	Durable() bool
}

// recentIDs is implemented by durable queues that can list the messageIds of
// their newest records, to rebuild the dedup window after a restart.
type recentIDs interface {
	RecentMessageIDs(n int) ([]string, error)
}

// New returns a Manager delivering to opts.Integrations and starts their
// workers. It returns a [*ConfigError] for an invalid option, a nil
// integration (typed nils included, such as a nil *jsonl.Integration) or a
// duplicate name, and the queue's error if it cannot open readers.
func New(opts Options) (*Manager, error) {
	if err := opts.Delivery.validate("Delivery"); err != nil {
		return nil, err
	}
	if opts.DedupWindow < 0 {
		return nil, &ConfigError{"DedupWindow", "must not be negative"}
	}
	if len(opts.Integrations) > maxIntegrations {
		return nil, &ConfigError{"Integrations", fmt.Sprintf("at most %d integrations are supported", maxIntegrations)}
	}
	m := &Manager{log: opts.Logger, onFailure: opts.OnFailure, q: opts.Queue}
	if m.log == nil {
		m.log = slog.Default()
	}
	if d, ok := m.q.(durableQueue); ok {
		m.durable = d.Durable()
	}
	seen := map[string]bool{}
	deliveries := make([]Delivery, len(opts.Integrations))
	for i, in := range opts.Integrations {
		field := fmt.Sprintf("Integrations[%d]", i)
		if isNil(in) {
			return nil, &ConfigError{field, fmt.Sprintf("is a nil %T; leave out integrations that are not configured", in)}
		}
		name := in.Name()
		if name == "" {
			return nil, &ConfigError{field, "has an empty Name"}
		}
		if seen[name] {
			return nil, &ConfigError{field, fmt.Sprintf("duplicate Name %q", name)}
		}
		seen[name] = true
		var own Delivery
		if t, ok := in.(DeliveryTuner); ok {
			own = t.Delivery()
			if err := own.validate(name + ".Delivery()"); err != nil {
				return nil, err
			}
		}
		deliveries[i] = opts.Delivery.merged(own, m.durable)
		m.names = append(m.names, name)
	}
	if m.q == nil {
		limits := make(map[string]queue.Limit, len(m.names))
		for i, name := range m.names {
			limits[name] = queue.Limit{Events: deliveries[i].QueueSize, Bytes: deliveries[i].QueueBytes}
		}
		m.q = queue.NewMemory(&queue.MemoryOptions{Limits: limits})
	}
	readers, err := m.q.Open(m.names)
	if err != nil {
		return nil, fmt.Errorf("opentrack: opening the queue: %w", err)
	}
	if !opts.DisableDedup {
		n := opts.DedupWindow
		if n == 0 {
			n = DefaultDedupWindow
		}
		m.dedup = newDedup(n)
		if r, ok := m.q.(recentIDs); ok {
			ids, err := r.RecentMessageIDs(n)
			if err != nil {
				m.log.Warn("opentrack: could not rebuild the dedup window from the queue", slog.Any("error", err))
			}
			for _, id := range ids {
				m.dedup.add(id)
			}
		}
	}
	for i, in := range opts.Integrations {
		l := newLane(m, in, deliveries[i])
		l.reader = readers[i]
		m.lanes = append(m.lanes, l)
	}
	m.tel = newTelemetry(m, opts)
	for _, l := range m.lanes {
		l.start()
	}
	return m, nil
}

// isNil reports whether in is nil or an interface holding a nil pointer,
// map, slice, func or channel.
func isNil(in Integration) bool {
	if in == nil {
		return true
	}
	switch v := reflect.ValueOf(in); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// maxIntegrations bounds Options.Integrations.
const maxIntegrations = 64

// Enqueue accepts events for delivery to every integration each one targets,
// by its "integrations" object (see [Event targeting] in the package doc).
// It returns once the queue holds them as safely as it promises: in memory,
// or fsynced for a durable queue. ctx bounds that wait.
//
// Enqueue is all or nothing: if a target's part of the queue lacks room it
// returns [ErrQueueFull] and enqueues none of them; if the events can never
// fit, [ErrTooLarge]. After Shutdown it returns [ErrClosed]. An event whose
// messageId was accepted within the dedup window is counted as deduplicated
// and not enqueued again; that is not an error. An event that targets no
// integration is counted (see [Manager.Unrouted]) and dropped.
func (m *Manager) Enqueue(ctx context.Context, events ...spec.Event) error {
	m.intake.RLock()
	defer m.intake.RUnlock()
	if m.closed {
		return ErrClosed
	}
	if len(events) == 0 {
		return nil
	}
	recs := make([]queue.Record, 0, len(events))
	tp := traceParent(ctx)
	var dups []int
	var ids []uint64 // dedup hashes reserved for recs, released if Append fails
	for _, e := range events {
		targets := m.route(e)
		if len(targets) == 0 {
			m.unrouted.Add(1)
			continue
		}
		if m.dedup != nil {
			if h, ok := m.dedup.reserve(e.Fields().MessageID); ok {
				ids = append(ids, h)
			} else {
				m.countDup(e, &dups)
				continue
			}
		}
		recs = append(recs, queue.Record{Event: e, Targets: targets, TraceParent: tp})
	}
	for i, n := range dups {
		if n > 0 {
			m.lanes[i].deduplicated.Add(uint64(n))
		}
	}
	if len(recs) == 0 {
		return nil
	}
	m.stats.RLock()
	err := m.q.Append(ctx, recs)
	if err == nil {
		for _, r := range recs {
			m.count(r.Event, r.Targets)
		}
	}
	m.stats.RUnlock()
	if err != nil {
		if m.dedup != nil {
			m.dedup.release(ids)
		}
		switch {
		case errors.Is(err, queue.ErrFull):
			return fmt.Errorf("%w: %w", ErrQueueFull, err)
		case errors.Is(err, queue.ErrTooLarge):
			return fmt.Errorf("%w: %w", ErrTooLarge, err)
		case errors.Is(err, queue.ErrClosed):
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return fmt.Errorf("opentrack: enqueue: %w", err)
	}
	last := recs[len(recs)-1].Seq
	for {
		old := m.lastSeq.Load()
		if old >= last || m.lastSeq.CompareAndSwap(old, last) {
			break
		}
	}
	return nil
}

// route returns the names of the integrations e targets.
func (m *Manager) route(e spec.Event) (targets []string) {
	all := true
	for _, l := range m.lanes {
		if !targets1(e, l.name) {
			all = false
			break
		}
	}
	if all {
		return m.names // shared, read-only
	}
	for _, l := range m.lanes {
		if targets1(e, l.name) {
			targets = append(targets, l.name)
		}
	}
	return targets
}

func (m *Manager) countDup(e spec.Event, dups *[]int) {
	if *dups == nil {
		*dups = make([]int, len(m.lanes))
	}
	for i, l := range m.lanes {
		if targets1(e, l.name) {
			(*dups)[i]++
		}
	}
}

// count adds an appended event to its targets' accepted counters.
func (m *Manager) count(e spec.Event, targets []string) {
	if len(targets) == len(m.lanes) {
		for _, l := range m.lanes {
			l.accepted.Add(1)
		}
		return
	}
	for _, l := range m.lanes {
		for _, t := range targets {
			if t == l.name {
				l.accepted.Add(1)
				break
			}
		}
	}
}

// targets1 reports whether e goes to the integration called name, by e's
// "integrations" object as Segment reads it: the integration's own key if
// present, else "All" (or "all", which analytics-go sends), else true. A
// key's value is false to disable, and true or an options object to enable.
// Keys are case-sensitive.
func targets1(e spec.Event, name string) bool {
	ints := e.Fields().Integrations
	if len(ints) == 0 {
		return true
	}
	if v, ok := ints[name]; ok {
		return enabled(v)
	}
	if v, ok := ints["All"]; ok {
		return enabled(v)
	}
	if v, ok := ints["all"]; ok { // analytics-go's DisableAll sends "all"
		return enabled(v)
	}
	return true
}

func enabled(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case nil:
		return false
	default:
		return true // an options object
	}
}

// Flush waits until every event enqueued before the call has been delivered
// or given up on by every integration, then calls Flush on the integrations
// that implement [Flusher] and syncs the queue. Batches being collected are
// sent at once rather than at their interval. It returns ctx's error if ctx
// ends first, and the Flusher errors joined. After Shutdown has begun it
// returns [ErrClosed]: Shutdown flushes by itself.
func (m *Manager) Flush(ctx context.Context) error {
	if m.Closed() {
		return ErrClosed
	}
	last := m.lastSeq.Load()
	for _, l := range m.lanes {
		if err := l.waitSettled(ctx, last); err != nil {
			return err
		}
	}
	m.hooks.RLock()
	defer m.hooks.RUnlock()
	if m.hooksClosed {
		return ErrClosed
	}
	var errs []error
	for _, l := range m.lanes {
		if f, ok := l.in.(Flusher); ok {
			if err := l.hook("Flush", func() error { return f.Flush(ctx) }); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := m.q.Sync(ctx); err != nil {
		errs = append(errs, fmt.Errorf("opentrack: syncing the queue: %w", err))
	}
	return errors.Join(errs...)
}

// Shutdown stops intake (Enqueue returns ErrClosed from then on), delivers
// everything already accepted, flushes, closes the integrations that
// implement [Closer], and closes the queue. Retries in progress go on until
// they succeed or ctx ends.
//
// If ctx ends first, deliveries in flight are cancelled. With the memory
// queue every event not delivered then goes to [Options.OnFailure]; with a
// durable queue it stays in the queue, to be delivered after the next start.
// Shutdown then still closes the integrations (allowing them a few seconds)
// and returns ctx's error. Only the first call does the work; later calls
// return its result.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.shutdownOnce.Do(func() { m.shutdownErr = m.shutdown(ctx) })
	return m.shutdownErr
}

func (m *Manager) shutdown(ctx context.Context) error {
	m.intake.Lock()
	m.closed = true
	m.intake.Unlock()

	var errs []error
	drained := make(chan struct{})
	go func() {
		for _, l := range m.lanes {
			_ = l.waitDrained(ctx)
		}
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
		// Cancel calls in flight and retry waits; workers then settle
		// what they hold without calling the integration again.
		for _, l := range m.lanes {
			l.cancel(fmt.Errorf("%w before delivery: %w", ErrClosed, context.Cause(ctx)))
			l.hurryTimers()
		}
	}
	for _, l := range m.lanes {
		l.halt()
	}
	stopped := make(chan struct{})
	go func() {
		for _, l := range m.lanes {
			l.wg.Wait()
		}
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(closeGrace):
		m.log.Error("opentrack: integration calls still running after the shutdown deadline; Close may run alongside them")
	}
	if ctx.Err() != nil {
		for _, l := range m.lanes {
			if m.durable {
				if n := l.reader.Stats().Unsettled; n > 0 {
					m.log.Warn("opentrack: events left in the queue for the next start",
						slog.String("integration", l.name), slog.Int("events", n))
				}
				continue
			}
			// Nothing accepted leaves Shutdown unaccounted for.
			l.failPending(context.Cause(l.ctx))
		}
	}

	m.hooks.Lock()
	m.hooksClosed = true
	m.hooks.Unlock()
	cctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), closeGrace)
		defer cancel()
	}
	for _, l := range m.lanes {
		if f, ok := l.in.(Flusher); ok {
			if err := l.hook("Flush", func() error { return f.Flush(cctx) }); err != nil {
				errs = append(errs, err)
			}
		}
		if c, ok := l.in.(Closer); ok {
			if err := l.hook("Close", func() error { return c.Close(cctx) }); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := m.q.Close(); err != nil {
		errs = append(errs, fmt.Errorf("opentrack: closing the queue: %w", err))
	}
	return errors.Join(errs...)
}

// closeGrace is how long Shutdown waits for integrations after its context
// has ended.
const closeGrace = 5 * time.Second

// Stats returns the delivery counters of every integration, in the order of
// Options.Integrations. The snapshot is consistent: with the memory queue,
// Accepted = Delivered + Failed + Queued for each integration.
func (m *Manager) Stats() []Stats {
	m.stats.Lock()
	defer m.stats.Unlock()
	out := make([]Stats, 0, len(m.lanes))
	now := time.Now()
	for _, l := range m.lanes {
		out = append(out, l.stats(now))
	}
	return out
}

// Unrouted counts the events accepted for no integration: their
// "integrations" object disabled every one, or the Manager has none.
func (m *Manager) Unrouted() uint64 { return m.unrouted.Load() }

// Closed reports whether Shutdown has been called.
func (m *Manager) Closed() bool {
	m.intake.RLock()
	defer m.intake.RUnlock()
	return m.closed
}

// report counts, logs and hands to OnFailure an event given up on. A
// panicking OnFailure is recovered and logged, so one bad dead-letter sink
// cannot take the process and every queued event down with it.
func (m *Manager) report(l *lane, it *item, err error) {
	m.log.Warn("opentrack: event not delivered",
		slog.String("integration", l.name),
		slog.String("messageId", it.rec.Event.Fields().MessageID),
		slog.String("type", string(it.rec.Event.Fields().Type)),
		slog.Int("attempts", it.attempts),
		slog.Any("error", err))
	if m.onFailure == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("opentrack: OnFailure panicked", slog.String("integration", l.name),
				slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
		}
	}()
	m.onFailure(Failure{Integration: l.name, Event: it.rec.Event, Err: err, Attempts: it.attempts})
}

// dedup remembers the last n messageIds accepted, as 64-bit hashes: a
// tenth of the memory of the ids themselves, with a chance of a false match
// of about n/2⁶⁴ per event.
type dedup struct {
	mu   sync.Mutex
	seed maphash.Seed
	ids  map[uint64]int // hash → its slot in ring
	ring []uint64
	next int
}

func newDedup(n int) *dedup {
	return &dedup{seed: maphash.MakeSeed(), ids: make(map[uint64]int, n), ring: make([]uint64, n)}
}

// hash never returns 0, which marks an empty ring slot.
func (d *dedup) hash(id string) uint64 { return maphash.String(d.seed, id) | 1 }

func (d *dedup) hasLocked(h uint64) bool {
	_, ok := d.ids[h]
	return ok
}

// reserve adds id and returns its hash, or false if it is there already
// (accepted, or being accepted by a concurrent request). An empty id is
// never a duplicate.
func (d *dedup) reserve(id string) (uint64, bool) {
	if id == "" {
		return 0, true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.hash(id)
	if d.hasLocked(h) {
		return 0, false
	}
	d.putLocked(h)
	return h, true
}

func (d *dedup) add(id string) {
	if id == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if h := d.hash(id); !d.hasLocked(h) {
		d.putLocked(h)
	}
}

func (d *dedup) putLocked(h uint64) {
	if old := d.ring[d.next]; old != 0 && d.ids[old] == d.next {
		delete(d.ids, old)
	}
	d.ring[d.next] = h
	d.ids[h] = d.next
	d.next = (d.next + 1) % len(d.ring)
}

// release forgets hashes reserved for events that were not accepted after
// all, so that the sender's retry is not taken for a replay.
func (d *dedup) release(hs []uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, h := range hs {
		if h == 0 {
			continue
		}
		if slot, ok := d.ids[h]; ok {
			delete(d.ids, h)
			d.ring[slot] = 0
		}
	}
}
