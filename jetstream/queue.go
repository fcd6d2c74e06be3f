package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

// ErrUnavailable is wrapped by the errors of Append when NATS cannot take
// the records now: the connection is down, JetStream did not acknowledge
// them within Options.PublishTimeout, or the stream has no leader. It
// matches [queue.ErrFull] with errors.Is, so that the Handler answers 503
// with Retry-After and the sender tries again.
var ErrUnavailable error = unavailableError{}

type unavailableError struct{}

func (unavailableError) Error() string        { return "jetstream: NATS unavailable" }
func (unavailableError) Is(target error) bool { return target == queue.ErrFull }

// Queue is a [queue.Queue] on a JetStream stream, shared by every
// collector that opens the same stream. Create it with [Open].
type Queue struct {
	opts Options
	log  *slog.Logger
	// Appends go through nc and js; readers (fetches, acknowledgements,
	// counters) through cnc and stream. Two connections when the queue
	// dials them, so that deliveries and acknowledgements do not queue
	// behind publishes on one socket (and one server read loop); the same
	// one when Options.Conn is given.
	nc, cnc *nats.Conn
	ownConn bool
	js      js.JetStream
	cjs     js.JetStream
	stream  js.Stream
	// maxBytes is the stream's bound (≤ 0 for none) and maxMsg the
	// largest message the stream and the connection take.
	maxBytes int64
	maxMsg   int

	// gen counts the records published, so that a reader's Stats knows
	// its snapshot of the consumer is older than the last Append, and by
	// how much.
	gen atomic.Uint64
	// lastSeq is the highest Seq JetStream acknowledged for a record of
	// this collector's, and lastAt when (Unix ns), so that a reader's
	// Stats wait a moment for its consumer to hear of it. pubBytes and
	// pubN add up the Sizes of the records this collector published, to
	// estimate Bytes before a reader has read any.
	lastSeq        atomic.Uint64
	lastAt         atomic.Int64
	pubBytes, pubN atomic.Int64

	// ctx is cancelled by Close; it ends start-up waits and Stats.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup

	// pub keeps what this collector published for its own readers.
	pub published

	mu      sync.Mutex
	readers []*reader
	local   map[string]bool // the names of readers
	opened  bool
	closed  bool

	closeOnce sync.Once
	closeErr  error
}

// Open connects to NATS (unless opts.Conn is given) and makes sure the
// stream exists, creating it when it is missing. A stream found with
// another retention policy, number of replicas, storage, discard policy
// or subjects, or with a limit that differs from one opts sets, is a
// [*ConfigError]: collectors that share a stream must agree on it.
//
// Open waits up to opts.StartTimeout (or until ctx ends) for JetStream to
// be ready, as a cluster that has just started elects its leaders.
func Open(ctx context.Context, opts *Options) (*Queue, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	q := &Queue{opts: o, log: o.Logger, nc: o.Conn, done: make(chan struct{})}
	if q.nc == nil {
		copts := []nats.Option{
			nats.MaxReconnects(-1),
			// NATS may start alongside the collector: Open waits for it,
			// within StartTimeout.
			nats.RetryOnFailedConnect(true),
			nats.ReconnectWait(250 * time.Millisecond),
			nats.PingInterval(5 * time.Second),
			nats.MaxPingsOutstanding(3),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					q.log.Warn("jetstream: disconnected from NATS; appends answer 503 until it is back", slog.Any("error", err))
				}
			}),
			nats.ReconnectHandler(func(c *nats.Conn) {
				q.log.Info("jetstream: reconnected to NATS", slog.String("server", c.ConnectedUrlRedacted()))
			}),
		}
		if o.CredsFile != "" {
			copts = append(copts, nats.UserCredentials(o.CredsFile))
		}
		url := strings.Join(o.Servers, ",")
		q.nc, err = nats.Connect(url, append(copts, nats.Name("opentrack-append"))...)
		if err != nil {
			return nil, fmt.Errorf("jetstream: connecting to %s: %w", url, err)
		}
		q.cnc, err = nats.Connect(url, append(copts, nats.Name("opentrack-deliver"))...)
		if err != nil {
			q.nc.Close()
			return nil, fmt.Errorf("jetstream: connecting to %s: %w", url, err)
		}
		q.ownConn = true
	} else {
		q.cnc = q.nc
	}
	q.js, err = js.New(q.nc,
		js.WithPublishAsyncMaxPending(64<<10),
		js.WithPublishAsyncTimeout(o.PublishTimeout))
	if err == nil {
		q.cjs, err = js.New(q.cnc)
	}
	if err != nil {
		q.closeConn()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	sctx, cancel := startContext(ctx, o.StartTimeout)
	defer cancel()
	if err := q.ensureStream(sctx); err != nil {
		if !q.nc.IsConnected() {
			err = fmt.Errorf("jetstream: NATS not reachable at %s: %w", strings.Join(o.Servers, ","), err)
		}
		q.cancel()
		q.closeConn()
		return nil, err
	}
	return q, nil
}

