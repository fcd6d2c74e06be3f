package opentrack_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/opentrackhq/opentrack"
)

// A request with a wrong write key and a batch-level context built to decode
// into far more memory than its bytes is refused having allocated little:
// at most 32 times the bytes it inflates to, whether the context holds
// numbers or strings with escapes.
func TestRegressionUnauthenticatedBatchContextAmplification(t *testing.T) {
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{newRecorder("A")}})
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"secret"}, Logger: quietLogger()})
	// Each context is as large as the decoder still takes: 500 KB of
	// numbers, 150 KB of escaped strings.
	for _, tc := range []struct {
		elem string
		size int
	}{{`0`, 500<<10 - 100}, {`"\n"`, 150 << 10}} {
		elem, size := tc.elem, tc.size
		var raw bytes.Buffer
		raw.WriteString(`{"writeKey":"wrong","batch":[{"type":"track","event":"x","userId":"u"}],"context":{"k":[`)
		for raw.Len() < size {
			raw.WriteString(elem + ",")
		}
		raw.Truncate(raw.Len() - 1)
		raw.WriteString(`]}}`)
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(raw.Bytes())
		zw.Close()
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		req := httptest.NewRequest(http.MethodPost, "/v1/batch", bytes.NewReader(gz.Bytes()))
		req.Header.Set("Content-Encoding", "gzip")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		runtime.ReadMemStats(&m1)
		alloc := m1.TotalAlloc - m0.TotalAlloc
		t.Logf("elements %s: wire %d bytes, inflated %d -> status %d, allocated %.1f MB", elem, gz.Len(), raw.Len(), rec.Code, float64(alloc)/(1<<20))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("elements %s: status %d, want 401", elem, rec.Code)
		}
		if alloc > 32*uint64(raw.Len()) {
			t.Errorf("elements %s: allocated %d bytes for a request of %d", elem, alloc, raw.Len())
		}
	}
}
