package opentrack_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// trackBody is a ~600-byte track call as analytics.js sends it.
const trackBody = `{"type":"track","event":"Product Viewed","userId":"user-1234567","anonymousId":"0f8e3c1a-5b2d-4e7f-9a6c-1d2e3f4a5b6c",` +
	`"properties":{"product_id":"507f1f77bcf86cd799439011","sku":"G-32","category":"Games","name":"Monopoly: 3rd Edition","price":18.99,"quantity":1,"currency":"USD"},` +
	`"context":{"library":{"name":"analytics.js","version":"next-1.81.0"},"page":{"path":"/products/g-32","referrer":"https://www.example.com/","title":"Monopoly","url":"https://shop.example.com/products/g-32"},` +
	`"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36","locale":"en-US"},` +
	`"messageId":"ajs-next-1732600000000-abcdef01-2345-6789","timestamp":"2026-11-26T10:00:00.000Z","sentAt":"2026-11-26T10:00:00.050Z"}`

// discard is a fast integration, so the benchmarks measure the collector.
func discard() opentrack.Integration {
	return opentrack.Func("Discard", func(context.Context, spec.Event) error { return nil })
}

func benchHandler(b *testing.B) http.Handler {
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{discard()}, DisableDedup: true, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	return opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}})
}

// nopWriter is a ResponseWriter that keeps nothing, cheaper than a recorder.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

func BenchmarkHandlerTrack(b *testing.B) {
	h := benchHandler(b)
	b.SetBytes(int64(len(trackBody)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/track", strings.NewReader(trackBody))
		req.Header.Set("Content-Type", "text/plain")
		req.SetBasicAuth("wk", "")
		h.ServeHTTP(&nopWriter{h: http.Header{}}, req)
	}
}

func BenchmarkHandlerBatch(b *testing.B) {
	h := benchHandler(b)
	items := make([]string, 100)
	for i := range items {
		items[i] = strings.Replace(trackBody, `"messageId":"ajs-next-1732600000000`, fmt.Sprintf(`"messageId":"m%d`, i), 1)
	}
	body := `{"batch":[` + strings.Join(items, ",") + `],"sentAt":"2026-11-26T10:00:00.050Z"}`
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/batch", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("wk", "")
		w := &nopWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkManagerEnqueue(b *testing.B) {
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{discard()}, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	e, err := spec.Decode([]byte(trackBody), "")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		// Distinct ids, so the dedup window is exercised as in production.
		ev := *(e.(*spec.Track))
		ev.MessageID = fmt.Sprint("m", i)
		i++
		for {
			err := m.Enqueue(ctx, &ev)
			if err == nil {
				break
			}
			if !errors.Is(err, opentrack.ErrQueueFull) {
				b.Fatal(err)
			}
		}
	}
}