// startContext bounds ctx by d.
func startContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("jetstream: JetStream not ready within %v", d))
}

func (q *Queue) closeConn() {
	if q.ownConn {
		q.nc.Close()
		q.cnc.Close()
	}
}

// ensureStream creates the stream or checks the one found.
func (q *Queue) ensureStream(ctx context.Context) error {
	o := q.opts
	want := js.StreamConfig{
		Name:        o.Stream,
		Description: "OpenTrack: accepted events, kept until every integration has settled them",
		Subjects:    []string{o.Subject},
		Retention:   js.InterestPolicy,
		Discard:     js.DiscardNew,
		Storage:     js.FileStorage,
		Replicas:    o.Replicas,
		MaxBytes:    orDefault(o.MaxBytes, DefaultMaxBytes),
		MaxAge:      o.MaxAge,
		Duplicates:  orDefault(o.DuplicateWindow, DefaultDuplicateWindow),
		MaxMsgs:     -1,
	}
	var info *js.StreamInfo
	err := retry(ctx, func(ctx context.Context) error {
		s, err := q.cjs.Stream(ctx, o.Stream)
		if errors.Is(err, js.ErrStreamNotFound) {
			s, err = q.cjs.CreateStream(ctx, want)
			if err == nil {
				q.log.Info("jetstream: created stream", slog.String("stream", o.Stream), slog.Int("replicas", o.Replicas))
			}
		}
		if err != nil {
			return err
		}
		q.stream, info = s, s.CachedInfo()
		return nil
	})
	if err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", o.Stream, err)
	}
	if err := q.checkStream(info.Config); err != nil {
		return err
	}
	q.maxBytes = info.Config.MaxBytes
	q.maxMsg = int(q.nc.MaxPayload())
	if m := int(info.Config.MaxMsgSize); m > 0 && m < q.maxMsg {
		q.maxMsg = m
	}
	return nil
}

