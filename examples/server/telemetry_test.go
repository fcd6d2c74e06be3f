package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/slogtest"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// The tests give each server its own OPENTRACK_DATA_DIR, so that a durable
// queue's dedup window never holds another test's messageIds.

// postEvent sends body to the server's /v1 path with the write key "wk".
func postEvent(t *testing.T, url, body string, header map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.SetBasicAuth("wk", "")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode
}

// TestMetricsInPrometheusFormat reads /metrics with Prometheus' own parser
// and checks the families an operator's alerts use.
func TestMetricsInPrometheusFormat(t *testing.T) {
	addr, _ := startServer(t, map[string]string{"PORT": "0", "OPENTRACK_FILE": t.TempDir() + "/e.jsonl", "OPENTRACK_DATA_DIR": t.TempDir(), "WRITE_KEY": "wk"})
	for _, id := range []string{"m1", "m2", "m3"} {
		if code := postEvent(t, "http://"+addr+"/v1/track", `{"userId":"u","event":"E","messageId":"`+id+`"}`, nil); code != 200 {
			t.Fatalf("track: %d", code)
		}
	}
	if code := postEvent(t, "http://"+addr+"/v1/t", `{"userId":"u","event":"E","writeKey":"x"}`, map[string]string{"Authorization": "Basic eDo="}); code != 401 {
		t.Fatalf("a wrong key: %d", code)
	}
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("Prometheus' parser refuses /metrics: %v", err)
	}
	jsonl := map[string]string{"opentrack_integration": "JSON Lines"}
	for _, want := range []struct {
		name   string
		typ    dto.MetricType
		labels map[string]string
		value  float64 // checked when not negative
	}{
		{"opentrack_events_accepted_total", dto.MetricType_COUNTER, jsonl, 3},
		{"opentrack_events_delivered_total", dto.MetricType_COUNTER, jsonl, -1},
		{"opentrack_events_retried_total", dto.MetricType_COUNTER, jsonl, 0},
		{"opentrack_events_failed_total", dto.MetricType_COUNTER, map[string]string{"opentrack_integration": "JSON Lines", "opentrack_failure_reason": "permanent"}, 0},
		{"opentrack_events_failed_total", dto.MetricType_COUNTER, map[string]string{"opentrack_integration": "JSON Lines", "opentrack_failure_reason": "exhausted"}, 0},
		{"opentrack_events_deduplicated_total", dto.MetricType_COUNTER, jsonl, 0},
		{"opentrack_events_redelivered_total", dto.MetricType_COUNTER, jsonl, 0},
		{"opentrack_events_unrouted_total", dto.MetricType_COUNTER, nil, 0},
		{"opentrack_queue_depth", dto.MetricType_GAUGE, jsonl, -1},
		{"opentrack_queue_bytes", dto.MetricType_GAUGE, jsonl, -1},
		{"opentrack_queue_oldest_age_seconds", dto.MetricType_GAUGE, jsonl, -1},
		{"opentrack_integration_ready", dto.MetricType_GAUGE, jsonl, 1},
		{"opentrack_http_requests_total", dto.MetricType_COUNTER, map[string]string{"opentrack_route": "track", "http_response_status_code": "200"}, 3},
		{"opentrack_http_requests_total", dto.MetricType_COUNTER, map[string]string{"opentrack_route": "t", "http_response_status_code": "401"}, 1},
		{"opentrack_http_events_total", dto.MetricType_COUNTER, map[string]string{"opentrack_route": "track", "http_response_status_code": "200"}, 3},
		{"opentrack_http_request_body_size_bytes", dto.MetricType_HISTOGRAM, map[string]string{"opentrack_route": "track"}, -1},
		{"target_info", dto.MetricType_GAUGE, map[string]string{"service_name": "opentrack"}, 1},
		{"process_resident_memory_bytes", dto.MetricType_GAUGE, nil, -1},
		{"go_goroutines", dto.MetricType_GAUGE, nil, -1},
	} {
		f := families[want.name]
		if f == nil {
			t.Errorf("no family %s", want.name)
			continue
		}
		if f.GetType() != want.typ {
			t.Errorf("%s is a %v, want a %v", want.name, f.GetType(), want.typ)
		}
		m := withLabels(f, want.labels)
		if m == nil {
			t.Errorf("%s has no series with %v", want.name, want.labels)
			continue
		}
		var v float64
		switch want.typ {
		case dto.MetricType_COUNTER:
			v = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v = m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			v = float64(m.GetHistogram().GetSampleCount())
		}
		if want.value >= 0 && v != want.value {
			t.Errorf("%s%v = %v, want %v", want.name, want.labels, v, want.value)
		}
	}
}

