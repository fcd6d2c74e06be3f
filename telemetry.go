package opentrack

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
)

// ScopeName is the instrumentation scope of the meters and the tracer of the
// Manager and the Handler.
const ScopeName = "github.com/opentrackhq/opentrack"

// Metrics of the Manager, recorded through [Options.MeterProvider]. Each has
// the attribute opentrack.integration (the integration's Name) unless said
// otherwise. The Prometheus exporter writes the names with underscores and
// unit suffixes: opentrack_events_delivered_total,
// opentrack_delivery_duration_seconds, opentrack_queue_oldest_age_seconds.
const (
	// MetricEventsAccepted counts the events enqueued for an integration
	// ({event}).
	MetricEventsAccepted = "opentrack.events.accepted"
	// MetricEventsDelivered counts the events an integration took ({event}).
	MetricEventsDelivered = "opentrack.events.delivered"
	// MetricEventsRetried counts retry attempts, of events and of Init
	// ({event}).
	MetricEventsRetried = "opentrack.events.retried"
	// MetricEventsFailed counts the events given up on and passed to
	// OnFailure ({event}), with the attribute opentrack.failure.reason:
	// "permanent" (the integration marked the error [Permanent]),
	// "exhausted" (retries used up), "shutdown" (Shutdown's deadline came
	// first) or "panic" (the integration panicked).
	MetricEventsFailed = "opentrack.events.failed"
	// MetricEventsDeduplicated counts replays of an accepted messageId
	// that were not enqueued again ({event}).
	MetricEventsDeduplicated = "opentrack.events.deduplicated"
	// MetricEventsRedelivered counts the events a durable queue handed out
	// that may have been delivered before, as Stats.Redelivered does
	// ({event}).
	MetricEventsRedelivered = "opentrack.events.redelivered"
	// MetricEventsUnrouted counts the events accepted for no integration
	// ({event}; no attribute).
	MetricEventsUnrouted = "opentrack.events.unrouted"
	// MetricQueueDepth is a gauge of the events accepted for an integration
	// and not yet delivered or failed ({event}).
	MetricQueueDepth = "opentrack.queue.depth"
	// MetricQueueBytes is a gauge of the size of those events (By), as
	// the queue counts it.
	MetricQueueBytes = "opentrack.queue.bytes"
	// MetricQueueOldestAge is a gauge of how long the oldest of those
	// events has waited (s); 0 when there is none.
	MetricQueueOldestAge = "opentrack.queue.oldest_age"
	// MetricIntegrationReady is a gauge, 1 when the integration is
	// initialized and taking events, else 0 ({integration}).
	MetricIntegrationReady = "opentrack.integration.ready"
	// MetricQueueStorageSize is a gauge of the bytes a durable queue holds
	// on disk or in its stream (By; no attribute). It is recorded when
	// [Options.Queue] has a method Size() int64, which must be cheap: it
	// is called at every collection.
	MetricQueueStorageSize = "opentrack.queue.storage.size"
	// MetricDeliveryDuration is a histogram of the duration of the calls to
	// an integration, one per event or per batch (s), with the attribute
	// opentrack.delivery.outcome: "delivered", "retried" (to be retried),
	// "failed", or for a batch "partial" (some of its events delivered).
	MetricDeliveryDuration = "opentrack.delivery.duration"
	// MetricDeliveryBatchSize is a histogram of the events in each call to
	// a [Batcher] ({event}).
	MetricDeliveryBatchSize = "opentrack.delivery.batch.size"
)

// Metrics of the Handler, recorded through [HandlerOptions.MeterProvider],
// with the attributes opentrack.route (the last segment of the path, such as
// "track", "t" or "batch"; "other" for an unknown one) and
// http.response.status_code.
const (
	// MetricHTTPRequests counts requests ({request}).
	MetricHTTPRequests = "opentrack.http.requests"
	// MetricHTTPEvents counts the events read from request bodies, valid
	// or not ({event}).
	MetricHTTPEvents = "opentrack.http.events"
	// MetricHTTPRequestBodySize is a histogram of the size of the bodies
	// read, after gzip decompression (By): Segment's limits apply to it.
	MetricHTTPRequestBodySize = "opentrack.http.request.body.size"
)

