package opentrack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// metrics reads what a ManualReader collected.
type metrics struct {
	t  *testing.T
	rm metricdata.ResourceMetrics
}

func collectMetrics(t *testing.T, r *sdkmetric.ManualReader) metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	return metrics{t, rm}
}

func (m metrics) find(name string) metricdata.Metrics {
	m.t.Helper()
	for _, sm := range m.rm.ScopeMetrics {
		for _, x := range sm.Metrics {
			if x.Name == name {
				return x
			}
		}
	}
	m.t.Fatalf("no metric %s", name)
	return metricdata.Metrics{}
}

func matches(set attribute.Set, attrs []attribute.KeyValue) bool {
	for _, kv := range attrs {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// int64 returns the value of the sum or gauge point of name that has attrs,
// and fails if there is none or more than one.
func (m metrics) int64(name string, attrs ...attribute.KeyValue) int64 {
	m.t.Helper()
	var points []metricdata.DataPoint[int64]
	switch d := m.find(name).Data.(type) {
	case metricdata.Sum[int64]:
		if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
			m.t.Errorf("%s is not a cumulative counter", name)
		}
		points = d.DataPoints
	case metricdata.Gauge[int64]:
		points = d.DataPoints
	default:
		m.t.Fatalf("%s is a %T", name, d)
	}
	var got []int64
	for _, p := range points {
		if matches(p.Attributes, attrs) {
			got = append(got, p.Value)
		}
	}
	if len(got) != 1 {
		m.t.Fatalf("%s%v: %d points, want 1", name, attrs, len(got))
	}
	return got[0]
}

// histogram returns the count and sum of the points of name that have attrs.
func (m metrics) histogram(name string, attrs ...attribute.KeyValue) (count uint64, sum float64) {
	m.t.Helper()
	switch d := m.find(name).Data.(type) {
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			if matches(p.Attributes, attrs) {
				count, sum = count+p.Count, sum+p.Sum
			}
		}
	case metricdata.Histogram[int64]:
		for _, p := range d.DataPoints {
			if matches(p.Attributes, attrs) {
				count, sum = count+p.Count, sum+float64(p.Sum)
			}
		}
	default:
		m.t.Fatalf("%s is a %T", name, d)
	}
	return count, sum
}

func integration(name string) attribute.KeyValue { return opentrack.AttrIntegration.String(name) }
func reason(r string) attribute.KeyValue         { return opentrack.AttrFailureReason.String(r) }
func outcomeIs(o string) attribute.KeyValue      { return opentrack.AttrOutcome.String(o) }
func route(r string) attribute.KeyValue          { return opentrack.AttrRoute.String(r) }
func status(s int) attribute.KeyValue            { return opentrack.AttrHTTPStatusCode.Int(s) }

