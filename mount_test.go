package opentrack_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/gorilla/mux"
	"github.com/labstack/echo/v4"

	"github.com/opentrackhq/opentrack"
)

// TestHandlerMountedByRouters: the handler serves the API however a Go
// router mounts it, with or without the mount prefix stripped.
func TestHandlerMountedByRouters(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	mounts := map[string]func(h http.Handler) http.Handler{
		"ServeMux with StripPrefix": func(h http.Handler) http.Handler {
			m := http.NewServeMux()
			m.Handle("/v1/", http.StripPrefix("/v1", h))
			return m
		},
		"ServeMux without StripPrefix": func(h http.Handler) http.Handler {
			m := http.NewServeMux()
			m.Handle("/v1/", h)
			return m
		},
		"chi Mount": func(h http.Handler) http.Handler {
			r := chi.NewRouter()
			r.Mount("/v1", h)
			return r
		},
		"gorilla/mux PathPrefix": func(h http.Handler) http.Handler {
			r := mux.NewRouter()
			r.PathPrefix("/v1/").Handler(h)
			return r
		},
		"echo WrapHandler": func(h http.Handler) http.Handler {
			e := echo.New()
			e.Any("/v1/*", echo.WrapHandler(h))
			return e
		},
		"gin WrapH": func(h http.Handler) http.Handler {
			g := gin.New()
			g.Any("/v1/*path", gin.WrapH(h))
			return g
		},
	}
	for name, mount := range mounts {
		t.Run(name, func(t *testing.T) {
			rec := newRecorder("Rec")
			m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{rec}})
			srv := httptest.NewServer(mount(opentrack.NewHandler(m, &opentrack.HandlerOptions{Logger: quietLogger()})))
			t.Cleanup(srv.Close)
			for _, tt := range []struct {
				path, body string
				status     int
			}{
				{"/v1/track", `{"userId":"u1","event":"E"}`, 200},
				{"/v1/t", `{"userId":"u1","event":"Short"}`, 200},
				{"/v1/batch", `{"batch":[{"type":"identify","userId":"u1"}]}`, 200},
				{"/v1/identify/", `{"userId":"u2"}`, 200},
				{"/v1/nope", `{}`, 404},
			} {
				res, err := http.Post(srv.URL+tt.path, "application/json", strings.NewReader(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != tt.status {
					t.Errorf("POST %s: %d, want %d", tt.path, res.StatusCode, tt.status)
				}
			}
			flush(t, m)
			if got := len(rec.Got()); got != 4 {
				t.Errorf("delivered %d events, want 4", got)
			}
		})
	}
}