// Attribute keys of the metrics and the delivery spans.
const (
	// AttrIntegration is an integration's Name.
	AttrIntegration = attribute.Key("opentrack.integration")
	// AttrFailureReason says why events failed (see MetricEventsFailed).
	AttrFailureReason = attribute.Key("opentrack.failure.reason")
	// AttrOutcome is a call's outcome (see MetricDeliveryDuration).
	AttrOutcome = attribute.Key("opentrack.delivery.outcome")
	// AttrAttempt numbers a call's attempt, from 1 (the highest of a
	// batch's events).
	AttrAttempt = attribute.Key("opentrack.delivery.attempt")
	// AttrBatchSize is the number of events in a batch's call.
	AttrBatchSize = attribute.Key("opentrack.delivery.batch.size")
	// AttrEventType is an event's type ("track", "identify", ...).
	AttrEventType = attribute.Key("opentrack.event.type")
	// AttrMessageID is an event's messageId.
	AttrMessageID = attribute.Key("opentrack.message.id")
	// AttrRoute is the last segment of a request's path.
	AttrRoute = attribute.Key("opentrack.route")
	// AttrHTTPStatusCode is the status of an answer, as OpenTelemetry's
	// HTTP conventions name it.
	AttrHTTPStatusCode = attribute.Key("http.response.status_code")
)

const (
	maxLinksPerBatch    = 128 // the SDK's default link limit per span
	refusedLogBurst     = 10  // 4xx lines logged at once, then one a second
	refusedReasonMaxLen = 256 // bytes of a refusal's answer kept for its log line
)

// Reasons an event failed, the values of AttrFailureReason.
type failReason int

const (
	reasonPermanent failReason = iota
	reasonExhausted
	reasonShutdown
	reasonPanic
	numReasons
)

var reasonNames = [numReasons]string{"permanent", "exhausted", "shutdown", "panic"}

// Outcomes of a call, the values of AttrOutcome.
type outcome int

const (
	outcomeDelivered outcome = iota
	outcomeRetried
	outcomeFailed
	outcomePartial
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"delivered", "retried", "failed", "partial"}

// Histogram buckets: calls take milliseconds to CallTimeout (30 s by
// default); batches hold up to 500 events by default; bodies up to 500 KB.
var (
	durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	batchBuckets    = []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500}
	bodyBuckets     = []float64{256, 1 << 10, 4 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20}
)

// panicError is the error of a call that panicked.
type panicError struct{ msg string }

func (e *panicError) Error() string { return e.msg }

// telemetry holds a Manager's instruments and tracer. The counters are
// observed from the lanes' own atomic counters at each collection, so that
// delivery pays nothing for them; only the histograms and spans are
// recorded on the delivery path.
type telemetry struct {
	m        *Manager
	tracer   trace.Tracer
	duration metric.Float64Histogram
	batch    metric.Int64Histogram

	accepted, delivered, retried, failed, deduplicated, redelivered, unrouted metric.Int64ObservableCounter
	depth, bytes, ready, storage                                              metric.Int64ObservableGauge
	age                                                                       metric.Float64ObservableGauge
	sized                                                                     interface{ Size() int64 } // the queue, when it tells its size
}

// newTelemetry creates the Manager's instruments, once, and the telemetry of
// each of its lanes. An error of the meter (a provider refusing an
// instrument) is logged, and the metrics are then not recorded.
func newTelemetry(m *Manager, opts Options) *telemetry {
	mp, tp := opts.MeterProvider, opts.TracerProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	t := &telemetry{m: m, tracer: tp.Tracer(ScopeName)}
	t.sized, _ = m.q.(interface{ Size() int64 })
	if err := t.instruments(mp.Meter(ScopeName)); err != nil {
		m.log.Warn("opentrack: the meter provider refused an instrument; metrics are off", slog.Any("error", err))
		_ = t.instruments(noop.Meter{})
	}
	for _, l := range m.lanes {
		l.tel = newLaneTelemetry(t, l)
	}
	return t
}