func orDefault[T int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// checkStream compares the stream found with the options.
func (q *Queue) checkStream(c js.StreamConfig) error {
	o := q.opts
	bad := func(field, reason string) error {
		return &ConfigError{Field: "jetstream.Options." + field, Reason: fmt.Sprintf("stream %s %s", o.Stream, reason)}
	}
	switch {
	case c.Retention != js.InterestPolicy:
		return bad("Stream", fmt.Sprintf("has retention %q; OpenTrack needs %q, so that a record stays until every integration has it (use another stream name)", c.Retention, js.InterestPolicy))
	case c.Replicas != o.Replicas:
		return bad("Replicas", fmt.Sprintf("has %d replicas, the options ask for %d", c.Replicas, o.Replicas))
	case c.Storage != js.FileStorage:
		return bad("Stream", "keeps its messages in memory; a 2xx would not survive a NATS restart")
	case c.Discard != js.DiscardNew:
		return bad("Stream", "discards old messages when full; OpenTrack needs DiscardNew, so that a full stream refuses new events (503) instead of dropping accepted ones")
	case !slices.ContainsFunc(c.Subjects, func(f string) bool { return subjectMatches(f, o.Subject) }):
		return bad("Subject", fmt.Sprintf("captures %q, not %q", c.Subjects, o.Subject))
	case o.MaxBytes != 0 && c.MaxBytes != o.MaxBytes:
		return bad("MaxBytes", fmt.Sprintf("is bounded to %d bytes, the options ask for %d", c.MaxBytes, o.MaxBytes))
	case o.MaxAge != 0 && c.MaxAge != o.MaxAge:
		return bad("MaxAge", fmt.Sprintf("has max age %v, the options ask for %v", c.MaxAge, o.MaxAge))
	case o.DuplicateWindow != 0 && c.Duplicates != o.DuplicateWindow:
		return bad("DuplicateWindow", fmt.Sprintf("has a duplicate window of %v, the options ask for %v", c.Duplicates, o.DuplicateWindow))
	}
	return nil
}

// retry calls fn until it succeeds, fails for good, or ctx ends. A
// cluster that is electing its leaders answers "no responders", times out
// or says it is temporarily unavailable: those are retried.
func retry(ctx context.Context, fn func(ctx context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(actx)
		cancel()
		if err == nil || !transient(err) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %w)", context.Cause(ctx), err)
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// transient reports whether a JetStream API error may go away by itself.
func transient(err error) bool {
	var apiErr *js.APIError
	if errors.As(err, &apiErr) {
		// 10008: JetStream system temporarily unavailable. 10005: no
		// suitable peers (a cluster still forming). 10023: insufficient
		// resources, while peers join.
		switch apiErr.ErrorCode {
		case 10008, 10005, 10023:
			return true
		}
		return apiErr.Code == 503 || apiErr.Code == 408
	}
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, js.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrNoServers) ||
		errors.Is(err, js.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrConnectionReconnecting)
}

// Durable reports that an Append survives the loss of a collector: the
// Manager leaves undelivered events in the queue at Shutdown.
func (q *Queue) Durable() bool { return true }

// Open implements [queue.Queue]: it creates, or finds, the durable
// consumer of each integration, named by [ConsumerName]. A new consumer
// starts at the end of the stream. Every collector that runs an
// integration reads through the same consumer, so each record goes to one
// of them.
//
// Consumers of integrations that this collector does not run are left
// alone (another collector may run them) and logged: the stream keeps
// every record until each consumer has acknowledged it, so a consumer
// nobody reads holds records until it is deleted (nats consumer rm) or
// they pass MaxAge.
func (q *Queue) Open(names []string) ([]queue.Reader, error) {
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return nil, queue.ErrClosed
	case q.opened:
		q.mu.Unlock()
		return nil, errors.New("jetstream: Open called twice")
	}
	q.opened = true
	q.mu.Unlock()

	ctx, cancel := startContext(q.ctx, q.opts.StartTimeout)
	defer cancel()
	seen := map[string]bool{}
	readers := make([]*reader, len(names))
	for i, name := range names {
		cname := ConsumerName(name)
		if seen[cname] {
			return nil, fmt.Errorf("jetstream: duplicate reader name %q", name)
		}
		seen[cname] = true
		c, err := q.ensureConsumer(ctx, name, cname)
		if err != nil {
			return nil, err
		}
		readers[i] = newReader(q, name, c)
	}
	q.warnUnknownConsumers(ctx, seen)

	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, queue.ErrClosed
	}
	q.readers = readers
	q.local = make(map[string]bool, len(readers))
	out := make([]queue.Reader, len(readers))
	for i, r := range readers {
		q.local[r.name] = true
		out[i] = r
		q.wg.Go(r.ackLoop)
	}
	q.wg.Go(q.keepAlive)
	return out, nil
}

// integrationKey is the consumer metadata key holding the integration's
// name.
const integrationKey = "opentrack_integration"

