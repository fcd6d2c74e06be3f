// Command server runs OpenTrack as a stand-alone collector, configured by
// environment variables:
//
//	PORT                   listen port (default 8080)
//	ADMIN_ADDR             address for /stats and /metrics, such as 127.0.0.1:9091
//	                       (default: served on PORT, with a warning at start)
//	WRITE_KEY              accepted write keys, comma-separated (default: none,
//	                       open, with a warning at start; set but holding no key
//	                       is an error)
//	CORS_ALLOWED_ORIGINS   browser origins allowed, comma-separated (default: any)
//	PUBLIC_URL             the collector's public address with its mount path, named
//	                       in analytics.js's settings (default: from each request)
//	TRUST_PROXY            read Forwarded and X-Forwarded-* for that address (default false)
//	OPENTRACK_FILE         JSON-lines sink path, "-" for stdout; when no other
//	                       integration is configured the sink is on, on stdout
//	OPENTRACK_QUEUE        where accepted events wait: journal (default: on disk,
//	                       a 2xx means fsynced), memory (a crash loses them), or
//	                       jetstream (default when NATS_URL is set)
//	OPENTRACK_DATA_DIR     the journal's folder (default ./opentrack-data)
//	OPENTRACK_MAX_DISK     the journal's bound on disk, such as 10GiB (default 1GiB);
//	                       when full, requests get 503 + Retry-After
//	SHUTDOWN_TIMEOUT       how long SIGINT/SIGTERM may take to deliver what was
//	                       accepted (default 30s)
//	WRITE_TIMEOUT          how long an answer may take to write (default 15s)
//	MAX_CONNECTIONS        connections served at once (default 1024)
//	LOG_LEVEL              debug, info (default), warn or error; debug logs
//	                       each refused request's reason (rate-limited)
//	READY_MAX_AGE          /readyz answers 503 while an integration's oldest
//	                       undelivered event is older (default: not checked)
//	OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME,
//	OTEL_METRIC_EXPORT_INTERVAL, OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER, ...
//	                       export metrics and traces by OTLP; see telemetry.go
//	BIGQUERY_PROJECT_ID, BIGQUERY_DATASET, BIGQUERY_LOCATION,
//	BIGQUERY_AUTO_TABLE_MANAGEMENT, BIGQUERY_EMULATOR_HOST,
//	GOOGLE_APPLICATION_CREDENTIALS(_JSON)
//	                       BigQuery; see integrations/bigquery
//	CUSTOMERIO_SITE_ID, CUSTOMERIO_API_KEY, CUSTOMERIO_REGION, CUSTOMERIO_TRACK_URL
//	                       Customer.io; see integrations/customerio
//	WEBHOOK_URL, WEBHOOK_SECRET, WEBHOOK_SIGNING, WEBHOOK_HEADERS, WEBHOOK_METHOD,
//	WEBHOOK_BATCH_SIZE, WEBHOOK_MAX_BATCH_BYTES, WEBHOOK_TIMEOUT
//	                       a webhook of your own; see integrations/webhook
//	NATS_URL, NATS_CREDS, NATS_STREAM, NATS_REPLICAS
//	                       keep accepted events in a NATS JetStream stream shared
//	                       by several collectors; see jetstream
//
// It serves the Segment API at /v1, GET /healthz (liveness) and GET /readyz
// (readiness, 503 with the reasons) on PORT, and GET /stats (the delivery
// counters as JSON, for people) and GET /metrics (OpenTelemetry metrics in
// the Prometheus text format) on ADMIN_ADDR. Logs are JSON on stderr, with
// trace_id and span_id when logged in a span. On SIGINT or SIGTERM it stops
// accepting, delivers everything it accepted, and exits 0. A configuration
// error is logged as such, and the exit code is 2.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/bigquery"
	"github.com/opentrackhq/opentrack/integrations/customerio"
	"github.com/opentrackhq/opentrack/integrations/jsonl"
	"github.com/opentrackhq/opentrack/integrations/webhook"
	"github.com/opentrackhq/opentrack/queue"
)

func main() {
	var level slog.Level
	levelErr := level.UnmarshalText([]byte(cmp.Or(os.Getenv("LOG_LEVEL"), "info")))
	log := slog.New(traceHandler{slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations})})
	if levelErr != nil {
		log.Error("configuration error; not started", slog.Any("error", fmt.Errorf("LOG_LEVEL: %w", levelErr)))
		os.Exit(2)
	}
	slog.SetDefault(log) // integrations built from the environment log here too
	err := run(context.Background(), os.Getenv, log, nil)
	var ce *configError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		log.Error("configuration error; not started", slog.Any("error", ce.err))
		os.Exit(2)
	default:
		log.Error("server stopped", slog.Any("error", err))
		os.Exit(1)
	}
}

// readableDurations logs durations as "30s", not as nanoseconds.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// configError is an error in the environment: the server does not start.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// config is the server's own configuration, from the environment.
type config struct {
	port            string
	adminAddr       string
	shutdownTimeout time.Duration
	writeTimeout    time.Duration
	maxConnections  int
	readyMaxAge     time.Duration
}