func (t *telemetry) instruments(meter metric.Meter) error {
	var errs []error
	counter := func(name, desc string) metric.Int64ObservableCounter {
		c, err := meter.Int64ObservableCounter(name, metric.WithUnit("{event}"), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	t.accepted = counter(MetricEventsAccepted, "Events enqueued for the integration.")
	t.delivered = counter(MetricEventsDelivered, "Events the integration took.")
	t.retried = counter(MetricEventsRetried, "Retry attempts, of events and of the integration's Init.")
	t.failed = counter(MetricEventsFailed, "Events given up on and passed to OnFailure, by reason.")
	t.deduplicated = counter(MetricEventsDeduplicated, "Replays of an accepted messageId that were not enqueued again.")
	t.redelivered = counter(MetricEventsRedelivered, "Events a durable queue handed out that may have been delivered before.")
	t.unrouted = counter(MetricEventsUnrouted, "Events accepted for no integration.")
	t.depth = gauge(MetricQueueDepth, "{event}", "Events accepted for the integration and not yet delivered or failed.")
	t.bytes = gauge(MetricQueueBytes, "By", "Size of the events accepted for the integration and not yet delivered or failed.")
	t.ready = gauge(MetricIntegrationReady, "{integration}", "1 when the integration is initialized and taking events, else 0.")
	var err error
	t.age, err = meter.Float64ObservableGauge(MetricQueueOldestAge, metric.WithUnit("s"),
		metric.WithDescription("How long the oldest event not yet delivered or failed has waited; 0 when none."))
	errs = append(errs, err)
	instruments := []metric.Observable{t.accepted, t.delivered, t.retried, t.failed, t.deduplicated, t.redelivered,
		t.unrouted, t.depth, t.bytes, t.ready, t.age}
	if t.sized != nil {
		t.storage = gauge(MetricQueueStorageSize, "By", "Bytes the durable queue holds.")
		instruments = append(instruments, t.storage)
	}
	t.duration, err = meter.Float64Histogram(MetricDeliveryDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of the calls to the integration, one per event or per batch."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	errs = append(errs, err)
	t.batch, err = meter.Int64Histogram(MetricDeliveryBatchSize, metric.WithUnit("{event}"),
		metric.WithDescription("Events in each batch handed to the integration."),
		metric.WithExplicitBucketBoundaries(batchBuckets...))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// The callback stays registered after Shutdown, so that the provider's
	// last export, at its own shutdown, has the final counts.
	_, err = meter.RegisterCallback(t.observe, instruments...)
	return err
}

// observe reports the counters and gauges of every lane.
func (t *telemetry) observe(_ context.Context, o metric.Observer) error {
	now := time.Now()
	for _, l := range t.m.lanes {
		lt := l.tel
		o.ObserveInt64(t.accepted, int64(l.accepted.Load()), lt.observe...)
		o.ObserveInt64(t.delivered, int64(l.delivered.Load()), lt.observe...)
		o.ObserveInt64(t.retried, int64(l.retried.Load()), lt.observe...)
		o.ObserveInt64(t.deduplicated, int64(l.deduplicated.Load()), lt.observe...)
		o.ObserveInt64(t.redelivered, int64(l.redelivered.Load()), lt.observe...)
		for r := range numReasons {
			o.ObserveInt64(t.failed, int64(lt.failedBy[r].Load()), lt.failedObserve[r]...)
		}
		rs := l.reader.Stats()
		o.ObserveInt64(t.depth, int64(rs.Unsettled), lt.observe...)
		o.ObserveInt64(t.bytes, rs.Bytes, lt.observe...)
		var age float64
		if !rs.Oldest.IsZero() {
			age = max(now.Sub(rs.Oldest), 0).Seconds()
		}
		o.ObserveFloat64(t.age, age, lt.observe...)
		l.mu.Lock()
		ready := l.ready
		l.mu.Unlock()
		var r int64
		if ready {
			r = 1
		}
		o.ObserveInt64(t.ready, r, lt.observe...)
	}
	o.ObserveInt64(t.unrouted, int64(t.m.unrouted.Load()))
	if t.sized != nil {
		o.ObserveInt64(t.storage, t.sized.Size())
	}
	return nil
}

// laneTelemetry is one lane's share: attribute sets built once, failure
// counters by reason, and the outcome of its recent calls, which readiness
// reads.
type laneTelemetry struct {
	t        *telemetry
	l        *lane
	spanName string
	attr     attribute.KeyValue

	observe       []metric.ObserveOption
	failedObserve [numReasons][]metric.ObserveOption
	batchRecord   []metric.RecordOption
	callRecord    [numOutcomes][]metric.RecordOption

	failedBy [numReasons]atomic.Uint64

	// The recent calls: when one last delivered and last failed (Unix
	// nanoseconds), how many have failed in a row, and the last error.
	lastOK, lastFail atomic.Int64
	streak           atomic.Int64
	lastErr          atomic.Pointer[errBox]
}

type errBox struct{ err error }

func newLaneTelemetry(t *telemetry, l *lane) *laneTelemetry {
	lt := &laneTelemetry{t: t, l: l, spanName: "deliver " + l.name, attr: AttrIntegration.String(l.name)}
	set := attribute.NewSet(lt.attr)
	lt.observe = []metric.ObserveOption{metric.WithAttributeSet(set)}
	lt.batchRecord = []metric.RecordOption{metric.WithAttributeSet(set)}
	for r := range numReasons {
		lt.failedObserve[r] = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(lt.attr, AttrFailureReason.String(reasonNames[r])))}
	}
	for o := range numOutcomes {
		lt.callRecord[o] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(lt.attr, AttrOutcome.String(outcomeNames[o])))}
	}
	return lt
}

