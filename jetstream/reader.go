package jetstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"github.com/opentrackhq/opentrack/queue"
)

// Timings of a reader.
const (
	// pollWait is how long one pull request waits for records. Close
	// waits for the requests under way to end: abandoning one would lose
	// the records JetStream is sending it until AckWait.
	pollWait = time.Second
	// statsTTL is how long Stats reuses the consumer's counters when
	// nothing has changed here (other collectors may have moved them).
	statsTTL = 250 * time.Millisecond
	// confirmTimeout bounds the wait for JetStream to confirm a batch of
	// acknowledgements.
	confirmTimeout = 5 * time.Second
	// refreshTimeout bounds one refresh of Stats (reading ahead, waiting
	// for confirmations, asking for the counters): the Manager holds its
	// stats lock meanwhile.
	refreshTimeout = time.Second
	// JetStream acknowledges a publish once the stream has stored it and
	// tells the consumers a moment later. A refresh within catchUpRecent
	// of this collector's last acknowledged publish, whose consumer has
	// not seen that record yet, reads again every catchUpPause for at
	// most catchUpWait, so that Stats right after an Append count it.
	catchUpRecent = 100 * time.Millisecond
	catchUpPause  = time.Millisecond
	catchUpWait   = 20 * time.Millisecond
	// recentSeqs is how many settled Seqs a reader remembers, so that a
	// redelivery racing an acknowledgement is acknowledged again rather
	// than delivered twice by the same collector.
	recentSeqs = 8192
)

// entry is a record this collector holds: fetched for its integration
// and not yet settled.
type entry struct {
	msg     js.Msg
	rec     queue.Record
	touched time.Time // when JetStream last heard about it from us
}

// reader is one integration's view of the stream, through its durable
// consumer, which every collector running the integration shares.
type reader struct {
	q    *Queue
	name string
	cons js.Consumer

	mu       sync.Mutex
	buf      []*entry          // fetched, for this integration, not yet returned by Next
	held     map[uint64]*entry // returned by Next, not yet settled
	recent   map[uint64]struct{}
	recentQ  []uint64 // recent, oldest first
	fetching bool     // a fetch is running
	waiters  int      // Next calls waiting
	changed  chan struct{}
	// sizes of the records seen, to estimate the bytes of those only
	// JetStream's counters know of.
	sizeSum, sizeN int64
	maxSeq         uint64 // the highest Seq fetched

	// Acknowledgements go out from ackLoop, in order; the last of each
	// batch asks JetStream to confirm, which confirms the batch.
	ackq      []js.Msg
	ackKick   chan struct{}
	acksSent  uint64 // acknowledgements queued so far
	acksDone  uint64 // of those, confirmed (or given up on)
	ackMoved  chan struct{}
	ackErr    error // the last confirmation that failed, for Sync
	ackClosed bool  // ackLoop has ended: acknowledge directly

	// statsMu serialises Stats; snap is guarded by it.
	statsMu sync.Mutex
	snap    snapshot
}

// snapshot is the consumer's counters as of one request.
type snapshot struct {
	at   time.Time // when it was taken, or last tried
	gen  uint64    // Queue.gen when it was taken
	acks uint64    // acksSent when it was taken
	// failed is set when the last try to refresh it failed (NATS
	// unreachable, the consumer without a leader): what happened since is
	// not known.
	failed   bool
	floor    uint64 // AckFloor.Stream
	pending  uint64 // NumPending: not yet delivered to any collector
	inFlight int    // NumAckPending: delivered, not acknowledged
	// oldest is the Appended of the first record at or after floor+1, as
	// read from the stream, at oldestSeq.
	oldestSeq uint64
	oldest    time.Time
}

func newReader(q *Queue, name string, c js.Consumer) *reader {
	info := c.CachedInfo()
	return &reader{
		snap: snapshot{
			at: time.Now(), gen: q.gen.Load(),
			floor: info.AckFloor.Stream, pending: info.NumPending, inFlight: info.NumAckPending,
		},
		q:        q,
		name:     name,
		cons:     c,
		held:     map[uint64]*entry{},
		recent:   map[uint64]struct{}{},
		changed:  make(chan struct{}),
		ackKick:  make(chan struct{}, 1),
		ackMoved: make(chan struct{}),
	}
}