// TestMetricsAfterAScriptedRun sends requests through the Handler to a
// Manager with a healthy, a flaky, a failing and a batching integration, and
// reads every counter back through an SDK ManualReader.
func TestMetricsAfterAScriptedRun(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	good := newRecorder("Good")
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	flaky := opentrack.Func("Flaky", func(_ context.Context, e spec.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if id := e.Fields().MessageID; !seen[id] {
			seen[id] = true
			return errTransient // each event's first attempt
		}
		return nil
	})
	bad := opentrack.Func("Bad", func(_ context.Context, e spec.Event) error {
		switch id := e.Fields().MessageID; {
		case strings.HasPrefix(id, "p"):
			return opentrack.Permanent(errors.New("400 Bad Request"))
		case strings.HasPrefix(id, "x"):
			return errTransient
		case id == "boom":
			panic("boom")
		}
		return nil
	})
	batch := &batcher{Base: opentrack.Base{ID: "Batch"}}
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{good, flaky, bad, batch},
		MeterProvider: mp, Delivery: opentrack.Delivery{Retry: fastRetry}})
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}, MeterProvider: mp, Logger: quietLogger()})
	send := func(path, key, body string, want int) {
		t.Helper()
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.SetBasicAuth(key, "")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != want {
			t.Fatalf("%s %s: %d %s, want %d", path, body, w.Code, w.Body, want)
		}
	}
	send("/track", "wk", `{"userId":"u1","event":"A","messageId":"m1"}`, 200)
	send("/batch", "wk", `{"batch":[{"type":"track","userId":"u2","event":"A","messageId":"m2"},
		{"type":"track","userId":"u3","event":"A","messageId":"p1"},
		{"type":"track","userId":"u4","event":"A","messageId":"x1"},
		{"type":"identify","userId":"u5","messageId":"boom"},
		{"type":"track","userId":"u6"}]}`, 200)
	send("/track", "wk", `{"userId":"u1","event":"A","messageId":"m1"}`, 200) // a replay
	send("/t", "nope", `{"userId":"u1","event":"A"}`, 401)
	send("/track", "wk", `{"userId":`, 400)      // no event read
	send("/track", "wk", `{"userId":"u1"}`, 400) // an event read and refused
	flush(t, m)

	got := collectMetrics(t, reader)
	const events = 5 // m1, m2, p1, x1, boom
	for _, name := range []string{"Good", "Flaky", "Bad", "Batch"} {
		in := integration(name)
		if n := got.int64(opentrack.MetricEventsAccepted, in); n != events {
			t.Errorf("%s accepted = %d, want %d", name, n, events)
		}
		if n := got.int64(opentrack.MetricEventsDeduplicated, in); n != 1 {
			t.Errorf("%s deduplicated = %d, want 1", name, n)
		}
		if n := got.int64(opentrack.MetricQueueDepth, in); n != 0 {
			t.Errorf("%s queue depth = %d after Flush, want 0", name, n)
		}
		if n := got.int64(opentrack.MetricIntegrationReady, in); n != 1 {
			t.Errorf("%s ready = %d, want 1", name, n)
		}
		var failed int64
		for _, r := range []string{"permanent", "exhausted", "shutdown", "panic"} {
			failed += got.int64(opentrack.MetricEventsFailed, in, reason(r))
		}
		if s := statsOf(t, m, name); uint64(failed) != s.Failed || uint64(got.int64(opentrack.MetricEventsDelivered, in)) != s.Delivered ||
			uint64(got.int64(opentrack.MetricEventsRetried, in)) != s.Retried {
			t.Errorf("%s: metrics differ from Stats %+v", name, s)
		}
	}
	want := []struct {
		name  string
		attrs []attribute.KeyValue
		n     int64
	}{
		{opentrack.MetricEventsDelivered, []attribute.KeyValue{integration("Good")}, events},
		{opentrack.MetricEventsRetried, []attribute.KeyValue{integration("Good")}, 0},
		{opentrack.MetricEventsDelivered, []attribute.KeyValue{integration("Flaky")}, events},
		{opentrack.MetricEventsRetried, []attribute.KeyValue{integration("Flaky")}, events},
		{opentrack.MetricEventsDelivered, []attribute.KeyValue{integration("Bad")}, 2}, // m1, m2
		{opentrack.MetricEventsFailed, []attribute.KeyValue{integration("Bad"), reason("permanent")}, 1},
		{opentrack.MetricEventsFailed, []attribute.KeyValue{integration("Bad"), reason("exhausted")}, 1},
		{opentrack.MetricEventsFailed, []attribute.KeyValue{integration("Bad"), reason("panic")}, 1},
		{opentrack.MetricEventsFailed, []attribute.KeyValue{integration("Bad"), reason("shutdown")}, 0},
		{opentrack.MetricEventsRetried, []attribute.KeyValue{integration("Bad")}, int64(fastRetry.MaxAttempts - 1)},
		{opentrack.MetricEventsFailed, []attribute.KeyValue{integration("Good"), reason("permanent")}, 0},
		{opentrack.MetricEventsDelivered, []attribute.KeyValue{integration("Batch")}, events},
		{opentrack.MetricEventsRedelivered, []attribute.KeyValue{integration("Batch")}, 0},
		{opentrack.MetricEventsUnrouted, nil, 0},
		{opentrack.MetricHTTPRequests, []attribute.KeyValue{route("track"), status(200)}, 2},
		{opentrack.MetricHTTPRequests, []attribute.KeyValue{route("batch"), status(200)}, 1},
		{opentrack.MetricHTTPRequests, []attribute.KeyValue{route("t"), status(401)}, 1},
		{opentrack.MetricHTTPRequests, []attribute.KeyValue{route("track"), status(400)}, 2},
		{opentrack.MetricHTTPEvents, []attribute.KeyValue{route("track"), status(400)}, 1},
		{opentrack.MetricHTTPEvents, []attribute.KeyValue{route("track"), status(200)}, 2},
		{opentrack.MetricHTTPEvents, []attribute.KeyValue{route("batch"), status(200)}, 5}, // 4 valid, 1 refused item
	}
	for _, w := range want {
		if n := got.int64(w.name, w.attrs...); n != w.n {
			t.Errorf("%s%v = %d, want %d", w.name, w.attrs, n, w.n)
		}
	}
	calls := []struct {
		in, outcome string
		n           uint64
	}{
		{"Good", "delivered", events},
		{"Flaky", "retried", events},
		{"Flaky", "delivered", events},
		{"Bad", "delivered", 2},
		{"Bad", "failed", 3},
		{"Bad", "retried", uint64(fastRetry.MaxAttempts - 1)},
	}
	for _, c := range calls {
		if n, _ := got.histogram(opentrack.MetricDeliveryDuration, integration(c.in), outcomeIs(c.outcome)); n != c.n {
			t.Errorf("%s calls %s = %d, want %d", c.in, c.outcome, n, c.n)
		}
	}
	if n, sum := got.histogram(opentrack.MetricDeliveryBatchSize, integration("Batch")); n == 0 || sum != events {
		t.Errorf("batch sizes: %d batches of %v events, want %d events", n, sum, events)
	}
	if n, sum := got.histogram(opentrack.MetricHTTPRequestBodySize, route("track"), status(200)); n != 2 || sum != 2*float64(len(`{"userId":"u1","event":"A","messageId":"m1"}`)) {
		t.Errorf("track bodies: %d of %v bytes", n, sum)
	}
	if n, _ := got.histogram(opentrack.MetricHTTPRequestBodySize, route("t"), status(401)); n != 0 {
		t.Errorf("a body refused by its header key was counted as read (%d)", n)
	}
}