// countFailure counts an event failed with err by its reason.
func (lt *laneTelemetry) countFailure(err error) {
	lt.failedBy[lt.reason(err)].Add(1)
}

// reason classifies the error an event failed with.
func (lt *laneTelemetry) reason(err error) failReason {
	var pe *panicError
	switch cause := context.Cause(lt.l.ctx); {
	case errors.As(err, &pe):
		return reasonPanic
	case cause != nil && errors.Is(err, cause):
		return reasonShutdown
	case IsPermanent(err):
		return reasonPermanent
	default:
		return reasonExhausted
	}
}

// deliveryCall is one call to an integration as telemetry sees it: its span
// and its start.
type deliveryCall struct {
	lt    *laneTelemetry
	span  trace.Span
	start time.Time
	n     int // the events of a batch; 0 for an event's own call
}

// startEvent starts the span of a call delivering one event. The span is a
// root, linked to the span of the request that accepted the event.
// Attributes and links are set only when the span records, so that a host
// without tracing pays for no more than the no-op span.
func (lt *laneTelemetry) startEvent(it *item) deliveryCall {
	c := deliveryCall{lt: lt, start: time.Now()}
	_, c.span = lt.t.tracer.Start(context.Background(), lt.spanName)
	if c.span.IsRecording() {
		f := it.rec.Event.Fields()
		c.span.SetAttributes(lt.attr, AttrEventType.String(string(f.Type)), AttrMessageID.String(f.MessageID),
			AttrAttempt.Int(it.attempts))
		if sc := spanContextOf(it.rec.TraceParent); sc.IsValid() {
			c.span.AddLink(trace.Link{SpanContext: sc})
		}
	}
	return c
}

// startBatch starts the span of a call delivering a batch, linked to the
// spans of the requests that accepted its events (up to the SDK's default
// limit of links).
func (lt *laneTelemetry) startBatch(items []*item) deliveryCall {
	c := deliveryCall{lt: lt, start: time.Now(), n: len(items)}
	_, c.span = lt.t.tracer.Start(context.Background(), lt.spanName)
	if !c.span.IsRecording() {
		return c
	}
	attempt := 0
	linked := map[string]bool{}
	for _, it := range items {
		attempt = max(attempt, it.attempts)
		tp := it.rec.TraceParent
		if tp == "" || linked[tp] || len(linked) >= maxLinksPerBatch {
			continue
		}
		linked[tp] = true
		if sc := spanContextOf(tp); sc.IsValid() {
			c.span.AddLink(trace.Link{SpanContext: sc})
		}
	}
	c.span.SetAttributes(lt.attr, AttrBatchSize.Int(len(items)), AttrAttempt.Int(attempt))
	return c
}

// context returns ctx holding the call's span, so that the integration's own
// spans are its children.
func (c deliveryCall) context(ctx context.Context) context.Context {
	if !c.span.SpanContext().IsValid() {
		return ctx
	}
	return trace.ContextWithSpan(ctx, c.span)
}

