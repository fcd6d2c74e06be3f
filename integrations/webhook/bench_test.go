package webhook_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/webhook"
	"github.com/opentrackhq/opentrack/spec"
)

// benchEvents returns n decoded, enriched track calls of a typical size
// (about 600 bytes of JSON), as the collector hands them over.
func benchEvents(b *testing.B, n int) []spec.Event {
	b.Helper()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	out := make([]spec.Event, n)
	for i := range out {
		e, err := spec.Decode(fmt.Appendf(nil, `{"type":"track","messageId":"bench-%d","userId":"user-%d","event":"Order Completed",
			"properties":{"orderId":"o-%d","revenue":42.5,"currency":"EUR","products":[{"sku":"a-1","price":20},{"sku":"b-2","price":22.5}]},
			"context":{"library":{"name":"analytics-go","version":"3.3.0"},"page":{"url":"https://example.com/checkout","referrer":"https://example.com/cart"},
			"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"},
			"sentAt":"2026-01-02T03:04:05Z"}`, i, i%100, i), spec.TypeTrack)
		if err != nil {
			b.Fatal(err)
		}
		spec.Enrich(e, at, "192.0.2.1")
		out[i] = e
	}
	return out
}

// BenchmarkDeliver measures delivery through a real Manager to a receiver on
// 127.0.0.1 that reads each body and answers 204, signed the Segment way:
// one event per request, and batches of 100. Each iteration enqueues 1000
// events and flushes; events/s and req/s are over the whole run.
//
//	go test -run '^$' -bench BenchmarkDeliver -benchtime 5x ./integrations/webhook/
func BenchmarkDeliver(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("BatchSize=%d", batch), func(b *testing.B) {
			var requests atomic.Int64
			recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				requests.Add(1)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer recv.Close()
			in, err := webhook.New(recv.URL, &webhook.Options{BatchSize: batch, Secret: "shared-secret"})
			if err != nil {
				b.Fatal(err)
			}
			var failed atomic.Int64
			m, err := opentrack.New(opentrack.Options{
				Integrations: []opentrack.Integration{in},
				DisableDedup: true, // the same events are sent in every iteration
				Logger:       slog.New(slog.DiscardHandler),
				OnFailure:    func(opentrack.Failure) { failed.Add(1) },
			})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Shutdown(context.Background())
			events := benchEvents(b, 1000)
			ctx := context.Background()
			sent := 0
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Enqueue(ctx, events...); err != nil {
					b.Fatal(err)
				}
				if err := m.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				sent += len(events)
			}
			if failed.Load() != 0 {
				b.Fatalf("%d events failed", failed.Load())
			}
			if s := m.Stats()[0]; s.Delivered != uint64(sent) {
				b.Fatalf("delivered %d of %d events", s.Delivered, sent)
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(sent)/secs, "events/s")
			b.ReportMetric(float64(requests.Load())/secs, "req/s")
			b.ReportMetric(float64(sent)/float64(requests.Load()), "events/req")
		})
	}
}