// TestMetricsCountShutdownFailuresAfterShutdown: events failed by Shutdown's
// deadline are counted as such, and the counters are still collected after
// Shutdown, for the provider's last export.
func TestMetricsCountShutdownFailuresAfterShutdown(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	slow := newBlocker("Slow")
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{slow}, Logger: quietLogger(),
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), Delivery: opentrack.Delivery{Workers: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := m.Enqueue(t.Context(), track(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	<-slow.started
	before := collectMetrics(t, reader)
	if n := before.int64(opentrack.MetricQueueDepth, integration("Slow")); n != 3 {
		t.Errorf("queue depth = %d while the destination hangs, want 3", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := m.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	got := collectMetrics(t, reader)
	if n := got.int64(opentrack.MetricEventsFailed, integration("Slow"), reason("shutdown")); n != 3 {
		t.Errorf("failed{shutdown} = %d, want 3", n)
	}
	if n, _ := got.histogram(opentrack.MetricDeliveryDuration, integration("Slow"), outcomeIs("failed")); n != 1 {
		t.Errorf("calls failed = %d, want the 1 call cut by the deadline", n)
	}
}

// spanCapture is an integration that notes the span its calls run in.
type spanCapture struct {
	opentrack.Base
	mu    sync.Mutex
	spans []trace.SpanContext
	fail  bool // fail each event's first attempt
	seen  map[string]bool
}

func (s *spanCapture) Track(ctx context.Context, e *spec.Track) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spans = append(s.spans, trace.SpanContextFromContext(ctx))
	if s.fail && !s.seen[e.MessageID] {
		s.seen[e.MessageID] = true
		return errTransient
	}
	return nil
}

func linkedTo(s sdktrace.ReadOnlySpan) []trace.SpanContext {
	var out []trace.SpanContext
	for _, l := range s.Links() {
		out = append(out, l.SpanContext)
	}
	return out
}

func attrsOf(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

// TestDeliverySpansLinkToTheRequest sends requests through the real Handler,
// over HTTP, one carrying a W3C traceparent and one running inside a host's
// span, and checks each delivery span: its attributes, its outcome, and its
// link to the request's span, through the queue.
func TestDeliverySpansLinkToTheRequest(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	one := &spanCapture{Base: opentrack.Base{ID: "One"}, fail: true, seen: map[string]bool{}}
	batch := &batcher{Base: opentrack.Base{ID: "Batch"}}
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{one, batch}, TracerProvider: tp,
		Delivery: opentrack.Delivery{Retry: fastRetry}})
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{Logger: quietLogger()})
	hostSpans := make(chan trace.SpanContext, 1)
	host := tp.Tracer("host")
	mux := http.NewServeMux()
	mux.Handle("/v1/", h)
	mux.Handle("/hosted/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := host.Start(r.Context(), "POST /hosted")
		defer span.End()
		hostSpans <- span.SpanContext()
		h.ServeHTTP(w, r.WithContext(ctx))
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	post := func(path, body, traceparent string) {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
		if traceparent != "" {
			req.Header.Set("traceparent", traceparent)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", path, res.StatusCode)
		}
	}
	const (
		traceA = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanA  = "00f067aa0ba902b7"
	)
	post("/v1/track", `{"userId":"u1","event":"A","messageId":"m1"}`, "00-"+traceA+"-"+spanA+"-01")
	post("/hosted/track", `{"userId":"u2","event":"B","messageId":"m2"}`, "")
	hostSpan := <-hostSpans
	post("/v1/track", `{"userId":"u3","event":"C","messageId":"m3"}`, "")
	flush(t, m)

	requestA := trace.NewSpanContext(trace.SpanContextConfig{TraceID: mustTraceID(t, traceA), SpanID: mustSpanID(t, spanA),
		TraceFlags: trace.FlagsSampled, Remote: true})
	wantLink := map[string]trace.SpanContext{"m1": requestA, "m2": hostSpan}
	attempts := map[string][]string{} // messageId → outcomes in order
	var oneSpans, batchSpans []sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		switch s.Name() {
		case "deliver One":
			oneSpans = append(oneSpans, s)
		case "deliver Batch":
			batchSpans = append(batchSpans, s)
		}
	}
	for _, s := range oneSpans {
		a := attrsOf(s)
		id := a[opentrack.AttrMessageID].AsString()
		if a[opentrack.AttrIntegration].AsString() != "One" || a[opentrack.AttrEventType].AsString() != "track" {
			t.Errorf("span %s: attributes %v", id, a)
		}
		if s.Parent().IsValid() {
			t.Errorf("span %s has a parent; a delivery span is a root, linked to its request", id)
		}
		outcome := a[opentrack.AttrOutcome].AsString()
		if n := a[opentrack.AttrAttempt].AsInt64(); n != int64(len(attempts[id])+1) {
			t.Errorf("span %s: attempt %d after %v", id, n, attempts[id])
		}
		attempts[id] = append(attempts[id], outcome)
		if outcome == "retried" && s.Status().Code != codes.Error {
			t.Errorf("span %s: a failed attempt has status %v", id, s.Status())
		}
		links := linkedTo(s)
		if want, ok := wantLink[id]; ok {
			if len(links) != 1 || keyOf(links[0]) != keyOf(want) || !links[0].IsSampled() {
				t.Errorf("span %s links to %v, want %v", id, links, want)
			}
		} else if len(links) != 0 {
			t.Errorf("span %s of a request without trace context links to %v", id, links)
		}
	}
	for _, id := range []string{"m1", "m2", "m3"} {
		if got := strings.Join(attempts[id], ","); got != "retried,delivered" {
			t.Errorf("%s: spans with outcomes %s, want retried,delivered", id, got)
		}
	}
	// The integration ran inside its delivery span.
	delivery := map[spanKey]bool{}
	for _, s := range oneSpans {
		delivery[keyOf(s.SpanContext())] = true
	}
	one.mu.Lock()
	for i, sc := range one.spans {
		if !delivery[keyOf(sc)] {
			t.Errorf("call %d ran in span %v, not in a delivery span", i, sc)
		}
		delete(delivery, keyOf(sc))
	}
	if len(one.spans) != 6 || len(delivery) != 0 {
		t.Errorf("%d calls, %d delivery spans without a call; want 6 calls, one per span", len(one.spans), len(delivery))
	}
	one.mu.Unlock()

	linked := map[spanKey]bool{}
	events := int64(0)
	for _, s := range batchSpans {
		events += attrsOf(s)[opentrack.AttrBatchSize].AsInt64()
		for _, l := range linkedTo(s) {
			linked[keyOf(l)] = true
		}
	}
	if events != 3 || len(linked) != 2 || !linked[keyOf(requestA)] || !linked[keyOf(hostSpan)] {
		t.Errorf("batch spans: %d events, links %v; want 3 events linked to %v and %v", events, linked, requestA, hostSpan)
	}
}

type spanKey struct {
	trace.TraceID
	trace.SpanID
}

func keyOf(sc trace.SpanContext) spanKey { return spanKey{sc.TraceID(), sc.SpanID()} }

func mustTraceID(t *testing.T, s string) trace.TraceID {
	id, err := trace.TraceIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustSpanID(t *testing.T, s string) trace.SpanID {
	id, err := trace.SpanIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// logBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(s.b.Bytes()), []byte("\n")) {
		var v map[string]any
		if json.Unmarshal(line, &v) == nil {
			out = append(out, v)
		}
	}
	return out
}

// TestHandlerLogsRefusalsAtDebugRateLimited: a request refused with a 4xx is
// logged at debug level with the answer that says why, a burst at most.
func TestHandlerLogsRefusalsAtDebugRateLimited(t *testing.T) {
	var buf logBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{newRecorder("A")}})
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}, Logger: log})
	const n = 40
	for range n {
		req := httptest.NewRequest("POST", "/v1/track", strings.NewReader(`{"userId":"u1","event":"A"}`))
		req.SetBasicAuth("stale", "")
		req.Header.Set("User-Agent", "analytics-node-next/latest")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	lines := buf.lines()
	if len(lines) < 10 || len(lines) >= n {
		t.Fatalf("%d lines for %d refusals, want a burst of 10 and few more", len(lines), n)
	}
	first := lines[0]
	if first["level"] != "DEBUG" || first["msg"] != "opentrack: request refused" || first["status"] != float64(401) ||
		first["route"] != "track" || !strings.Contains(fmt.Sprint(first["reason"]), "Invalid write key") ||
		first["userAgent"] != "analytics-node-next/latest" {
		t.Errorf("log line = %v", first)
	}

	// Nothing is logged at info level.
	var quiet logBuffer
	h = opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}, Logger: slog.New(slog.NewJSONHandler(&quiet, nil))})
	req := httptest.NewRequest("POST", "/v1/track", strings.NewReader(`{}`))
	h.ServeHTTP(httptest.NewRecorder(), req)
	if l := quiet.lines(); len(l) != 0 {
		t.Errorf("logged at info level: %v", l)
	}
}