func (q *Queue) ensureConsumer(ctx context.Context, name, cname string) (js.Consumer, error) {
	o := q.opts
	want := js.ConsumerConfig{
		Durable:       cname,
		Description:   "OpenTrack integration " + name,
		DeliverPolicy: js.DeliverNewPolicy,
		AckPolicy:     js.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1,
		FilterSubject: o.Subject,
		MaxAckPending: o.MaxAckPending,
		Metadata:      map[string]string{integrationKey: name},
	}
	var c js.Consumer
	err := retry(ctx, func(ctx context.Context) error {
		var err error
		c, err = q.stream.Consumer(ctx, cname)
		if errors.Is(err, js.ErrConsumerNotFound) {
			c, err = q.stream.CreateConsumer(ctx, want)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: consumer %s of stream %s: %w", cname, o.Stream, err)
	}
	got := c.CachedInfo().Config
	bad := func(reason string) error {
		return &ConfigError{Field: "jetstream.Options.Subject", Reason: fmt.Sprintf("consumer %s of stream %s %s; delete it (nats consumer rm %s %s) to start it again at the end of the stream",
			cname, o.Stream, reason, o.Stream, cname)}
	}
	switch {
	case got.AckPolicy != js.AckExplicitPolicy:
		return nil, bad(fmt.Sprintf("acknowledges %q, not %q", got.AckPolicy, js.AckExplicitPolicy))
	case got.FilterSubject != o.Subject && !(len(got.FilterSubjects) == 1 && got.FilterSubjects[0] == o.Subject):
		return nil, bad(fmt.Sprintf("reads %q, not %q", got.FilterSubject+strings.Join(got.FilterSubjects, ","), o.Subject))
	}
	if got.AckWait != o.AckWait || got.MaxAckPending != o.MaxAckPending || got.MaxDeliver != -1 {
		got.AckWait, got.MaxAckPending, got.MaxDeliver = o.AckWait, o.MaxAckPending, -1
		err := retry(ctx, func(ctx context.Context) error {
			var err error
			c, err = q.stream.UpdateConsumer(ctx, got)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("jetstream: updating consumer %s of stream %s: %w", cname, o.Stream, err)
		}
		q.log.Info("jetstream: updated consumer", slog.String("consumer", cname),
			slog.Duration("ackWait", o.AckWait), slog.Int("maxAckPending", o.MaxAckPending))
	}
	return c, nil
}

// warnUnknownConsumers logs the consumers of OpenTrack integrations that
// this collector does not run.
func (q *Queue) warnUnknownConsumers(ctx context.Context, ours map[string]bool) {
	l := q.stream.ListConsumers(ctx)
	for info := range l.Info() {
		name, ok := info.Config.Metadata[integrationKey]
		if !ok || ours[info.Name] {
			continue
		}
		q.log.Warn("jetstream: the stream keeps records for an integration this collector does not run; if no collector runs it any more, delete its consumer",
			slog.String("integration", name), slog.String("consumer", info.Name),
			slog.Uint64("pending", info.NumPending+uint64(info.NumAckPending)),
			slog.String("command", "nats consumer rm "+q.opts.Stream+" "+info.Name))
	}
	if err := l.Err(); err != nil {
		q.log.Debug("jetstream: listing consumers", slog.Any("error", err))
	}
}

// Append implements [queue.Queue]. It publishes the records at once, each
// with its messageId as Nats-Msg-Id, and returns when JetStream has
// acknowledged all of them: stored on a majority of the stream's replicas.
// Seq is the record's stream sequence. The queue keeps the events of
// decoded records for a while (this collector's readers hand them out
// rather than decode what they fetch): the caller must not change them
// afterwards.
//
// An Append is not atomic. If some records are refused (the stream is
// full, NATS is unreachable, the acknowledgement does not come within
// PublishTimeout), Append returns an error wrapping [queue.ErrFull] (the
// Handler answers 503 with Retry-After) while the others may be stored:
// they will be delivered, and when the sender sends the request again
// within the stream's DuplicateWindow, JetStream recognises their
// messageIds and stores only the records that were missing.
func (q *Queue) Append(ctx context.Context, recs []queue.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	closed, opened, local := q.closed, q.opened, q.local
	q.mu.Unlock()
	switch {
	case closed:
		return queue.ErrClosed
	case !opened:
		// With interest retention, a record published before the
		// consumers exist is dropped by the stream.
		return errors.New("jetstream: Append before Open")
	case len(recs) == 0:
		return nil
	}
	now := time.Now()
	msgs := make([]*nats.Msg, len(recs))
	// kept are the records as this collector's readers hand them out, if
	// they take them from pub: the events keep their JSON, so that the
	// integrations that write it need not encode it again.
	kept := make([]queue.Record, len(recs))
	left := make([]int, len(recs))
	var total int64
	head := make([]byte, 0, 256) // the record's header, for each record in turn
	for i := range recs {
		r := &recs[i]
		if r.Event == nil {
			return errors.New("jetstream: append: record without an event")
		}
		c := r.Event.Fields()
		var err error
		if head, err = queue.AppendRecord(head[:0], r.Targets, now, c, r.TraceParent, nil); err != nil {
			return fmt.Errorf("jetstream: append: %w", err)
		}
		// The event's JSON follows, written in place. head is passed
		// full, so the JSON's append moves the header to a new array, the
		// message's own (for a decoded event, sized by the encoder's
		// estimate). Only a record that pub keeps needs the copy that
		// keeps the JSON: one for a reader of this collector that pub.add
		// takes.
		start := len(head)
		var e spec.Event
		var data []byte
		if left[i] = countLocal(local, r.Targets); left[i] > 0 && keeps(c.MessageID, c) {
			e, data, err = spec.AppendWithJSON(head[:len(head):len(head)], r.Event)
			if err == nil && e.Fields() == c {
				// A type of another package, given back as it is (it
				// keeps nothing): readers decode it from the stream.
				// Its Common tells, as the event itself may not be
				// comparable.
				e, left[i] = nil, 0
			}
		} else {
			left[i] = 0
			data, err = spec.AppendJSON(head[:len(head):len(head)], r.Event)
		}
		if err != nil {
			return fmt.Errorf("jetstream: append: %w", err)
		}
		size := len(data) - start
		r.Appended, r.Size = now, size
		if e != nil {
			kept[i] = queue.Record{Event: e, Targets: slices.Clone(r.Targets), Size: size, Appended: now, TraceParent: r.TraceParent}
		}
		m := &nats.Msg{Subject: q.opts.Subject, Data: data, Header: nats.Header{}}
		if c.MessageID != "" {
			m.Header.Set(js.MsgIDHeader, c.MessageID)
		}
		m.Header.Set(js.ExpectedStreamHeader, q.opts.Stream)
		n := len(data) + len(m.Subject) + len(c.MessageID) + len(q.opts.Stream) + 64
		if n > q.maxMsg {
			return fmt.Errorf("jetstream: append: a record of %d bytes is larger than the %d that NATS takes: %w", n, q.maxMsg, queue.ErrTooLarge)
		}
		total += int64(n)
		msgs[i] = m
	}
	if q.maxBytes > 0 && total > q.maxBytes {
		return fmt.Errorf("jetstream: append: %d bytes of records, the stream holds %d: %w", total, q.maxBytes, queue.ErrTooLarge)
	}
	if s := q.nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("%w: connection %s", ErrUnavailable, s)
	}
	futures := make([]js.PubAckFuture, 0, len(msgs))
	// Whatever was published may be stored, even when this returns early:
	// a Stats after it must ask the consumer again.
	defer func() { q.gen.Add(uint64(len(futures))) }()
	var err error
	for i, m := range msgs {
		id := recs[i].Event.Fields().MessageID
		q.pub.add(id, m.Data, kept[i], left[i], now) // a no-op when left[i] is 0
		f, perr := q.js.PublishMsgAsync(m, js.WithStallWait(q.opts.PublishTimeout))
		if perr != nil {
			q.pub.forget(id, m.Data)
			err = perr
			break
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			recs[i].Seq = ack.Sequence
			q.lastAt.Store(time.Now().UnixNano()) // before lastSeq: never a new Seq with an old time
			for last := q.lastSeq.Load(); ack.Sequence > last && !q.lastSeq.CompareAndSwap(last, ack.Sequence); {
				last = q.lastSeq.Load()
			}
			q.pubBytes.Add(int64(recs[i].Size))
			q.pubN.Add(1)
			if ack.Duplicate { // JetStream kept an earlier message
				q.pub.forget(recs[i].Event.Fields().MessageID, msgs[i].Data)
			}
		case ferr := <-f.Err():
			// Maybe stored: it may still be fetched, and taken.
			err = worse(err, ferr)
		case <-ctx.Done():
			return ctx.Err()
		case <-q.done:
			return queue.ErrClosed
		}
	}
	if err != nil {
		return q.appendError(err)
	}
	return nil
}

// countLocal counts the targets that are readers of this collector.
func countLocal(local map[string]bool, targets []string) int {
	n := 0
	for _, t := range targets {
		if local[t] {
			n++
		}
	}
	return n
}

// worse keeps the error that matters more to the sender: a full stream
// over anything else.
func worse(have, next error) error {
	if have == nil || (classify(next) == classFull && classify(have) != classFull) {
		return next
	}
	return have
}

type errClass int

const (
	classUnavailable errClass = iota
	classFull
	classTooLarge
)

func classify(err error) errClass {
	var apiErr *js.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10054: // message size exceeds maximum allowed
			return classTooLarge
		case 10023, 10047: // insufficient (storage) resources
			return classFull
		case 10077: // storing the message failed: maximum bytes, messages, too large
			if strings.Contains(apiErr.Description, "too large") {
				return classTooLarge
			}
			if strings.Contains(apiErr.Description, "maximum") {
				return classFull
			}
		}
	}
	if errors.Is(err, nats.ErrMaxPayload) {
		return classTooLarge
	}
	return classUnavailable
}

