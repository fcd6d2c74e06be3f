package opentrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opentrackhq/opentrack/internal/recent"
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
	dedup     *recent.Set // the messageIds of the last DedupWindow events; nil when disabled
	unrouted  atomic.Uint64
	lastSeq   atomic.Uint64 // the highest Seq appended

	// flights are the messageIds of events being appended: a duplicate
	// that arrives meanwhile waits for the original's outcome instead of
	// being taken for an accepted replay.
	flightMu sync.Mutex
	flights  map[string]*flight

	// intake lets Shutdown wait for the Enqueues in progress: Enqueue
	// holds it for reading, Shutdown takes it for writing once closed is
	// set.
	intake sync.RWMutex
	closed atomic.Bool

	shutdownOnce sync.Once
	shutdownErr  error

	// hooks orders the integrations' Flush (from Manager.Flush) before
	// Shutdown's Flush and Close, so nothing is called after Close.
	hooks gate

	tel *telemetry

	done chan struct{} // closed when Shutdown has finished
}

// flight is the outcome of an Append that events are waiting on.
type flight struct {
	done chan struct{}
	err  error
}

// gate lets calls in until it is closed, and lets its closer wait for the
// calls inside, within a context.
type gate struct {
	mu     sync.Mutex
	closed bool
	active int
	idle   chan struct{} // closed when active drops to 0 after close
}