// statsAtEnd records, when a Batcher's delivery span ends, how many events
// the integration had delivered by then.
type statsAtEnd struct {
	*tracetest.SpanRecorder
	m              atomic.Pointer[opentrack.Manager]
	deliveredAtEnd atomic.Int64 // Delivered + 1; 0 while no span ended
}

func (p *statsAtEnd) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.Name() == "deliver B" {
		for _, st := range p.m.Load().Stats() {
			if st.Integration == "B" {
				p.deliveredAtEnd.Store(int64(st.Delivered) + 1)
			}
		}
	}
	p.SpanRecorder.OnEnd(s)
}

// TestBatchSpanEndsBeforeItsEventsSettle: a batch's delivery span has ended
// by the time its events count as delivered, so that whoever waits for them
// (Flush) finds the span ended, as for a single event's.
func TestBatchSpanEndsBeforeItsEventsSettle(t *testing.T) {
	p := &statsAtEnd{SpanRecorder: tracetest.NewSpanRecorder()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(p))
	b := &funcBatcher{Base: opentrack.Base{ID: "B"}, fn: func([]spec.Event) error { return nil }}
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{b}, TracerProvider: tp})
	p.m.Store(m)
	if err := m.Enqueue(t.Context(), track("m1")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	switch got := p.deliveredAtEnd.Load(); got {
	case 0:
		t.Error("no batch span had ended when Flush returned")
	case 1:
	default:
		t.Errorf("the batch span ended with Delivered = %d; want it ended before the event settled (0)", got-1)
	}
}