// withLabels returns the first series of f that has labels.
func withLabels(f *dto.MetricFamily, labels map[string]string) *dto.Metric {
	for _, m := range f.GetMetric() {
		n := 0
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; ok && v == lp.GetValue() {
				n++
			}
		}
		if n == len(labels) {
			return m
		}
	}
	return nil
}

func TestHealthAndReadiness(t *testing.T) {
	addr, _ := startServer(t, map[string]string{"PORT": "0", "OPENTRACK_FILE": t.TempDir() + "/e.jsonl", "OPENTRACK_DATA_DIR": t.TempDir(), "WRITE_KEY": "wk", "ADMIN_ADDR": freeAddr(t)})
	for path, want := range map[string]string{"/healthz": `{"status":"ok"}`, "/readyz": `{"status":"ready"}`} {
		res, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || strings.TrimSpace(string(body)) != want {
			t.Errorf("%s: %d %s, want 200 %s", path, res.StatusCode, body, want)
		}
	}
}

// otlpReceiver is an OTLP/HTTP endpoint on 127.0.0.1 that keeps what it
// receives, decoded with the protocol's own messages.
type otlpReceiver struct {
	mu      sync.Mutex
	traces  []*coltrace.ExportTraceServiceRequest
	metrics []*colmetrics.ExportMetricsServiceRequest
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var answer proto.Message
	o.mu.Lock()
	switch r.URL.Path {
	case "/v1/traces":
		req := &coltrace.ExportTraceServiceRequest{}
		err = proto.Unmarshal(body, req)
		o.traces = append(o.traces, req)
		answer = &coltrace.ExportTraceServiceResponse{}
	case "/v1/metrics":
		req := &colmetrics.ExportMetricsServiceRequest{}
		err = proto.Unmarshal(body, req)
		o.metrics = append(o.metrics, req)
		answer = &colmetrics.ExportMetricsServiceResponse{}
	default:
		err = errors.New("unknown path")
	}
	o.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b, _ := proto.Marshal(answer)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(b)
}

func attr(attrs []*commonpb.KeyValue, key string) *commonpb.AnyValue {
	for _, kv := range attrs {
		if kv.GetKey() == key {
			return kv.GetValue()
		}
	}
	return nil
}

func serviceOf(r *resourcepb.Resource) string {
	return attr(r.GetAttributes(), "service.name").GetStringValue()
}

// TestOTLPExport points the server at an OTLP/HTTP receiver with the
// standard variables, sends events, one request carrying a traceparent,
// stops the server, and finds in what it exported: the request's server
// span (a child of the traceparent), the delivery span linked to it, and the
// final delivery counters.
func TestOTLPExport(t *testing.T) {
	var rcv otlpReceiver
	srv := httptest.NewServer(&rcv)
	defer srv.Close()
	otel := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_SERVICE_NAME":           "collector-under-test",
		"OTEL_METRIC_EXPORT_INTERVAL": "600000", // the export at shutdown is the one checked
	}
	env := map[string]string{"PORT": "0", "OPENTRACK_FILE": t.TempDir() + "/e.jsonl", "OPENTRACK_DATA_DIR": t.TempDir(), "WRITE_KEY": "wk", "ADMIN_ADDR": freeAddr(t)}
	for k, v := range otel {
		t.Setenv(k, v) // the exporters read the process environment
		env[k] = v
	}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		done <- run(ctx, func(k string) string { return env[k] }, slog.New(slog.DiscardHandler), ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	}
	url := "http://" + strings.Replace(addr, "[::]", "127.0.0.1", 1) + "/v1/"
	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	if code := postEvent(t, url+"track", `{"userId":"u","event":"E","messageId":"m1"}`,
		map[string]string{"traceparent": "00-" + traceID + "-" + parentID + "-01"}); code != 200 {
		t.Fatalf("track: %d", code)
	}
	if code := postEvent(t, url+"batch", `{"batch":[{"type":"track","userId":"u","event":"E","messageId":"m2"},{"type":"page","userId":"u","name":"P","messageId":"m3"}]}`, nil); code != 200 {
		t.Fatalf("batch: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var server, delivery []*tracepb.Span
	for _, req := range rcv.traces {
		for _, rs := range req.GetResourceSpans() {
			if s := serviceOf(rs.GetResource()); s != "collector-under-test" {
				t.Errorf("spans of service %q, want OTEL_SERVICE_NAME", s)
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					switch {
					case s.GetKind() == tracepb.Span_SPAN_KIND_SERVER:
						server = append(server, s)
					case s.GetName() == "deliver JSON Lines":
						delivery = append(delivery, s)
					}
				}
			}
		}
	}
	var traced *tracepb.Span
	for _, s := range server {
		if trace.TraceID(s.GetTraceId()).String() == traceID {
			traced = s
		}
	}
	if len(server) != 2 || traced == nil || trace.SpanID(traced.GetParentSpanId()).String() != parentID {
		t.Fatalf("server spans %v, want 2, one a child of the traceparent", server)
	}
	linked, events := false, int64(0)
	for _, s := range delivery {
		events += attr(s.GetAttributes(), "opentrack.delivery.batch.size").GetIntValue()
		for _, l := range s.GetLinks() {
			if bytes.Equal(l.GetTraceId(), traced.GetTraceId()) && bytes.Equal(l.GetSpanId(), traced.GetSpanId()) {
				linked = true
			}
		}
	}
	if events != 3 || !linked {
		t.Errorf("%d delivery spans for %d events, linked to the request's span: %v; want 3 events and a link", len(delivery), events, linked)
	}

	if len(rcv.metrics) == 0 {
		t.Fatal("no metrics exported")
	}
	last := map[string]*metricspb.Metric{}
	for _, rm := range rcv.metrics[len(rcv.metrics)-1].GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				last[m.GetName()] = m
			}
		}
	}
	delivered := last["opentrack.events.delivered"]
	if delivered == nil || len(delivered.GetSum().GetDataPoints()) != 1 || delivered.GetSum().GetDataPoints()[0].GetAsInt() != 3 {
		t.Errorf("opentrack.events.delivered = %v, want 3 in the export at shutdown", delivered)
	}
	if d := last["opentrack.delivery.duration"]; d == nil || d.GetUnit() != "s" || d.GetHistogram() == nil {
		t.Errorf("opentrack.delivery.duration = %v, want a histogram in seconds", d)
	}
	if b := last["opentrack.delivery.batch.size"]; b == nil || b.GetHistogram().GetDataPoints()[0].GetSum() != 3 {
		t.Errorf("opentrack.delivery.batch.size = %v, want 3 events in all", b)
	}
}