// Defaults of the server's own settings.
const (
	defaultShutdownTimeout = 30 * time.Second
	defaultWriteTimeout    = 15 * time.Second
	defaultMaxConnections  = 1024
)

func configFromEnv(getenv func(string) string) (config, error) {
	c := config{port: getenv("PORT"), adminAddr: getenv("ADMIN_ADDR"), shutdownTimeout: defaultShutdownTimeout,
		writeTimeout: defaultWriteTimeout, maxConnections: defaultMaxConnections}
	if c.port == "" {
		c.port = "8080"
	}
	duration := func(name string, d *time.Duration) error {
		v := getenv(name)
		if v == "" {
			return nil
		}
		parsed, err := time.ParseDuration(v)
		if err != nil || parsed <= 0 {
			return fmt.Errorf("%s: want a positive duration such as 30s, got %q", name, v)
		}
		*d = parsed
		return nil
	}
	if err := errors.Join(duration("SHUTDOWN_TIMEOUT", &c.shutdownTimeout), duration("WRITE_TIMEOUT", &c.writeTimeout),
		duration("READY_MAX_AGE", &c.readyMaxAge)); err != nil {
		return c, err
	}
	if v := getenv("WRITE_KEY"); v != "" && len(splitList(v)) == 0 {
		// Set but empty: an unset variable would open the collector with
		// a warning; this one looks like a mistake.
		return c, fmt.Errorf("WRITE_KEY: %q holds no write key; unset it to accept any", v)
	}
	if v := getenv("MAX_CONNECTIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("MAX_CONNECTIONS: want a positive number, got %q", v)
		}
		c.maxConnections = n
	}
	return c, nil
}

// run serves until ctx ends or a signal arrives, then shuts down. If ready is
// not nil it receives the listening address of the API.
func run(ctx context.Context, getenv func(string) string, log *slog.Logger, ready chan<- string) error {
	cfg, err := configFromEnv(getenv)
	if err != nil {
		return &configError{err}
	}
	integrations, err := fromEnv(ctx, getenv)
	if err != nil {
		return &configError{err}
	}
	names := make([]string, len(integrations))
	for i, in := range integrations {
		names[i] = in.Name()
	}
	tel, err := newTelemetry(ctx, getenv)
	if err != nil {
		return &configError{err}
	}
	defer func() {
		// Export what the last moments recorded, the final counts included.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), telemetryShutdownTimeout)
		defer cancel()
		if err := tel.shutdown(tctx); err != nil {
			log.Warn("exporting telemetry at shutdown", slog.Any("error", err))
		}
	}()
	q, err := queueFromEnv(ctx, getenv, log)
	if err != nil {
		return &configError{err}
	}
	m, err := opentrack.New(opentrack.Options{
		Integrations:   integrations,
		Queue:          q,
		Logger:         log, // logs each event not delivered, once
		MeterProvider:  tel.meters,
		TracerProvider: tel.tracers,
	})
	if err != nil {
		if q != nil {
			_ = q.Close()
		}
		return &configError{err}
	}
	writeKeys := splitList(getenv("WRITE_KEY"))
	if len(writeKeys) == 0 {
		log.Warn("WRITE_KEY is not set: every request is accepted, whatever its write key")
	}
	trustProxy, err := parseBool("TRUST_PROXY", getenv("TRUST_PROXY"))
	if err == nil {
		err = checkPublicURL(getenv("PUBLIC_URL"), log)
	}
	if err != nil {
		return &configError{errors.Join(err, m.Shutdown(ctx))}
	}
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{
		WriteKeys:         writeKeys,
		AllowedOrigins:    splitList(getenv("CORS_ALLOWED_ORIGINS")),
		PublicURL:         getenv("PUBLIC_URL"),
		TrustProxyHeaders: trustProxy,
		Logger:            log,
		MeterProvider:     tel.meters,
		Propagator:        tel.propagator,
	})

	api := http.NewServeMux()
	api.Handle("/v1/", tel.api(h))
	api.Handle("GET /healthz", m.LivenessHandler())
	api.Handle("GET /readyz", m.ReadinessHandler(&opentrack.ReadinessOptions{MaxOldestAge: cfg.readyMaxAge}))
	admin := api
	if cfg.adminAddr != "" {
		admin = http.NewServeMux()
	} else {
		log.Warn("ADMIN_ADDR is not set: /stats and /metrics are served on the public port; set it (for instance 127.0.0.1:9091) to keep them private")
	}
	admin.Handle("GET /stats", m.StatsHandler())
	admin.Handle("GET /metrics", tel.metrics)

	ln, err := net.Listen("tcp", ":"+cfg.port)
	if err != nil {
		return &configError{errors.Join(fmt.Errorf("PORT: %w", err), m.Shutdown(ctx))}
	}
	// A bounded number of connections: clients that never read their
	// answers cannot pin unbounded kernel memory.
	ln = netutil.LimitListener(ln, cfg.maxConnections)
	srv := newServer(api, cfg, log)
	servers := []*http.Server{srv}
	listeners := []net.Listener{ln}
	if cfg.adminAddr != "" {
		aln, err := net.Listen("tcp", cfg.adminAddr)
		if err != nil {
			ln.Close()
			return &configError{errors.Join(fmt.Errorf("ADMIN_ADDR: %w", err), m.Shutdown(ctx))}
		}
		servers = append(servers, newServer(admin, cfg, log))
		listeners = append(listeners, aln)
	}
	sigCtx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("opentrack listening", slog.String("addr", ln.Addr().String()), slog.String("adminAddr", cfg.adminAddr),
		slog.Any("integrations", names), queueAttr(q))
	if ready != nil {
		ready <- ln.Addr().String()
	}
	served := make(chan error, len(servers))
	for i, s := range servers {
		go func() { served <- s.Serve(listeners[i]) }()
	}
	select {
	case err := <-served:
		return err
	case <-sigCtx.Done():
	}

	log.Info("shutting down", slog.Duration("timeout", cfg.shutdownTimeout))
	deadline := time.Now().Add(cfg.shutdownTimeout)
	// Stop taking requests and let the ones in flight finish, within half
	// the budget: a slow client must not eat the time the deliveries need.
	hctx, hcancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout/2)
	defer hcancel()
	for _, s := range servers {
		if serr := s.Shutdown(hctx); errors.Is(serr, context.DeadlineExceeded) {
			err = errors.Join(err, serr, s.Close())
		} else {
			err = errors.Join(err, serr)
		}
	}
	// Then deliver everything accepted, within the rest.
	mctx, mcancel := context.WithDeadline(context.Background(), deadline)
	defer mcancel()
	if serr := m.Shutdown(mctx); serr != nil {
		if _, durable := q.(queue.Durable); durable && errors.Is(serr, context.DeadlineExceeded) {
			// What was not delivered is on disk for the next start.
			log.Warn("shutdown deadline passed; undelivered events stay in the journal for the next start")
		} else {
			err = errors.Join(err, serr)
		}
	}
	for _, s := range m.Stats() {
		log.Info("delivery", slog.String("integration", s.Integration), slog.Uint64("accepted", s.Accepted),
			slog.Uint64("delivered", s.Delivered), slog.Uint64("failed", s.Failed))
	}
	return err
}