// enter reports whether the gate is open, counting the caller in.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.active++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// close shuts the gate and waits for the calls inside, or for ctx.
func (g *gate) close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	if g.active == 0 {
		g.mu.Unlock()
		return nil
	}
	idle := make(chan struct{})
	g.idle = idle
	g.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
	m := &Manager{log: opts.Logger, onFailure: opts.OnFailure, q: opts.Queue, done: make(chan struct{})}
	if m.log == nil {
		m.log = slog.Default()
	}
	if d, ok := m.q.(queue.Durable); ok {
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
		m.dedup = recent.New(n)
		if r, ok := m.q.(queue.MessageIDLister); ok {
			ids, err := r.RecentMessageIDs(n)
			if err != nil {
				m.log.Warn("opentrack: could not rebuild the dedup window from the queue", slog.Any("error", err))
			}
			for _, id := range ids {
				m.dedup.Add(id)
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
	if m.closed.Load() {
		return ErrClosed
	}
	if len(events) == 0 {
		return nil
	}
	for _, e := range events {
		if e == nil {
			return errors.New("opentrack: Enqueue of a nil event")
		}
	}
	tp := traceParent(ctx)
	var mine []string // messageIds this call reserved and has not landed
	defer func() {
		if mine != nil {
			m.land(mine, errAborted) // a panic: waiting duplicates must not wait forever
		}
	}()
again:
	mine = nil
	recs := make([]queue.Record, 0, len(events))
	var (
		dups     []int
		inFlight []*flight // appends of the same messageIds in progress
		unrouted int
		here     map[string]bool // the ids of this call, for a batch of many
	)
	for _, e := range events {
		targets := m.route(e)
		if len(targets) == 0 {
			unrouted++
			continue
		}
		if id := e.Fields().MessageID; m.dedup != nil && id != "" {
			if here == nil && len(events) > 1 {
				here = make(map[string]bool, len(events))
			}
			if here[id] { // twice in this call
				m.countDup(e, &dups)
				continue
			}
			dup, f := m.reserve(id)
			if f != nil {
				inFlight = append(inFlight, f)
				continue
			}
			if dup {
				m.countDup(e, &dups)
				continue
			}
			mine = append(mine, id)
			if here != nil {
				here[id] = true
			}
		}
		recs = append(recs, queue.Record{Event: e, Targets: targets, TraceParent: tp})
	}
	if len(inFlight) > 0 {
		// Another call is appending some of these events: release what
		// this call reserved, wait for that outcome without holding any
		// reservation (so two calls cannot wait on each other), and start
		// over: what it accepted is then a duplicate, what it failed to
		// append is this call's to append.
		m.land(mine, errRetryReservation)
		mine = nil
		for _, f := range inFlight {
			select {
			case <-f.done:
			case <-ctx.Done():
				return m.enqueueError(ctx.Err())
			}
		}
		goto again
	}
	var err error
	if len(recs) > 0 {
		err = m.q.Append(ctx, recs)
		if err == nil {
			// Before the ids enter the dedup window: a duplicate that
			// returns nil must be covered by a Flush that follows it.
			last := recs[len(recs)-1].Seq
			for {
				old := m.lastSeq.Load()
				if old >= last || m.lastSeq.CompareAndSwap(old, last) {
					break
				}
			}
			for _, r := range recs {
				m.count(r.Event, r.Targets)
			}
		}
	}
	m.land(mine, err)
	mine = nil
	if err != nil {
		return m.enqueueError(err)
	}
	m.unrouted.Add(uint64(unrouted))
	for i, n := range dups {
		if n > 0 {
			m.lanes[i].deduplicated.Add(uint64(n))
		}
	}
	return nil
}

var (
	errRetryReservation = errors.New("opentrack: reservation released")
	errAborted          = errors.New("opentrack: enqueue aborted")
)

// reserve looks id up: dup when it was accepted within the dedup window, a
// flight when an append of it is in progress, and neither when it is new,
// in which case it is now in flight for the caller, who must land it.
func (m *Manager) reserve(id string) (dup bool, f *flight) {
	m.flightMu.Lock()
	defer m.flightMu.Unlock()
	if f := m.flights[id]; f != nil {
		return false, f
	}
	if m.dedup.Has(id) {
		return true, nil
	}
	if m.flights == nil {
		m.flights = make(map[string]*flight)
	}
	m.flights[id] = &flight{done: make(chan struct{})}
	return false, nil
}

// land ends the flights of ids with the outcome of their append: accepted
// ids enter the dedup window; waiting duplicates learn the outcome.
func (m *Manager) land(ids []string, err error) {
	if len(ids) == 0 {
		return
	}
	m.flightMu.Lock()
	defer m.flightMu.Unlock()
	for _, id := range ids {
		if err == nil {
			m.dedup.Add(id)
		}
		if f := m.flights[id]; f != nil {
			f.err = err
			close(f.done)
			delete(m.flights, id)
		}
	}
}

// enqueueError maps a queue's error to the Manager's.
func (m *Manager) enqueueError(err error) error {
	switch {
	case err == queue.ErrFull: // the common case, without allocating
		return errQueueFull
	case errors.Is(err, ErrQueueFull), errors.Is(err, ErrTooLarge), errors.Is(err, ErrClosed):
		return err
	case errors.Is(err, queue.ErrFull):
		return fmt.Errorf("%w: %w", ErrQueueFull, err)
	case errors.Is(err, queue.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, queue.ErrClosed):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return fmt.Errorf("opentrack: enqueue: %w", err)
}

// errQueueFull is what Enqueue returns for the queue's own ErrFull.
var errQueueFull = fmt.Errorf("%w: %w", ErrQueueFull, queue.ErrFull)

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
// or given up on by every integration (with the journal, those accepted
// before a restart too), then calls Flush on the integrations
// that implement [Flusher] and syncs the queue. Batches being collected are
// sent at once rather than at their interval. It returns ctx's error if ctx
// ends first, and the Flusher errors joined. After Shutdown has begun it
// returns [ErrClosed]: Shutdown flushes by itself.
func (m *Manager) Flush(ctx context.Context) error {
	if m.Closed() {
		return ErrClosed
	}
	last := m.lastSeq.Load()
	if e, ok := m.q.(queue.Ender); ok {
		last = max(last, e.End())
	}
	for _, l := range m.lanes {
		if err := l.waitSettled(ctx, last); err != nil {
			return err
		}
	}
	if !m.hooks.enter() {
		return ErrClosed
	}
	defer m.hooks.leave()
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
// they succeed or ctx ends. With a durable queue it stops delivering once no
// event has been delivered for a second (a destination down, or retrying):
// what is left waits in the queue for the next start, or for another
// collector, instead of holding Shutdown up to its deadline.
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
	m.closed.Store(true)
	// Wait for the Enqueues in progress: what they append is delivered too.
	m.intake.Lock()
	m.intake.Unlock() //nolint:staticcheck // an empty critical section: a barrier

	var errs []error
	drained := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, l := range m.lanes {
			wg.Go(func() { _ = l.waitDrained(ctx) })
		}
		wg.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
		// Cancel calls in flight and retry waits; with the memory queue
		// what they hold is reported below, with a durable one it stays.
		for _, l := range m.lanes {
			l.cancel(fmt.Errorf("%w before delivery: %w", ErrClosed, context.Cause(ctx)))
			l.stopTimers()
		}
	} else {
		// Delivered (or, with a durable queue, delivering no more): what
		// may still run is an Init that never succeeded, or a call whose
		// event then stays in the durable queue.
		// Calls in flight are not cancelled: they finish (or time out,
		// or ctx ends) and settle what they deliver.
		for _, l := range m.lanes {
			l.stopFeeding()
			l.stopTimers()
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
	case <-ctx.Done():
		for _, l := range m.lanes {
			l.cancel(fmt.Errorf("%w before delivery: %w", ErrClosed, context.Cause(ctx)))
			l.stopTimers()
		}
		select {
		case <-stopped:
		case <-time.After(closeGrace):
			m.log.Error("opentrack: integration calls still running after the shutdown deadline; Close may run alongside them")
		}
	}
	for _, l := range m.lanes {
		switch {
		case m.durable:
			if n := l.reader.Stats().Unsettled; n > 0 {
				m.log.Warn("opentrack: events left in the queue for the next start",
					slog.String("integration", l.name), slog.Int("events", n))
			}
		case ctx.Err() != nil:
			// Nothing accepted leaves Shutdown unaccounted for.
			l.failPending(context.Cause(l.ctx))
		}
	}

	cctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), closeGrace)
		defer cancel()
	}
	if err := m.hooks.close(cctx); err != nil {
		m.log.Error("opentrack: an integration's Flush, called by Manager.Flush, is still running; closing anyway", slog.Any("error", err))
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
	close(m.done)
	return errors.Join(errs...)
}

// closeGrace is how long Shutdown waits for integrations after its context
// has ended.
const closeGrace = 5 * time.Second

// Stats returns the delivery counters of every integration, in the order of
// Options.Integrations. It reads them without stopping the collector, so
// under load a snapshot may be off by the events moving at that instant; at
// rest (after Flush), with the memory queue, Accepted = Delivered + Failed +
// Queued for each integration. With a durable queue, Queued also counts the
// events found in the queue at start.
func (m *Manager) Stats() []Stats {
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
func (m *Manager) Closed() bool { return m.closed.Load() }

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