// end ends the call of one event: err is what it returned, retry whether it
// will be retried.
func (c deliveryCall) end(err error, retry bool) {
	o := outcomeDelivered
	switch {
	case err != nil && retry:
		o = outcomeRetried
	case err != nil:
		o = outcomeFailed
	}
	c.finish(o, err)
}

// endBatch ends the call of a batch: err is what Batch returned, and retried
// how many of its events will be retried.
func (c deliveryCall) endBatch(err error, retried int) {
	delivered := c.n
	if err != nil {
		delivered = 0
		var be *BatchError
		if errors.As(err, &be) && be.valid(c.n) {
			delivered = c.n - len(be.Failed)
		}
	}
	o := outcomeFailed
	switch {
	case delivered == c.n:
		o = outcomeDelivered
	case delivered > 0:
		o = outcomePartial
	case retried > 0:
		o = outcomeRetried
	}
	c.lt.t.batch.Record(context.Background(), int64(c.n), c.lt.batchRecord...)
	c.finish(o, err)
}

func (c deliveryCall) finish(o outcome, err error) {
	lt := c.lt
	now := time.Now()
	lt.t.duration.Record(context.Background(), now.Sub(c.start).Seconds(), lt.callRecord[o]...)
	if o == outcomeDelivered || o == outcomePartial {
		lt.lastOK.Store(now.UnixNano())
		lt.streak.Store(0)
	} else {
		lt.lastFail.Store(now.UnixNano())
		lt.streak.Add(1)
		lt.lastErr.Store(&errBox{err})
	}
	if c.span.IsRecording() {
		c.span.SetAttributes(AttrOutcome.String(outcomeNames[o]))
		if o == outcomeFailed {
			c.span.SetAttributes(AttrFailureReason.String(reasonNames[lt.reason(lt.l.withCause(err))]))
		}
		if err != nil {
			c.span.SetStatus(codes.Error, err.Error())
		}
	}
	c.span.End()
}

// traceParent returns the W3C traceparent of the span in ctx (the request's,
// or one the request carried), or "" when there is none.
func traceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	var tp string
	propagation.TraceContext{}.Inject(ctx, traceParentCarrier{&tp})
	return tp
}

// spanContextOf parses a W3C traceparent; the result is invalid if tp is
// empty or malformed.
func spanContextOf(tp string) trace.SpanContext {
	if tp == "" {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), traceParentCarrier{&tp})
	return trace.SpanContextFromContext(ctx)
}

// traceParentCarrier carries a traceparent alone, for the TraceContext
// propagator to write and read.
type traceParentCarrier struct{ tp *string }

func (c traceParentCarrier) Get(key string) string {
	if key == "traceparent" {
		return *c.tp
	}
	return ""
}

func (c traceParentCarrier) Set(key, value string) {
	if key == "traceparent" {
		*c.tp = value
	}
}

func (c traceParentCarrier) Keys() []string { return []string{"traceparent"} }

// handlerTelemetry holds a Handler's instruments, its propagator and the
// limiter of its log lines about refused requests.
//
// Requests and events are counted in the cell of their route and status and
// observed from there at each collection, so that a request pays an atomic
// add for them rather than a measurement; the body size is a measurement.
type handlerTelemetry struct {
	log  *slog.Logger
	prop propagation.TextMapPropagator
	w3c  bool // prop is TraceContext: without a traceparent header there is nothing to read

	requests, events metric.Int64ObservableCounter
	bodySize         metric.Int64Histogram
	// cells holds the counters and attributes of each route and common
	// status, made on first use; rare those of other statuses.
	cells [][len(commonStatuses)]atomic.Pointer[attrCell]
	mu    sync.Mutex
	rare  map[[2]int]*attrCell

	limiter    *rate.Limiter
	suppressed atomic.Int64
}

// attrCell is the counters and attribute options of one route and status.
type attrCell struct {
	requests, events atomic.Int64
	observe          []metric.ObserveOption
	record           []metric.RecordOption
}