func (q *Queue) appendError(err error) error {
	switch classify(err) {
	case classTooLarge:
		return fmt.Errorf("jetstream: append: %w: %w", queue.ErrTooLarge, err)
	case classFull:
		return fmt.Errorf("jetstream: append: stream %s is full: %w: %w", q.opts.Stream, queue.ErrFull, err)
	}
	return fmt.Errorf("jetstream: append: %w: %w", ErrUnavailable, err)
}

// Sync implements [queue.Queue]: it waits until JetStream has confirmed
// the acknowledgements of every record settled so far.
func (q *Queue) Sync(ctx context.Context) error {
	q.mu.Lock()
	readers, closed := q.readers, q.closed
	q.mu.Unlock()
	if closed {
		return queue.ErrClosed
	}
	var errs []error
	for _, r := range readers {
		if err := r.sync(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close implements [queue.Queue]. It waits for the pull requests under way
// to end (a second at most), sends the acknowledgements of what was
// settled and waits (briefly) for JetStream to confirm them, hands the
// records read but not settled back to JetStream (another collector gets
// them at once rather than after AckWait), and closes the connections
// Open dialled. Close is idempotent.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.mu.Lock()
		q.closed = true
		close(q.done)
		readers := q.readers
		q.mu.Unlock()
		if q.cancel != nil {
			q.cancel()
		}
		q.pub.clear()
		// A fetch starts under its reader's lock, after checking done:
		// once each lock has been taken, no new one can start.
		for _, r := range readers {
			r.mu.Lock()
			//lint:ignore SA2001 an empty critical section is the barrier
			r.mu.Unlock()
		}
		q.wg.Wait() // ack loops send what is left and wait for its confirmation
		for _, r := range readers {
			r.release()
		}
		if q.cnc.Status() == nats.CONNECTED {
			if err := q.cnc.FlushTimeout(2 * time.Second); err != nil {
				q.closeErr = fmt.Errorf("jetstream: close: %w", err)
			}
		}
		q.closeConn()
	})
	return q.closeErr
}

// keepAlive tells JetStream, every AckWait/4, that the records the
// collector holds are still being worked on, so that a record in long
// retries is not handed to another collector.
func (q *Queue) keepAlive() {
	q.mu.Lock()
	readers := q.readers
	q.mu.Unlock()
	every := q.opts.AckWait / 4
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-q.done:
			return
		case <-t.C:
		}
		for _, r := range readers {
			r.touch(q.opts.AckWait / 3)
		}
		q.pub.sweep(time.Now())
	}
}