// Next implements [queue.Reader]. It returns records fetched from the
// integration's consumer, waiting for one if none is there. Records that
// do not target the integration are acknowledged and skipped.
func (r *reader) Next(ctx context.Context, max int) ([]queue.Record, error) {
	if max <= 0 {
		max = 1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waiters++
	defer func() { r.waiters-- }()
	for {
		if r.isClosed() {
			return nil, queue.ErrClosed
		}
		if len(r.buf) > 0 {
			n := min(max, len(r.buf))
			out := make([]queue.Record, n)
			for i, e := range r.buf[:n] {
				out[i] = e.rec
				r.held[e.rec.Seq] = e
			}
			clear(r.buf[:n])
			r.buf = r.buf[n:]
			return out, nil
		}
		r.startFetchLocked()
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			r.mu.Lock()
			return nil, ctx.Err()
		case <-r.q.done:
		}
		r.mu.Lock()
	}
}

func (r *reader) isClosed() bool {
	select {
	case <-r.q.done:
		return true
	default:
		return false
	}
}

// startFetchLocked starts a fetch loop unless one runs. r.mu is held.
func (r *reader) startFetchLocked() {
	if r.fetching || r.isClosed() {
		return
	}
	r.fetching = true
	r.q.wg.Go(r.fetchLoop)
}