// The values of AttrRoute: the Handler's routes, then "other".
var routeNames, routeIndex = func() ([]string, map[string]int) {
	names := []string{metricsRoute, "settings", "pixel"}
	for seg := range routes {
		names = append(names, seg)
	}
	slices.Sort(names)
	names = append(names, "other")
	index := make(map[string]int, len(names))
	for i, n := range names {
		index[n] = i
	}
	return names, index
}()

// commonStatuses are the statuses whose attribute options are kept.
var commonStatuses = [...]int{200, 204, 400, 401, 403, 404, 405, 413, 415, 500, 503}

func statusIndex(status int) int {
	for i, s := range commonStatuses {
		if s == status {
			return i
		}
	}
	return -1
}

func routeOf(path string) int {
	switch {
	case pixelType(path) != "":
		return routeIndex["pixel"]
	case isGetRoute(path):
		return routeIndex["settings"]
	}
	if i, ok := routeIndex[lastSegment(path)]; ok {
		return i
	}
	return len(routeNames) - 1 // other
}

func newHandlerTelemetry(opts *HandlerOptions, log *slog.Logger) *handlerTelemetry {
	mp, prop := opts.MeterProvider, opts.Propagator
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	t := &handlerTelemetry{log: log, prop: prop,
		cells:   make([][len(commonStatuses)]atomic.Pointer[attrCell], len(routeNames)),
		rare:    map[[2]int]*attrCell{},
		limiter: rate.NewLimiter(rate.Every(time.Second), refusedLogBurst)}
	_, t.w3c = prop.(propagation.TraceContext)
	if err := t.instruments(mp.Meter(ScopeName)); err != nil {
		log.Warn("opentrack: the meter provider refused an instrument; metrics are off", slog.Any("error", err))
		_ = t.instruments(noop.Meter{})
	}
	return t
}

// instruments creates the Handler's instruments. Its callback stays
// registered for as long as the MeterProvider lives.
func (t *handlerTelemetry) instruments(meter metric.Meter) error {
	var err1, err2, err3, err4 error
	t.requests, err1 = meter.Int64ObservableCounter(MetricHTTPRequests, metric.WithUnit("{request}"),
		metric.WithDescription("Requests, by route and status."))
	t.events, err2 = meter.Int64ObservableCounter(MetricHTTPEvents, metric.WithUnit("{event}"),
		metric.WithDescription("Events read from request bodies, valid or not, by route and status."))
	t.bodySize, err3 = meter.Int64Histogram(MetricHTTPRequestBodySize, metric.WithUnit("By"),
		metric.WithDescription("Size of the request bodies read, after gzip decompression."),
		metric.WithExplicitBucketBoundaries(bodyBuckets...))
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	_, err4 = meter.RegisterCallback(t.observe, t.requests, t.events)
	return err4
}

