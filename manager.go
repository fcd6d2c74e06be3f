package opentrack

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/opentrackhq/opentrack/spec"
)

// Manager accepts events and delivers each to every integration it targets,
// asynchronously. Each integration has its own bounded queue and workers, so
// a slow or failing destination fills only its own queue.
//
// Today the queue is memory: an accepted event lives in memory until every
// target has delivered it or given up on it. [Manager.Shutdown] drains the
// queues; a crash loses what they hold.
//
// A Manager is safe for concurrent use. Create it with [New].
type Manager struct {
	log       *slog.Logger
	onFailure func(Failure)
	lanes     []*lane
	dedup     *dedup // nil when disabled

	// intake guards closed and the queues' channels: Enqueue holds it for
	// reading while it appends, Shutdown for writing while it closes them.
	intake sync.RWMutex
	closed bool

	shutdownOnce sync.Once
	shutdownErr  error

	// hooks orders the integrations' Flush (from Manager.Flush) before
	// Shutdown's Flush and Close, so nothing is called after Close.
	hooks       sync.RWMutex
	hooksClosed bool
}

// maxIntegrations bounds Options.Integrations: an event's targets are a
// 64-bit mask.
const maxIntegrations = 64

// New returns a Manager delivering to opts.Integrations and starts their
// workers. It returns a [*ConfigError] for an invalid option or a duplicate
// integration name.
func New(opts Options) (*Manager, error) {
	if err := opts.Delivery.validate("Delivery"); err != nil {
		return nil, err
	}
	if opts.DedupWindow < 0 {
		return nil, &ConfigError{"DedupWindow", "must not be negative"}
	}
	m := &Manager{log: opts.Logger, onFailure: opts.OnFailure}
	if m.log == nil {
		m.log = slog.Default()
	}
	if !opts.DisableDedup {
		n := opts.DedupWindow
		if n == 0 {
			n = DefaultDedupWindow
		}
		m.dedup = newDedup(n)
	}
	if len(opts.Integrations) > maxIntegrations {
		return nil, &ConfigError{"Integrations", fmt.Sprintf("at most %d integrations are supported", maxIntegrations)}
	}
	seen := map[string]bool{}
	for i, in := range opts.Integrations {
		if in == nil {
			return nil, &ConfigError{fmt.Sprintf("Integrations[%d]", i), "is nil"}
		}
		name := in.Name()
		if name == "" {
			return nil, &ConfigError{fmt.Sprintf("Integrations[%d]", i), "has an empty Name"}
		}
		if seen[name] {
			return nil, &ConfigError{fmt.Sprintf("Integrations[%d]", i), fmt.Sprintf("duplicate Name %q", name)}
		}
		seen[name] = true
		d := opts.Delivery
		if t, ok := in.(DeliveryTuner); ok {
			own := t.Delivery()
			if err := own.validate(name + ".Delivery()"); err != nil {
				return nil, err
			}
			d = own.merged(opts.Delivery)
		} else {
			d = d.merged(Delivery{})
		}
		m.lanes = append(m.lanes, newLane(m, in, d))
	}
	for _, l := range m.lanes {
		l.start()
	}
	return m, nil
}

// Enqueue accepts events for delivery to every integration each one targets,
// by its "integrations" object (see [Targets]). It returns once the events
// are safe in the queues, in memory today; ctx is for a future durable
// journal and is not used yet.
//
// Enqueue is all or nothing: if any target queue lacks room it returns
// [ErrQueueFull] and enqueues none of them; if the events can never fit in a
// target queue, [ErrTooLarge]. After Shutdown it returns [ErrClosed]. An
// event whose messageId was accepted within the dedup window is counted as
// deduplicated and not enqueued again; that is not an error.
func (m *Manager) Enqueue(ctx context.Context, events ...spec.Event) error {
	_ = ctx
	m.intake.RLock()
	defer m.intake.RUnlock()
	if m.closed {
		return ErrClosed
	}
	if len(m.lanes) == 0 || len(events) == 0 {
		return nil
	}
	if m.dedup != nil {
		m.dedup.mu.Lock()
		defer m.dedup.mu.Unlock()
	}
	// Work out each event's targets and how much room each lane needs.
	var buf [16]uint64
	targets := buf[:0]
	need := make([]int, len(m.lanes))
	dups := make([]int, len(m.lanes))
	var inRequest map[string]bool
	for _, e := range events {
		var mask uint64
		id := e.Fields().MessageID
		dup := false
		if m.dedup != nil && id != "" {
			if m.dedup.seen(id) || inRequest[id] {
				dup = true
			} else if len(events) > 1 {
				if inRequest == nil {
					inRequest = make(map[string]bool, len(events))
				}
				inRequest[id] = true
			}
		}
		for i, l := range m.lanes {
			if !Targets(e, l.name) {
				continue
			}
			if dup {
				dups[i]++
				continue
			}
			mask |= 1 << i
			need[i]++
		}
		targets = append(targets, mask)
	}
	for i, l := range m.lanes {
		if need[i] > l.d.QueueSize {
			return ErrTooLarge
		}
	}
	if err := m.reserve(need); err != nil {
		return err
	}
	now := time.Now()
	for i, l := range m.lanes {
		if dups[i] > 0 {
			l.deduplicated.Add(uint64(dups[i]))
		}
		if need[i] == 0 {
			continue
		}
		items := make([]*item, 0, need[i])
		for j, e := range events {
			if targets[j]&(1<<i) != 0 {
				items = append(items, &item{ev: e, size: eventSize(e), at: now})
			}
		}
		l.appendLocked(items)
	}
	if m.dedup != nil {
		for j, e := range events {
			if targets[j] != 0 {
				m.dedup.add(e.Fields().MessageID)
			}
		}
	}
	return nil
}

