package opentrack_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/opentrackhq/opentrack"
)

// BenchmarkHandlerTrackMetered is BenchmarkHandlerTrack with the metrics
// recorded by an SDK MeterProvider, as a host exporting them has it.
func BenchmarkHandlerTrackMetered(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{discard()}, DisableDedup: true,
		Logger: quietLogger(), MeterProvider: mp})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}, MeterProvider: mp})
	b.SetBytes(int64(len(trackBody)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/track", strings.NewReader(trackBody))
		req.Header.Set("Content-Type", "text/plain")
		req.SetBasicAuth("wk", "")
		h.ServeHTTP(&nopWriter{h: http.Header{}}, req)
	}
}