// observe reports the request and event counters of every cell in use.
func (t *handlerTelemetry) observe(_ context.Context, o metric.Observer) error {
	report := func(c *attrCell) {
		o.ObserveInt64(t.requests, c.requests.Load(), c.observe...)
		o.ObserveInt64(t.events, c.events.Load(), c.observe...)
	}
	for i := range t.cells {
		for j := range t.cells[i] {
			if c := t.cells[i][j].Load(); c != nil {
				report(c)
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.rare {
		report(c)
	}
	return nil
}

// cell returns the cell of a route and status, making it on first use.
func (t *handlerTelemetry) cell(route, status int) *attrCell {
	si := statusIndex(status)
	if si < 0 {
		t.mu.Lock()
		defer t.mu.Unlock()
		k := [2]int{route, status}
		if t.rare[k] == nil {
			t.rare[k] = newAttrCell(route, status)
		}
		return t.rare[k]
	}
	p := &t.cells[route][si]
	if c := p.Load(); c != nil {
		return c
	}
	p.CompareAndSwap(nil, newAttrCell(route, status)) // or a concurrent request made it first
	return p.Load()
}

func newAttrCell(route, status int) *attrCell {
	o := metric.WithAttributeSet(attribute.NewSet(AttrRoute.String(routeNames[route]), AttrHTTPStatusCode.Int(status)))
	return &attrCell{observe: []metric.ObserveOption{o}, record: []metric.RecordOption{o}}
}

// observedWriter notes what the Handler answered to one request: its
// status, what it read, and the answer of a refusal, for the log. They are
// pooled: a request allocates none.
type observedWriter struct {
	http.ResponseWriter
	route   int
	status  int
	events  int
	body    int // bytes read; -1 when the body was not read
	capture bool
	reason  []byte
}

var writerPool = sync.Pool{New: func() any { return new(observedWriter) }}

// WriteHeader implements http.ResponseWriter.
func (ow *observedWriter) WriteHeader(code int) {
	if ow.status == 0 && code >= 200 {
		ow.status = code
	}
	ow.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (ow *observedWriter) Write(b []byte) (int, error) {
	if ow.status == 0 {
		ow.status = http.StatusOK
	}
	if ow.capture && ow.status >= 400 && ow.status < 500 {
		n := min(len(b), refusedReasonMaxLen-len(ow.reason))
		ow.reason = append(ow.reason, b[:n]...)
	}
	return ow.ResponseWriter.Write(b)
}

// Unwrap returns the ResponseWriter for [http.ResponseController].
func (ow *observedWriter) Unwrap() http.ResponseWriter { return ow.ResponseWriter }

// unwrapWriter returns the host's ResponseWriter: [http.MaxBytesReader]
// tells it, and only it, to close the connection after a body too large.
func unwrapWriter(w http.ResponseWriter) http.ResponseWriter {
	if ow, ok := w.(*observedWriter); ok {
		return ow.ResponseWriter
	}
	return w
}

// begin starts observing a request; end records it.
func (t *handlerTelemetry) begin(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	ow := writerPool.Get().(*observedWriter)
	ow.ResponseWriter, ow.route, ow.status, ow.events, ow.body = w, routeOf(r.URL.Path), 0, 0, -1
	ow.capture = t.log.Enabled(r.Context(), slog.LevelDebug)
	ow.reason = ow.reason[:0]
	return ow
}

// noteRequest notes the size of the body read and the events decoded from it.
func noteRequest(w http.ResponseWriter, size int, c *call) {
	ow, ok := w.(*observedWriter)
	if !ok {
		return
	}
	ow.body = size
	if c != nil {
		ow.events = len(c.events) + len(c.rejected) + c.refused
	}
}

func (t *handlerTelemetry) end(w http.ResponseWriter, r *http.Request) {
	ow, ok := w.(*observedWriter)
	if !ok {
		return
	}
	status := ow.status
	if status == 0 {
		status = http.StatusOK // what net/http answers for a handler that wrote nothing
	}
	ctx := r.Context()
	c := t.cell(ow.route, status)
	c.requests.Add(1)
	if ow.events > 0 {
		c.events.Add(int64(ow.events))
	}
	if ow.body >= 0 {
		t.bodySize.Record(ctx, int64(ow.body), c.record...)
	}
	if ow.capture && status >= 400 && status < 500 {
		t.logRefused(ctx, r, ow, status)
	}
	ow.ResponseWriter = nil
	writerPool.Put(ow)
}

// logRefused logs a request refused with a 4xx at debug level, with the
// answer that says why, so that an operator can see why an SDK's events
// are dropped. At most refusedLogBurst lines are logged at once and one a
// second after that; each line counts the ones suppressed before it.
func (t *handlerTelemetry) logRefused(ctx context.Context, r *http.Request, ow *observedWriter, status int) {
	if !t.limiter.Allow() {
		t.suppressed.Add(1)
		return
	}
	t.log.DebugContext(ctx, "opentrack: request refused",
		slog.String("route", routeNames[ow.route]),
		slog.Int("status", status),
		slog.String("reason", string(bytes.TrimSpace(ow.reason))),
		slog.String("userAgent", r.UserAgent()),
		slog.String("origin", r.Header.Get("Origin")),
		slog.Int64("suppressed", t.suppressed.Swap(0)))
}

// traceContext returns the context whose span the delivery spans of the
// request's events link to: the host's span if the request runs in one,
// else the trace context the request carries, if any.
func (t *handlerTelemetry) traceContext(r *http.Request) context.Context {
	ctx := r.Context()
	if trace.SpanContextFromContext(ctx).IsValid() || (t.w3c && r.Header["Traceparent"] == nil) {
		return ctx
	}
	return t.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
}