// reserve checks every lane with need[i] > 0 for room, with all their locks
// held, so that the events go into all their queues or none. The locks are
// released by appendLocked (on success) or here (on failure).
func (m *Manager) reserve(need []int) error {
	for i, l := range m.lanes {
		if need[i] == 0 {
			continue
		}
		l.mu.Lock()
		if !l.hasRoom(need[i]) {
			for k := 0; k <= i; k++ {
				if need[k] > 0 {
					m.lanes[k].mu.Unlock()
				}
			}
			return ErrQueueFull
		}
	}
	return nil
}

// Targets reports whether e goes to the integration called name, by e's
// "integrations" object as Segment reads it: the integration's own key if
// present, else "All" (or "all", which analytics-go sends), else true. A key's value is false to disable, and true
// or an options object to enable. Keys are case-sensitive.
func Targets(e spec.Event, name string) bool {
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

func eventSize(e spec.Event) int {
	if n := e.Fields().Size(); n > 0 {
		return n
	}
	return 512
}

// Flush waits until every event enqueued before the call has been delivered
// or given up on by every integration, then calls Flush on the integrations
// that implement [Flusher]. Batches being collected are sent at once rather
// than at their interval. It returns ctx's error if ctx ends first, and the
// Flusher errors joined. After Shutdown has begun it returns [ErrClosed]:
// Shutdown flushes by itself.
func (m *Manager) Flush(ctx context.Context) error {
	if m.Closed() {
		return ErrClosed
	}
	for _, l := range m.lanes {
		if err := l.waitSettled(ctx); err != nil {
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
	return errors.Join(errs...)
}

// Shutdown stops intake (Enqueue returns ErrClosed from then on), delivers
// everything already accepted, flushes, and closes the integrations that
// implement [Closer]. Retries still in progress go on until they succeed or
// ctx ends.
//
// If ctx ends first, deliveries in flight are cancelled and every event not
// delivered goes to [Options.OnFailure]; Shutdown then still closes the
// integrations (allowing them a few seconds) and returns ctx's error. Only
// the first call does the work; later calls return its result.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.shutdownOnce.Do(func() { m.shutdownErr = m.shutdown(ctx) })
	return m.shutdownErr
}

func (m *Manager) shutdown(ctx context.Context) error {
	m.intake.Lock()
	m.closed = true
	for _, l := range m.lanes {
		close(l.ch)
	}
	m.intake.Unlock()

	var errs []error
	drained := make(chan struct{})
	go func() {
		for _, l := range m.lanes {
			l.wg.Wait()
		}
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
		// Cancel calls in flight and retry waits; workers then fail what
		// they hold without calling the integration again.
		for _, l := range m.lanes {
			l.cancel(fmt.Errorf("%w before delivery: %w", ErrClosed, context.Cause(ctx)))
		}
		select {
		case <-drained:
		case <-time.After(closeGrace):
			m.log.Error("opentrack: integration calls still running after the shutdown deadline; Close may run alongside them")
		}
		// Report whatever is still unsettled: nothing accepted leaves
		// Shutdown unaccounted for.
		deadline := time.Now().Add(closeGrace)
		for _, l := range m.lanes {
			l.failPending(context.Cause(l.ctx), deadline)
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
	return errors.Join(errs...)
}

// closeGrace is how long Shutdown waits for integrations after its context
// has ended.
const closeGrace = 5 * time.Second

// Stats returns the delivery counters of every integration, in the order of
// Options.Integrations.
func (m *Manager) Stats() []Stats {
	out := make([]Stats, 0, len(m.lanes))
	now := time.Now()
	for _, l := range m.lanes {
		out = append(out, l.stats(now))
	}
	return out
}

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
	l.failed.Add(1)
	m.log.Warn("opentrack: event not delivered",
		slog.String("integration", l.name),
		slog.String("messageId", it.ev.Fields().MessageID),
		slog.String("type", string(it.ev.Fields().Type)),
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
	m.onFailure(Failure{Integration: l.name, Event: it.ev, Err: err, Attempts: it.attempts})
}

// dedup remembers the last n messageIds accepted, as 64-bit hashes: a
// tenth of the memory of the ids themselves, with a chance of a false match
// of about n/2⁶⁴ per event.
type dedup struct {
	mu   sync.Mutex
	seed maphash.Seed
	ids  map[uint64]struct{}
	ring []uint64
	next int
}

func newDedup(n int) *dedup {
	return &dedup{seed: maphash.MakeSeed(), ids: make(map[uint64]struct{}, n), ring: make([]uint64, n)}
}

// hash never returns 0, which marks an empty ring slot.
func (d *dedup) hash(id string) uint64 { return maphash.String(d.seed, id) | 1 }

func (d *dedup) seen(id string) bool {
	_, ok := d.ids[d.hash(id)]
	return ok
}

func (d *dedup) add(id string) {
	if id == "" {
		return
	}
	h := d.hash(id)
	if _, ok := d.ids[h]; ok {
		return
	}
	if old := d.ring[d.next]; old != 0 {
		delete(d.ids, old)
	}
	d.ring[d.next] = h
	d.ids[h] = struct{}{}
	d.next = (d.next + 1) % len(d.ring)
}
