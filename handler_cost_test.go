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
// into far more memory than its bytes is refused having allocated little.
func TestRegressionUnauthenticatedBatchContextAmplification(t *testing.T) {
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{newRecorder("A")}})
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"secret"}, Logger: quietLogger()})
	var raw bytes.Buffer
	raw.WriteString(`{"writeKey":"wrong","batch":[{"type":"track","event":"x","userId":"u"}],"context":{"k":[`)
	for raw.Len() < 500<<10-100 {
		raw.WriteString("0,")
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
	t.Logf("wire %d bytes -> status %d, allocated %.1f MB", gz.Len(), rec.Code, float64(m1.TotalAlloc-m0.TotalAlloc)/(1<<20))
}
