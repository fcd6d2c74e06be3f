package opentrack_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opentrackhq/opentrack"
)

// TestGetRoutesPreflightAndRefusedOrigins: a browser's preflight reaches the
// GET routes, and a pixel asked for from an origin not allowed still gets
// its image, counted as refused, while the other routes answer 403.
func TestGetRoutesPreflightAndRefusedOrigins(t *testing.T) {
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{newRecorder("Rec")}})
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{Logger: quietLogger(), WriteKeys: []string{"k"},
		AllowedOrigins: []string{"https://app.example.com"}})
	for _, path := range []string{"/v1/projects/k/settings", "/v1/pixel/track"} {
		req := httptest.NewRequest("OPTIONS", path, nil)
		req.Header.Set("Origin", "https://app.example.com")
		req.Header.Set("Access-Control-Request-Method", "GET")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Errorf("preflight of %s: %d %v", path, w.Code, w.Header())
		}
	}
	req := httptest.NewRequest("GET", "/v1/pixel/track?userId=u&event=E&writeKey=k", nil)
	req.Header.Set("Origin", "https://evil.example.com")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 || w.Header().Get("Content-Type") != "image/gif" || h.PixelStats().Unauthorized != 1 || h.PixelStats().Accepted != 0 {
		t.Errorf("pixel from a refused origin: %d %s, stats %+v; want the GIF and one refusal", w.Code, w.Header().Get("Content-Type"), h.PixelStats())
	}
	req = httptest.NewRequest("GET", "/v1/projects/k/settings", nil)
	req.Header.Set("Origin", "https://evil.example.com")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusForbidden {
		t.Errorf("settings from a refused origin: %d, want 403", w.Code)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/pixel/track", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST to the pixel: %d, want 405", w.Code)
	}
}