// fetchLoop pulls records while a Next call waits for them. One pull
// request asks for up to ReadAhead records and stays open for pollWait,
// so that records appended meanwhile arrive at once.
func (r *reader) fetchLoop() {
	backoff := 100 * time.Millisecond
	failing := false
	for {
		r.mu.Lock()
		n := r.q.opts.ReadAhead - len(r.buf)
		if r.isClosed() || n <= 0 || (r.waiters == 0 && len(r.buf) > 0) || r.waiters == 0 && r.q.cnc.Status() != nats.CONNECTED {
			r.fetching = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		// JetStream ends the request after pollWait; the client waits a
		// second more, so the request is never abandoned while records
		// may be on their way.
		batch, err := r.cons.Fetch(n, js.FetchMaxWait(pollWait))
		if err == nil {
			for m := range batch.Messages() {
				r.take(m)
			}
			err = batch.Error()
		}
		if err == nil || r.isClosed() {
			failing = false
			backoff = 100 * time.Millisecond
			continue
		}
		// Log the first failure of a run at Warn: a fetch that keeps
		// failing holds back every delivery of the integration.
		level := slog.LevelDebug
		if !failing {
			level = slog.LevelWarn
		}
		failing = true
		r.q.log.Log(context.Background(), level, "jetstream: fetching records; retrying", slog.String("integration", r.name), slog.Any("error", err))
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-r.q.done:
			t.Stop()
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// take files a fetched message: a record for the integration goes to buf;
// another is acknowledged at once; a redelivery of a record this collector
// holds refreshes it.
func (r *reader) take(m js.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		r.q.log.Error("jetstream: message without metadata", slog.String("integration", r.name), slog.Any("error", err))
		return
	}
	seq := meta.Sequence.Stream
	now := time.Now()
	r.mu.Lock()
	if r.isClosed() {
		r.mu.Unlock()
		_ = m.Nak()
		return
	}
	if e := r.holding(seq); e != nil {
		e.msg, e.touched = m, now
		r.mu.Unlock()
		return
	}
	if _, ok := r.recent[seq]; ok {
		r.ackLocked(m)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()

	h, _, err := queue.DecodeRecordHeader(m.Data())
	if err == nil && !slices.Contains(h.Targets, r.name) {
		r.mu.Lock()
		r.ackLocked(m)
		r.mu.Unlock()
		return
	}
	rec, ok := queue.Record{}, false
	if err == nil {
		rec, ok = r.q.pub.take(h.MessageID, m.Data())
	}
	if err == nil && !ok {
		rec, err = queue.DecodeRecord(m.Data())
	}
	if err != nil {
		// Not a record: published by something else, or damaged. It
		// cannot be delivered; keeping it would hold the stream forever.
		r.q.log.Error("jetstream: dropping a message that is not an OpenTrack record",
			slog.String("integration", r.name), slog.Uint64("seq", seq), slog.Any("error", err))
		_ = m.TermWithReason("opentrack: not a record")
		return
	}
	rec.Seq = seq
	rec.Redelivered = meta.NumDelivered > 1
	r.mu.Lock()
	// Keep buf in Seq order: a redelivery may come after later records.
	i := len(r.buf)
	for i > 0 && r.buf[i-1].rec.Seq > seq {
		i--
	}
	r.buf = slices.Insert(r.buf, i, &entry{msg: m, rec: rec, touched: now})
	r.sizeSum += int64(rec.Size)
	r.sizeN++
	r.maxSeq = max(r.maxSeq, seq)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// holding returns the entry of seq if this collector holds it. r.mu is
// held.
func (r *reader) holding(seq uint64) *entry {
	if e := r.held[seq]; e != nil {
		return e
	}
	for _, e := range r.buf {
		if e.rec.Seq == seq {
			return e
		}
	}
	return nil
}

// Settle implements [queue.Reader]: it acknowledges the records, which
// JetStream then forgets for this integration. Acknowledgements are sent
// in the background, in order; Stats, Sync and Close wait for JetStream to
// confirm them.
func (r *reader) Settle(seqs ...uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, seq := range seqs {
		e := r.held[seq]
		if e == nil {
			continue
		}
		delete(r.held, seq)
		r.remember(seq)
		r.ackLocked(e.msg)
	}
}

// remember adds seq to the recently settled. r.mu is held.
func (r *reader) remember(seq uint64) {
	r.recent[seq] = struct{}{}
	r.recentQ = append(r.recentQ, seq)
	if len(r.recentQ) > recentSeqs {
		delete(r.recent, r.recentQ[0])
		r.recentQ = r.recentQ[1:]
	}
}

// ackLocked queues an acknowledgement. r.mu is held.
func (r *reader) ackLocked(m js.Msg) {
	if r.ackClosed {
		_ = m.Ack()
		return
	}
	r.ackq = append(r.ackq, m)
	r.acksSent++
	select {
	case r.ackKick <- struct{}{}:
	default:
	}
}

// ackLoop sends the queued acknowledgements. Each batch goes out as plain
// acks, but for the last, which asks JetStream to confirm it: a consumer
// processes the acks of one connection in order, so that confirmation
// covers the whole batch. When the queue closes, it sends what is left and
// ends.
func (r *reader) ackLoop() {
	for {
		closing := false
		select {
		case <-r.ackKick:
		case <-r.q.done:
			closing = true
		}
		r.mu.Lock()
		batch, upTo := r.ackq, r.acksSent
		r.ackq = nil
		if closing {
			r.ackClosed = true
		}
		r.mu.Unlock()
		if len(batch) > 0 {
			err := r.sendAcks(batch)
			r.mu.Lock()
			r.acksDone = upTo
			if err != nil {
				r.ackErr = err
			}
			close(r.ackMoved)
			r.ackMoved = make(chan struct{})
			r.mu.Unlock()
		}
		if closing {
			return
		}
	}
}

func (r *reader) sendAcks(batch []js.Msg) error {
	for _, m := range batch[:len(batch)-1] {
		if err := m.Ack(); err != nil && !errors.Is(err, js.ErrMsgAlreadyAckd) {
			r.q.log.Debug("jetstream: acknowledging", slog.String("integration", r.name), slog.Any("error", err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), confirmTimeout)
	defer cancel()
	err := batch[len(batch)-1].DoubleAck(ctx)
	if err == nil || errors.Is(err, js.ErrMsgAlreadyAckd) {
		return nil
	}
	r.q.log.Warn("jetstream: JetStream did not confirm acknowledgements; their events will be delivered again after AckWait",
		slog.String("integration", r.name), slog.Int("events", len(batch)), slog.Any("error", err))
	return err
}

// waitAcked waits until JetStream has confirmed (or failed to confirm)
// the acknowledgements queued before the call.
func (r *reader) waitAcked(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	target := r.acksSent
	for r.acksDone < target {
		moved := r.ackMoved
		r.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			r.mu.Lock()
			return ctx.Err()
		case <-r.q.done:
			r.mu.Lock()
			return queue.ErrClosed
		}
		r.mu.Lock()
	}
	return nil
}

// sync waits like waitAcked and returns the error of the last failed
// confirmation since the previous sync, if any.
func (r *reader) sync(ctx context.Context) error {
	if err := r.waitAcked(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.ackErr
	r.ackErr = nil
	if err != nil {
		return fmt.Errorf("jetstream: %s: acknowledgements not confirmed: %w", r.name, err)
	}
	return nil
}

// touch tells JetStream that the records held for longer than idle since
// it last heard of them are still being worked on.
func (r *reader) touch(idle time.Duration) {
	now := time.Now()
	var msgs []js.Msg
	r.mu.Lock()
	for _, e := range r.held {
		if now.Sub(e.touched) >= idle {
			e.touched = now
			msgs = append(msgs, e.msg)
		}
	}
	for _, e := range r.buf {
		if now.Sub(e.touched) >= idle {
			e.touched = now
			msgs = append(msgs, e.msg)
		}
	}
	r.mu.Unlock()
	for _, m := range msgs {
		if err := m.InProgress(); err != nil && !errors.Is(err, js.ErrMsgAlreadyAckd) {
			r.q.log.Debug("jetstream: keeping a record in progress", slog.String("integration", r.name), slog.Any("error", err))
		}
	}
}

// release hands what the collector holds back to JetStream, for
// redelivery to this or another collector at once rather than after
// AckWait; used by Close, once no pull request is under way.
func (r *reader) release() {
	r.mu.Lock()
	entries := slices.AppendSeq(slices.Clone(r.buf), maps.Values(r.held))
	clear(r.held)
	r.buf = nil
	r.mu.Unlock()
	// In Seq order, so that they come again in that order.
	slices.SortFunc(entries, func(a, b *entry) int { return cmp.Compare(a.rec.Seq, b.rec.Seq) })
	for _, e := range entries {
		_ = e.msg.Nak()
	}
}

// Stats implements [queue.Reader] from the consumer's counters, which
// cover every collector sharing it:
//
//   - Cursor is the consumer's acknowledgement floor + 1;
//   - Unsettled is the records not yet delivered to any collector plus
//     those delivered and not acknowledged;
//   - Bytes is exact for the records this collector holds and estimated,
//     from the average Size of the records read here (before any, of those
//     this collector published), for the others;
//   - Oldest is the Appended of the first unacknowledged record.
//
// Stats refreshes the counters when this collector has appended or
// settled since it last asked (after JetStream has confirmed those
// acknowledgements) and at least every 250ms otherwise. Before asking, it
// reads what is waiting for the integration (up to ReadAhead records, when
// no fetch is under way), so that records that do not target it are
// acknowledged and not counted. Right after this collector published, it
// waits up to catchUpWait (20 ms) for the consumer to hear of the record.
func (r *reader) Stats() queue.ReaderStats {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	if !r.isClosed() && r.stale() {
		r.refresh()
	}
	return r.compute()
}

// stale reports whether the snapshot is out of date. statsMu is held.
func (r *reader) stale() bool {
	acks := r.queuedAcks()
	s := r.snap
	if time.Since(s.at) > statsTTL {
		return true
	}
	// After a failure, try again only once statsTTL has passed.
	return !s.failed && (s.gen != r.q.gen.Load() || s.acks != acks)
}

// refresh takes a new snapshot. statsMu is held.
func (r *reader) refresh() {
	gen := r.q.gen.Load()
	if r.q.cnc.Status() != nats.CONNECTED {
		r.snap.at, r.snap.failed = time.Now(), true // keep the last counters; ask again later
		return
	}
	ctx, cancel := context.WithTimeout(r.q.ctx, refreshTimeout)
	defer cancel()
	var (
		info *js.ConsumerInfo
		acks uint64
		err  error
	)
	for deadline := time.Now().Add(catchUpWait); ; {
		r.readAhead()
		if err := r.waitAcked(ctx); err != nil {
			r.q.log.Debug("jetstream: stats: waiting for acknowledgements", slog.String("integration", r.name), slog.Any("error", err))
		}
		acks = r.queuedAcks()
		info, err = r.cons.Info(ctx)
		if err != nil || !r.behind(info) || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-time.After(catchUpPause):
		case <-ctx.Done():
		}
	}
	if err != nil {
		r.q.log.Debug("jetstream: stats: consumer info", slog.String("integration", r.name), slog.Any("error", err))
		r.snap.at, r.snap.failed = time.Now(), true
		return
	}
	s := snapshot{
		at: time.Now(), gen: gen, acks: acks,
		floor: info.AckFloor.Stream, pending: info.NumPending, inFlight: info.NumAckPending,
		oldestSeq: r.snap.oldestSeq, oldest: r.snap.oldest,
	}
	cursor := s.floor + 1
	if s.pending+uint64(s.inFlight) > 0 && s.oldestSeq != cursor {
		// The oldest unsettled record: held here, or read from the
		// stream (the first message at or after the cursor).
		if t, ok := r.localAppended(cursor); ok {
			s.oldestSeq, s.oldest = cursor, t
		} else if m, err := r.q.stream.GetMsg(ctx, cursor, js.WithGetMsgSubject(r.q.opts.Subject)); err == nil {
			if h, _, err := queue.DecodeRecordHeader(m.Data); err == nil {
				s.oldestSeq, s.oldest = cursor, h.Appended
			}
		}
	}
	r.snap = s
}

// queuedAcks returns how many acknowledgements this reader has queued.
func (r *reader) queuedAcks() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.acksSent
}

// behind reports whether the consumer, as info shows it, has not yet
// heard of a record this collector published within catchUpRecent.
func (r *reader) behind(info *js.ConsumerInfo) bool {
	at := time.Unix(0, r.q.lastAt.Load())
	return time.Since(at) < catchUpRecent && r.q.lastSeq.Load() > info.Delivered.Stream+info.NumPending
}

// localAppended returns the Appended of the record at seq if this
// collector holds it.
func (r *reader) localAppended(seq uint64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.holding(seq); e != nil {
		return e.rec.Appended, true
	}
	return time.Time{}, false
}

// readAhead takes what is waiting for the integration now, without
// waiting, unless a fetch is under way. statsMu is held.
func (r *reader) readAhead() {
	r.mu.Lock()
	n := r.q.opts.ReadAhead - len(r.buf)
	if r.fetching || n <= 0 || r.isClosed() {
		r.mu.Unlock()
		return
	}
	r.fetching = true
	// Close waits for this fetch like any other: it checks done, then
	// takes each reader's lock before it waits for the group.
	r.q.wg.Add(1)
	defer r.q.wg.Done()
	r.mu.Unlock()
	// JetStream answers at once with what is there; the client gives up
	// after a second.
	batch, err := r.cons.FetchNoWait(n)
	if err == nil {
		for m := range batch.Messages() {
			r.take(m)
		}
	}
	r.mu.Lock()
	r.fetching = false
	if r.waiters > 0 {
		r.startFetchLocked()
	}
	r.mu.Unlock()
}

// compute combines the snapshot with what this collector holds.
// statsMu is held.
func (r *reader) compute() queue.ReaderStats {
	s := r.snap
	gen := r.q.gen.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	local := len(r.held) + len(r.buf)
	var localBytes int64
	var lowSeq uint64
	var lowAt time.Time
	each := func(e *entry) {
		localBytes += int64(e.rec.Size)
		if lowSeq == 0 || e.rec.Seq < lowSeq {
			lowSeq, lowAt = e.rec.Seq, e.rec.Appended
		}
	}
	for _, e := range r.held {
		each(e)
	}
	for _, e := range r.buf {
		each(e)
	}
	// The counters, moved by what happened here since they were read:
	// records appended (for this integration or not) and acknowledged.
	// When they could not be read, Unsettled is at least 1 if anything
	// happened since: the Manager must not take a failure for "drained".
	est := int(s.pending) + s.inFlight + int(gen-s.gen) - int(r.acksSent-s.acks)
	if s.failed && (gen != s.gen || r.acksSent != s.acks) {
		est = max(est, 1)
	}
	st := queue.ReaderStats{Cursor: s.floor + 1, Unsettled: max(est, local), Bytes: localBytes}
	if r.q.cnc.IsClosed() {
		// The connection is gone for good: JetStream hands what others
		// hold to other collectors; only what is held here is known.
		st.Cursor, st.Unsettled = max(s.floor, r.maxSeq)+1, local
	}
	if lowSeq != 0 && lowSeq < st.Cursor {
		st.Cursor = lowSeq
	}
	if others := st.Unsettled - local; others > 0 {
		// An estimate: the mean Size of the records read here, or
		// else of those this collector published.
		sum, n := r.sizeSum, r.sizeN
		if n == 0 {
			sum, n = r.q.pubBytes.Load(), r.q.pubN.Load()
		}
		if n > 0 {
			st.Bytes += int64(others) * (sum / n)
		}
	}
	switch {
	case st.Unsettled == 0:
	case lowSeq != 0 && lowSeq <= st.Cursor:
		st.Oldest = lowAt
	case s.oldestSeq == st.Cursor:
		st.Oldest = s.oldest
	case lowSeq != 0:
		st.Oldest = lowAt
	}
	return st
}