// telemetryShutdownTimeout bounds the last export of metrics and spans.
const telemetryShutdownTimeout = 5 * time.Second

// newServer returns an HTTP server with timeouts: a request's headers and
// body must arrive within ReadTimeout, and its answer must be written within
// WriteTimeout, so a client that stops reading is cut off.
func newServer(h http.Handler, cfg config, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      cfg.writeTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// fromEnv builds the integrations the environment configures. The JSON-lines
// sink is on when OPENTRACK_FILE is set, or when nothing else is.
func fromEnv(ctx context.Context, getenv func(string) string) ([]opentrack.Integration, error) {
	var list []opentrack.Integration
	add := func(in opentrack.Integration, err error) error {
		switch {
		case errors.Is(err, opentrack.ErrNotConfigured):
			return nil
		case err != nil:
			return err
		}
		list = append(list, in)
		return nil
	}
	if err := errors.Join(
		add(asIntegration(bigquery.FromEnv(ctx, getenv))),
		add(asIntegration(customerio.FromEnv(ctx, getenv))),
		add(asIntegration(webhook.FromEnv(ctx, getenv))),
		add(asIntegration(jsonl.FromEnv(ctx, getenv))),
	); err != nil {
		return nil, err
	}
	if len(list) == 0 {
		// Nothing configured: the events go to standard output, so that a
		// first run shows what it accepts.
		sink, err := jsonl.Open("-", nil)
		if err != nil {
			return nil, err
		}
		list = append(list, sink)
	}
	return list, nil
}

// asIntegration turns a built-in's FromEnv result into an Integration, and a
// nil one into ErrNotConfigured, so that no typed nil reaches the Manager.
func asIntegration[T interface {
	opentrack.Integration
	comparable
}](in T, err error) (opentrack.Integration, error) {
	var zero T
	if err == nil && in == zero {
		err = opentrack.ErrNotConfigured
	}
	if err != nil {
		return nil, err
	}
	return in, nil
}

// checkPublicURL refuses a PUBLIC_URL that is not an absolute http(s) URL,
// and warns when it does not end with the /v1 the API is mounted at.
func checkPublicURL(v string, log *slog.Logger) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("PUBLIC_URL: want the collector's address with its mount path, such as https://collector.example.com/v1, got %q", v)
	}
	if !strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/v1") {
		log.Warn("PUBLIC_URL does not end with /v1, where this server serves the API; analytics.js will send its events there", slog.String("publicURL", v))
	}
	return nil
}

// parseBool reads a boolean variable; empty is false.
func parseBool(name, v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: want true or false, got %q", name, v)
	}
	return b, nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