// TestOTLPConfigErrors: an OTLP protocol the exporters do not speak is a
// configuration error, and so is a bad READY_MAX_AGE.
func TestOTLPConfigErrors(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
	env := map[string]string{"PORT": "0", "OPENTRACK_FILE": t.TempDir() + "/e.jsonl", "OPENTRACK_DATA_DIR": t.TempDir(), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
	err := run(t.Context(), func(k string) string { return env[k] }, slog.New(slog.DiscardHandler), nil)
	var ce *configError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "OTEL_") {
		t.Errorf("run = %v, want a configError naming the OTEL variables", err)
	}
	env = map[string]string{"PORT": "0", "READY_MAX_AGE": "-5m"}
	if err := run(t.Context(), func(k string) string { return env[k] }, slog.New(slog.DiscardHandler), nil); !errors.As(err, &ce) || !strings.Contains(err.Error(), "READY_MAX_AGE") {
		t.Errorf("run = %v, want a configError naming READY_MAX_AGE", err)
	}
}

func TestExporting(t *testing.T) {
	for _, tt := range []struct {
		env                     map[string]string
		wantTraces, wantMetrics bool
	}{
		{nil, false, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "none"}, true, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, false, false},
	} {
		getenv := func(k string) string { return tt.env[k] }
		if got := exporting(getenv, "TRACES"); got != tt.wantTraces {
			t.Errorf("%v: traces %v", tt.env, got)
		}
		if got := exporting(getenv, "METRICS"); got != tt.wantMetrics {
			t.Errorf("%v: metrics %v", tt.env, got)
		}
	}
}

// TestTraceHandler: the log handler passes slog's own conformance suite,
// and adds the ids of the span in the context.
func TestTraceHandler(t *testing.T) {
	var buf bytes.Buffer
	slogtest.Run(t, func(*testing.T) slog.Handler {
		buf.Reset()
		return traceHandler{slog.NewJSONHandler(&buf, nil)}
	}, func(t *testing.T) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	})

	buf.Reset()
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	defer span.End()
	log := slog.New(traceHandler{slog.NewJSONHandler(&buf, nil)}).With("component", "test")
	log.InfoContext(ctx, "in a span")
	log.Info("in no span")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	var first, second map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &first)
	_ = json.Unmarshal([]byte(lines[1]), &second)
	if first["trace_id"] != span.SpanContext().TraceID().String() || first["span_id"] != span.SpanContext().SpanID().String() || first["component"] != "test" {
		t.Errorf("in a span: %v", first)
	}
	if _, ok := second["trace_id"]; ok {
		t.Errorf("in no span: %v", second)
	}
}
