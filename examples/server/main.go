// Command server runs OpenTrack as a stand-alone collector, configured by
// environment variables:
//
//	PORT                   listen port (default 8080)
//	WRITE_KEY              accepted write keys, comma-separated (default: none, open)
//	CORS_ALLOWED_ORIGINS   browser origins allowed, comma-separated (default: any)
//	OPENTRACK_FILE         JSON-lines sink path, "-" for stdout; when no other
//	                       integration is configured the sink is on, on stdout
//	SHUTDOWN_TIMEOUT       how long SIGINT/SIGTERM may take to deliver what was
//	                       accepted (default 30s)
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
// It serves the Segment API at /v1, GET /healthz, GET /stats (the delivery
// counters as JSON) and GET /metrics (the same in Prometheus text format). On SIGINT or
// SIGTERM it stops accepting, delivers everything it accepted, and exits 0.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/bigquery"
	"github.com/opentrackhq/opentrack/integrations/customerio"
	"github.com/opentrackhq/opentrack/integrations/jsonl"
	"github.com/opentrackhq/opentrack/integrations/webhook"
	"github.com/opentrackhq/opentrack/queue"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	slog.SetDefault(log) // integrations built from the environment log here too
	if err := run(context.Background(), os.Getenv, log, nil); err != nil {
		log.Error("server stopped", slog.Any("error", err))
		os.Exit(1)
	}
}

// run serves until ctx ends or a signal arrives, then shuts down. If ready is
// not nil it receives the listening address.
func run(ctx context.Context, getenv func(string) string, log *slog.Logger, ready chan<- string) error {
	port := getenv("PORT")
	if port == "" {
		port = "8080"
	}
	timeout := 30 * time.Second
	if v := getenv("SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("SHUTDOWN_TIMEOUT: want a positive duration such as 30s, got %q", v)
		}
		timeout = d
	}

	integrations, err := fromEnv(ctx, getenv)
	if err != nil {
		return err
	}
	names := make([]string, len(integrations))
	for i, in := range integrations {
		names[i] = in.Name()
	}
	var q queue.Queue
	switch jq, err := jetstreamQueueFromEnv(ctx, getenv); {
	case err == nil:
		q = jq
	case !errors.Is(err, opentrack.ErrNotConfigured):
		return err
	case getenv("OPENTRACK_QUEUE") == "jetstream":
		return fmt.Errorf("OPENTRACK_QUEUE=jetstream: %w: set NATS_URL", err)
	}
	m, err := opentrack.New(opentrack.Options{
		Integrations: integrations,
		Queue:        q,
		Logger:       log,
		OnFailure: func(f opentrack.Failure) {
			log.Error("event not delivered", slog.String("integration", f.Integration),
				slog.String("messageId", f.Event.Fields().MessageID), slog.Any("error", f.Err))
		},
	})
	if err != nil {
		if q != nil {
			q.Close()
		}
		return err
	}
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{
		WriteKeys:      splitList(getenv("WRITE_KEY")),
		AllowedOrigins: splitList(getenv("CORS_ALLOWED_ORIGINS")),
		Logger:         log,
	})

	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", h))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if m.Closed() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"status":"shutting down"}`)
			return
		}
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(statsJSON(m.Stats()))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		writeMetrics(w, m.Stats())
	})

	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	sigCtx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("opentrack listening", slog.String("addr", ln.Addr().String()), slog.Any("integrations", names))
	if ready != nil {
		ready <- ln.Addr().String()
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-sigCtx.Done():
	}

	log.Info("shutting down", slog.Duration("timeout", timeout))
	deadline := time.Now().Add(timeout)
	// Stop taking requests and let the ones in flight finish, within half
	// the budget: a slow client must not eat the time the deliveries need.
	hctx, hcancel := context.WithTimeout(context.Background(), timeout/2)
	defer hcancel()
	err = srv.Shutdown(hctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = errors.Join(err, srv.Close())
	}
	// Then deliver everything accepted, within the rest.
	mctx, mcancel := context.WithDeadline(context.Background(), deadline)
	defer mcancel()
	err = errors.Join(err, m.Shutdown(mctx))
	for _, s := range m.Stats() {
		log.Info("delivery", slog.String("integration", s.Integration), slog.Uint64("accepted", s.Accepted),
			slog.Uint64("delivered", s.Delivered), slog.Uint64("failed", s.Failed))
	}
	return err
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
	); err != nil {
		return nil, err
	}
	path := getenv("OPENTRACK_FILE")
	if path == "" && len(list) == 0 {
		path = "-"
	}
	if path != "" {
		sink, err := jsonl.Open(path)
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

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// writeMetrics writes the delivery counters in the Prometheus text format.
func writeMetrics(w io.Writer, stats []opentrack.Stats) {
	metric := func(name, kind, help string, value func(opentrack.Stats) float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
		for _, s := range stats {
			fmt.Fprintf(w, "%s{integration=%q} %g\n", name, s.Integration, value(s))
		}
	}
	metric("opentrack_events_accepted_total", "counter", "Events enqueued for the integration.", func(s opentrack.Stats) float64 { return float64(s.Accepted) })
	metric("opentrack_events_delivered_total", "counter", "Events the integration took.", func(s opentrack.Stats) float64 { return float64(s.Delivered) })
	metric("opentrack_events_retried_total", "counter", "Retry attempts.", func(s opentrack.Stats) float64 { return float64(s.Retried) })
	metric("opentrack_events_failed_total", "counter", "Events given up on and reported.", func(s opentrack.Stats) float64 { return float64(s.Failed) })
	metric("opentrack_events_deduplicated_total", "counter", "Replays of an accepted messageId not enqueued again.", func(s opentrack.Stats) float64 { return float64(s.Deduplicated) })
	metric("opentrack_integration_panics_total", "counter", "Calls that panicked.", func(s opentrack.Stats) float64 { return float64(s.Panics) })
	metric("opentrack_events_queued", "gauge", "Accepted events not yet delivered or failed.", func(s opentrack.Stats) float64 { return float64(s.Queued) })
	metric("opentrack_oldest_queued_seconds", "gauge", "Age of the oldest queued event.", func(s opentrack.Stats) float64 { return s.OldestAge.Seconds() })
	metric("opentrack_integration_ready", "gauge", "1 when the integration is initialized and taking events.", func(s opentrack.Stats) float64 {
		if s.Ready {
			return 1
		}
		return 0
	})
}

// integrationStats is one integration's counters as GET /stats shows them.
type integrationStats struct {
	Integration      string  `json:"integration"`
	Ready            bool    `json:"ready"`
	Error            string  `json:"error,omitempty"`
	Accepted         uint64  `json:"accepted"`
	Delivered        uint64  `json:"delivered"`
	Retried          uint64  `json:"retried"`
	Failed           uint64  `json:"failed"`
	Deduplicated     uint64  `json:"deduplicated"`
	Panics           uint64  `json:"panics"`
	Queued           int     `json:"queued"`
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
	Cursor           uint64  `json:"cursor"`
}

func statsJSON(stats []opentrack.Stats) []integrationStats {
	out := make([]integrationStats, len(stats))
	for i, s := range stats {
		out[i] = integrationStats{Integration: s.Integration, Ready: s.Ready, Accepted: s.Accepted,
			Delivered: s.Delivered, Retried: s.Retried, Failed: s.Failed, Deduplicated: s.Deduplicated,
			Panics: s.Panics, Queued: s.Queued, OldestAgeSeconds: s.OldestAge.Seconds(), Cursor: s.Cursor}
		if s.Err != nil {
			out[i].Error = s.Err.Error()
		}
	}
	return out
}
