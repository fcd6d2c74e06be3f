package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// telemetry is the server's OpenTelemetry set-up, handed to the library:
//
//   - metrics go to a registry of the server's own, which GET /metrics
//     serves in the Prometheus text format (with the Go runtime's and the
//     process's), and by OTLP to a collector when the environment asks;
//   - spans are exported by OTLP when the environment asks, and not
//     recorded otherwise;
//   - the trace context of requests is read from W3C traceparent headers.
//
// The OTLP exporters are those of go.opentelemetry.io/contrib/exporters/autoexport,
// configured by the standard variables, read from the process environment:
// OTEL_EXPORTER_OTLP_ENDPOINT (or the _TRACES_ and _METRICS_ ones),
// OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, the default, or grpc),
// OTEL_EXPORTER_OTLP_HEADERS, OTEL_METRIC_EXPORT_INTERVAL, OTEL_TRACES_SAMPLER,
// OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER (otlp, console, none;
// prometheus for metrics), and the resource's OTEL_SERVICE_NAME (default
// "opentrack") and OTEL_RESOURCE_ATTRIBUTES. OTEL_SDK_DISABLED=true turns
// exporting off; /metrics still serves.
type telemetry struct {
	meters     *sdkmetric.MeterProvider
	tracers    trace.TracerProvider
	spans      *sdktrace.TracerProvider // nil when spans are not exported
	propagator propagation.TextMapPropagator
	metrics    http.Handler // GET /metrics
}

// serviceName is the resource's service.name unless OTEL_SERVICE_NAME says
// otherwise.
const serviceName = "opentrack"

func newTelemetry(ctx context.Context, getenv func(string) string) (*telemetry, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(serviceName)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
		resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	t := &telemetry{propagator: propagation.TraceContext{}}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	prom, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("Prometheus exporter: %w", err)
	}
	t.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	readers := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}
	if exporting(getenv, "METRICS") {
		r, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTEL_METRICS_EXPORTER, OTEL_EXPORTER_OTLP_*: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(r))
	}
	t.meters = sdkmetric.NewMeterProvider(readers...)

	t.tracers = tracenoop.NewTracerProvider()
	if exporting(getenv, "TRACES") {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			_ = t.meters.Shutdown(ctx)
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_*: %w", err)
		}
		t.spans = sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp))
		t.tracers = t.spans
	}
	return t, nil
}

// exporting reports whether the environment asks for a signal ("TRACES" or
// "METRICS") to be exported: by OTEL_<signal>_EXPORTER (other than "none"),
// or by an OTLP endpoint.
func exporting(getenv func(string) string, signal string) bool {
	if getenv("OTEL_SDK_DISABLED") == "true" {
		return false
	}
	switch getenv("OTEL_" + signal + "_EXPORTER") {
	case "none":
		return false
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
	default:
		return true
	}
}

// api wraps the API handler in a server span per request when spans are
// exported, so that the delivery spans link to it; its HTTP metrics are
// left out, the Handler counting requests itself.
func (t *telemetry) api(h http.Handler) http.Handler {
	if t.spans == nil {
		return h
	}
	return otelhttp.NewHandler(h, "opentrack", otelhttp.WithTracerProvider(t.spans),
		otelhttp.WithPropagators(t.propagator), otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))
}

// shutdown exports what is left and stops the exporters.
func (t *telemetry) shutdown(ctx context.Context) error {
	err := t.meters.Shutdown(ctx)
	if t.spans != nil {
		err = errors.Join(err, t.spans.Shutdown(ctx))
	}
	return err
}

// traceHandler adds trace_id and span_id to the records logged with a
// context that holds a span (log.InfoContext(ctx, ...)), so that a log line
// leads to its trace.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
