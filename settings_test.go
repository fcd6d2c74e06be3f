package opentrack_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/gorilla/mux"
	"github.com/labstack/echo/v4"

	"github.com/opentrackhq/opentrack"
)

// getURL sends a GET (or another method) with the given headers and returns
// the answer and its body.
func getURL(t *testing.T, method, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

// settingsOf fetches the settings of writeKey from the collector and decodes
// them, failing the test unless they are answered 200 as JSON.
func settingsOf(t *testing.T, base, writeKey string, header map[string]string) (map[string]any, *http.Response) {
	t.Helper()
	res, body := getURL(t, http.MethodGet, base+"/projects/"+writeKey+"/settings", header)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("settings of %q: %d %s", writeKey, res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("settings Content-Type = %q", ct)
	}
	var s map[string]any
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("settings are not JSON: %v\n%s", err, body)
	}
	return s, res
}

// at returns the value at a dotted path of nested objects.
func at(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[k]
	}
	return v
}

// segmentIO returns the settings' Segment.io integration.
func segmentIO(t *testing.T, s map[string]any) map[string]any {
	t.Helper()
	ints, _ := s["integrations"].(map[string]any)
	sio, ok := ints["Segment.io"].(map[string]any)
	if !ok {
		t.Fatalf("settings have no integrations.Segment.io: %v", s)
	}
	return sio
}

// TestSettingsShape: the settings have the shape analytics-next reads, name
// this collector and the write key, and turn off everything that needs
// Segment.
func TestSettingsShape(t *testing.T) {
	c := newCollector(t, &opentrack.HandlerOptions{WriteKeys: []string{"wk1", "wk2"}}, opentrack.Options{})
	host := strings.TrimPrefix(c.url, "http://")
	for _, key := range []string{"wk1", "wk2"} {
		s, res := settingsOf(t, c.url, key, nil)
		sio := segmentIO(t, s)
		want := map[string]any{"apiKey": key, "apiHost": host, "protocol": "http"}
		for k, v := range want {
			if sio[k] != v {
				t.Errorf("%s: integrations.Segment.io.%s = %v, want %v", key, k, sio[k], v)
			}
		}
		if ints := s["integrations"].(map[string]any); len(ints) != 1 {
			t.Errorf("%s: integrations = %v, want Segment.io only (no device-mode destination)", key, ints)
		}
		for path, want := range map[string]any{
			"metrics.sampleRate":           0.0,
			"metrics.host":                 host,
			"plan.track.__default.enabled": true,
			"analyticsNextEnabled":         true,
			"legacyVideoPluginsEnabled":    false,
		} {
			if got := at(s, path); got != want {
				t.Errorf("%s: %s = %v, want %v", key, path, got, want)
			}
		}
		if got, ok := s["remotePlugins"].([]any); !ok || len(got) != 0 {
			t.Errorf("%s: remotePlugins = %v, want []", key, s["remotePlugins"])
		}
		// As Segment serves them; with them analytics.js adds the _metadata
		// Segment's API expects.
		if got, ok := sio["unbundledIntegrations"].([]any); !ok || len(got) != 0 || sio["addBundledMetadata"] != true {
			t.Errorf("%s: Segment.io unbundledIntegrations %v addBundledMetadata %v", key, sio["unbundledIntegrations"], sio["addBundledMetadata"])
		}
		for _, path := range []string{"enabledMiddleware", "middlewareSettings", "edgeFunction"} {
			if got, ok := at(s, path).(map[string]any); !ok || len(got) != 0 {
				t.Errorf("%s: %s = %v, want {}", key, path, at(s, path))
			}
		}
		if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=300" {
			t.Errorf("Cache-Control = %q", cc)
		}
		if et := res.Header.Get("ETag"); len(et) < 10 || et[0] != '"' || et[len(et)-1] != '"' {
			t.Errorf("ETag = %q, want a strong quoted tag", et)
		}
	}
}

// TestSettingsUnknownWriteKey: with write keys configured, another key's
// settings are 404; without, any key gets settings.
func TestSettingsUnknownWriteKey(t *testing.T) {
	keyed := newCollector(t, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}}, opentrack.Options{})
	for _, path := range []string{"/projects/nope/settings", "/projects//settings", "/projects/wk%2Fx/settings", "/projects/WK/settings"} {
		res, body := getURL(t, http.MethodGet, keyed.url+path, nil)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d %s, want 404", path, res.StatusCode, body)
		}
		// (ServeMux cleans the double slash first, and answers itself.)
		if cc := res.Header.Get("Cache-Control"); cc != "no-store" && !strings.Contains(path, "//") {
			t.Errorf("GET %s: Cache-Control %q, want no-store", path, cc)
		}
	}
	settingsOf(t, keyed.url, "wk", nil)
	// Without a router to clean the path first, an empty key is unknown too.
	for _, keys := range [][]string{{"wk"}, nil} {
		rec := httptest.NewRecorder()
		opentrack.NewHandler(newManager(t, opentrack.Options{Integrations: []opentrack.Integration{newRecorder("Rec")}}), &opentrack.HandlerOptions{WriteKeys: keys, Logger: quietLogger()}).
			ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/projects//settings", nil))
		if rec.Code != http.StatusNotFound || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("keys %v, empty key: %d Cache-Control %q, want 404 no-store", keys, rec.Code, rec.Header().Get("Cache-Control"))
		}
	}

	open := newCollector(t, nil, opentrack.Options{})
	s, _ := settingsOf(t, open.url, "any-key", nil)
	if got := segmentIO(t, s)["apiKey"]; got != "any-key" {
		t.Errorf("apiKey = %v", got)
	}
}

// TestSettingsAPIHostFromPublicURL: a configured PublicURL wins over the
// request and its forwarded headers, trusted or not.
func TestSettingsAPIHostFromPublicURL(t *testing.T) {
	for _, trust := range []bool{false, true} {
		c := newCollector(t, &opentrack.HandlerOptions{PublicURL: "https://collector.example.com/v1/", TrustProxyHeaders: trust}, opentrack.Options{})
		s, _ := settingsOf(t, c.url, "wk", map[string]string{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http", "Forwarded": "host=evil.example;proto=http"})
		sio := segmentIO(t, s)
		if sio["apiHost"] != "collector.example.com/v1" || sio["protocol"] != "https" {
			t.Errorf("trust %v: apiHost %v protocol %v, want collector.example.com/v1 https", trust, sio["apiHost"], sio["protocol"])
		}
	}
}

// TestSettingsInvalidPublicURL: a PublicURL that names no usable address
// makes the settings answer 500 rather than guess.
func TestSettingsInvalidPublicURL(t *testing.T) {
	for _, u := range []string{"collector.example.com/v1", "ftp://x/v1", "https:///v1", "https://x/v1?q=1", "https://user@x/v1", "https://x y/v1"} {
		c := newCollector(t, &opentrack.HandlerOptions{PublicURL: u}, opentrack.Options{})
		res, body := getURL(t, http.MethodGet, c.url+"/projects/wk/settings", nil)
		if res.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "PublicURL") {
			t.Errorf("PublicURL %q: %d %s, want 500 naming PublicURL", u, res.StatusCode, body)
		}
	}
}

// TestSettingsAPIHostFromRequest: without PublicURL, apiHost is the
// request's host and the path the handler is mounted under, whatever the
// router; forwarded headers are ignored unless trusted.
func TestSettingsAPIHostFromRequest(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	mounts := map[string]struct {
		prefix string
		mount  func(h http.Handler) http.Handler
	}{
		"ServeMux with StripPrefix": {"/v1", func(h http.Handler) http.Handler {
			m := http.NewServeMux()
			m.Handle("/v1/", http.StripPrefix("/v1", h))
			return m
		}},
		"ServeMux deeper": {"/api/segment/v1", func(h http.Handler) http.Handler {
			m := http.NewServeMux()
			m.Handle("/api/segment/v1/", http.StripPrefix("/api/segment/v1", h))
			return m
		}},
		"ServeMux without StripPrefix": {"/v1", func(h http.Handler) http.Handler {
			m := http.NewServeMux()
			m.Handle("/v1/", h)
			return m
		}},
		"at the root": {"", func(h http.Handler) http.Handler { return h }},
		"chi Mount": {"/v1", func(h http.Handler) http.Handler {
			r := chi.NewRouter()
			r.Mount("/v1", h)
			return r
		}},
		"gorilla/mux PathPrefix": {"/v1", func(h http.Handler) http.Handler {
			r := mux.NewRouter()
			r.PathPrefix("/v1/").Handler(h)
			return r
		}},
		"echo WrapHandler": {"/v1", func(h http.Handler) http.Handler {
			e := echo.New()
			e.Any("/v1/*", echo.WrapHandler(h))
			return e
		}},
		"gin WrapH": {"/v1", func(h http.Handler) http.Handler {
			g := gin.New()
			g.Any("/v1/*path", gin.WrapH(h))
			return g
		}},
	}
	for name, m := range mounts {
		t.Run(name, func(t *testing.T) {
			mgr := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{newRecorder("Rec")}})
			h := opentrack.NewHandler(mgr, &opentrack.HandlerOptions{Logger: quietLogger()})
			srv := httptest.NewServer(m.mount(h))
			t.Cleanup(srv.Close)
			base := srv.URL + m.prefix
			host := strings.TrimPrefix(srv.URL, "http://")
			for _, path := range []string{"/projects/wk/settings", "/projects/wk/settings/", "/projects/wk/settings?x=1"} {
				res, body := getURL(t, http.MethodGet, base+path, map[string]string{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "Forwarded": "host=evil.example;proto=https", "X-Forwarded-Prefix": "/evil"})
				if res.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %d %s", path, res.StatusCode, body)
				}
				var s map[string]any
				if err := json.Unmarshal(body, &s); err != nil {
					t.Fatal(err)
				}
				sio := segmentIO(t, s)
				if sio["apiHost"] != host+m.prefix || sio["protocol"] != "http" {
					t.Errorf("GET %s: apiHost %v protocol %v, want %s http", path, sio["apiHost"], sio["protocol"], host+m.prefix)
				}
			}
			// The pixel is found under any mount too.
			res, body := getURL(t, http.MethodGet, base+"/pixel/track?userId=u1&event=Opened", nil)
			if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "image/gif" || len(body) == 0 {
				t.Errorf("pixel: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
			}
			if got := h.PixelStats(); got != (opentrack.PixelStats{Accepted: 1}) {
				t.Errorf("pixel stats %+v, want one accepted", got)
			}
		})
	}
}

// TestSettingsForwardedHeadersWhenTrusted: behind a trusted proxy, the
// Forwarded header (RFC 7239) and the X-Forwarded-* headers name the public
// address; values that are not a host, scheme or path are ignored.
func TestSettingsForwardedHeadersWhenTrusted(t *testing.T) {
	c := newCollector(t, &opentrack.HandlerOptions{TrustProxyHeaders: true}, opentrack.Options{})
	host := strings.TrimPrefix(c.url, "http://")
	host = strings.TrimSuffix(host, "/v1")
	for _, tt := range []struct {
		name         string
		header       map[string]string
		host, scheme string
	}{
		{"none", nil, host + "/v1", "http"},
		{"X-Forwarded", map[string]string{"X-Forwarded-Host": "collector.example.com", "X-Forwarded-Proto": "https"}, "collector.example.com/v1", "https"},
		{"X-Forwarded lists", map[string]string{"X-Forwarded-Host": "a.example, b.example", "X-Forwarded-Proto": "HTTPS, http"}, "a.example/v1", "https"},
		{"X-Forwarded-Prefix", map[string]string{"X-Forwarded-Host": "example.com", "X-Forwarded-Prefix": "/collector/"}, "example.com/collector/v1", "http"},
		{"Forwarded", map[string]string{"Forwarded": `for=192.0.2.60;proto=https;host="collector.example.com:8443", for=10.0.0.1;host=inner`}, "collector.example.com:8443/v1", "https"},
		{"Forwarded wins", map[string]string{"Forwarded": "host=f.example;proto=https", "X-Forwarded-Host": "x.example", "X-Forwarded-Proto": "http"}, "f.example/v1", "https"},
		{"Forwarded host only", map[string]string{"Forwarded": "host=f.example", "X-Forwarded-Proto": "https"}, "f.example/v1", "https"},
		{"Host header", map[string]string{"Host": "direct.example"}, "direct.example/v1", "http"},
		{"bad values ignored", map[string]string{"X-Forwarded-Host": "evil.example/path", "X-Forwarded-Proto": "javascript", "X-Forwarded-Prefix": "//evil.example"}, host + "/v1", "http"},
		{"bad prefix ignored", map[string]string{"X-Forwarded-Prefix": "no-slash"}, host + "/v1", "http"},
	} {
		s, _ := settingsOf(t, c.url, "wk", tt.header)
		sio := segmentIO(t, s)
		if sio["apiHost"] != tt.host || sio["protocol"] != tt.scheme {
			t.Errorf("%s: apiHost %v protocol %v, want %s %s", tt.name, sio["apiHost"], sio["protocol"], tt.host, tt.scheme)
		}
		if at(s, "metrics.host") != tt.host {
			t.Errorf("%s: metrics.host %v, want %s", tt.name, at(s, "metrics.host"), tt.host)
		}
	}
}

// TestSettingsETag: the settings carry an ETag; If-None-Match with it (or
// its weak form, or *) is answered 304 without a body; HEAD gets the
// headers only; a changed answer gets a new tag.
func TestSettingsETag(t *testing.T) {
	c := newCollector(t, &opentrack.HandlerOptions{TrustProxyHeaders: true}, opentrack.Options{})
	_, res := settingsOf(t, c.url, "wk", nil)
	etag := res.Header.Get("ETag")
	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		res, body := getURL(t, http.MethodGet, c.url+"/projects/wk/settings", map[string]string{"If-None-Match": inm})
		if res.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Errorf("If-None-Match %s: %d with %d bytes, want 304 without a body", inm, res.StatusCode, len(body))
		}
		if res.Header.Get("ETag") != etag || res.Header.Get("Cache-Control") != "public, max-age=300" {
			t.Errorf("304: ETag %q Cache-Control %q", res.Header.Get("ETag"), res.Header.Get("Cache-Control"))
		}
	}
	if res, _ := getURL(t, http.MethodGet, c.url+"/projects/wk/settings", map[string]string{"If-None-Match": `"stale"`}); res.StatusCode != http.StatusOK {
		t.Errorf("a stale tag: %d, want 200", res.StatusCode)
	}
	res, body := getURL(t, http.MethodHead, c.url+"/projects/wk/settings", nil)
	if res.StatusCode != http.StatusOK || len(body) != 0 || res.Header.Get("ETag") != etag || res.ContentLength <= 0 {
		t.Errorf("HEAD: %d, %d bytes, ETag %q, Content-Length %d", res.StatusCode, len(body), res.Header.Get("ETag"), res.ContentLength)
	}
	// Another key, or another public host, is another answer.
	_, other := settingsOf(t, c.url, "wk2", nil)
	_, moved := settingsOf(t, c.url, "wk", map[string]string{"X-Forwarded-Host": "moved.example"})
	if other.Header.Get("ETag") == etag || moved.Header.Get("ETag") == etag {
		t.Errorf("different settings share the ETag %s", etag)
	}
}

// TestSettingsCORS: the settings and the pixel answer browsers from allowed
// origins readably, refuse others, and preflights name GET.
func TestSettingsCORS(t *testing.T) {
	c := newCollector(t, &opentrack.HandlerOptions{AllowedOrigins: []string{"https://app.example.com"}}, opentrack.Options{})
	_, res := settingsOf(t, c.url, "wk", map[string]string{"Origin": "https://app.example.com"})
	if got := res.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
		t.Errorf("Access-Control-Allow-Origin = %q", got)
	}
	if v := res.Header.Values("Vary"); !strings.Contains(strings.Join(v, ","), "Origin") {
		t.Errorf("Vary = %v, want Origin: a CDN must not give one origin's answer to another", v)
	}
	res, _ = getURL(t, http.MethodGet, c.url+"/projects/wk/settings", map[string]string{"Origin": "https://evil.example"})
	if res.StatusCode != http.StatusForbidden || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a disallowed origin: %d, Access-Control-Allow-Origin %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
	res, _ = getURL(t, http.MethodOptions, c.url+"/pixel/track", map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"})
	if res.StatusCode != http.StatusNoContent || !strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "GET") {
		t.Errorf("preflight of the pixel: %d, Access-Control-Allow-Methods %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Methods"))
	}
}

// TestSettingsMergesTheHostsSettings: HandlerOptions.Settings is merged over
// the defaults, per write key: objects key by key, values replaced, nil
// removing; the host's map is left as it was.
func TestSettingsMergesTheHostsSettings(t *testing.T) {
	extra := map[string]any{
		"integrations": map[string]any{
			"Segment.io": map[string]any{"retryQueue": false},
			"Webhooks":   map[string]any{"url": "https://hooks.example.com", "gone": nil},
		},
		"metrics":       map[string]any{"sampleRate": 0.5},
		"plan":          nil,
		"remotePlugins": []any{map[string]any{"name": "Mine"}},
		"custom":        "yes",
	}
	before, _ := json.Marshal(extra)
	calls := map[string]int{}
	c := newCollector(t, &opentrack.HandlerOptions{Settings: func(writeKey string) map[string]any {
		calls[writeKey]++ // requests here are sequential
		if writeKey == "plain" {
			return nil
		}
		return extra
	}}, opentrack.Options{})
	host := strings.TrimPrefix(c.url, "http://")

	for range 2 {
		s, _ := settingsOf(t, c.url, "rich", nil)
		sio := segmentIO(t, s)
		if sio["apiKey"] != "rich" || sio["apiHost"] != host || sio["retryQueue"] != false {
			t.Errorf("Segment.io = %v: the default fields must stay beside the host's", sio)
		}
		if got := at(s, "integrations.Webhooks"); !reflect.DeepEqual(got, map[string]any{"url": "https://hooks.example.com"}) {
			t.Errorf("integrations.Webhooks = %v", got)
		}
		if at(s, "metrics.sampleRate") != 0.5 || at(s, "metrics.host") != host {
			t.Errorf("metrics = %v", s["metrics"])
		}
		if _, ok := s["plan"]; ok {
			t.Errorf("plan kept, want removed by nil")
		}
		if s["custom"] != "yes" || len(s["remotePlugins"].([]any)) != 1 {
			t.Errorf("custom %v remotePlugins %v", s["custom"], s["remotePlugins"])
		}
	}
	after, _ := json.Marshal(extra)
	if string(before) != string(after) {
		t.Errorf("the host's settings changed:\n%s\n%s", before, after)
	}
	s, _ := settingsOf(t, c.url, "plain", nil)
	if ints := s["integrations"].(map[string]any); len(ints) != 1 || at(s, "metrics.sampleRate") != 0.0 {
		t.Errorf("nil from Settings must give the defaults: %v", s)
	}
	if calls["rich"] != 2 || calls["plain"] != 1 {
		t.Errorf("Settings called %v", calls)
	}
}

// TestSettingsThatAreNotJSON: settings the host returns that cannot be
// written as JSON are a 500, not a panic or a partial answer.
func TestSettingsThatAreNotJSON(t *testing.T) {
	c := newCollector(t, &opentrack.HandlerOptions{Settings: func(string) map[string]any {
		return map[string]any{"bad": make(chan int)}
	}}, opentrack.Options{})
	res, body := getURL(t, http.MethodGet, c.url+"/projects/wk/settings", nil)
	if res.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "JSON") {
		t.Errorf("%d %s, want 500", res.StatusCode, body)
	}
}

// TestHandlerGetOnPostRoutes: the Tracking API's POST routes still answer
// GET with 405, and unknown GET paths with 404.
func TestHandlerGetOnPostRoutes(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	for path, want := range map[string]int{
		"/track": 405, "/t": 405, "/batch": 405, "/m": 405,
		"/nope": 404, "/projects/wk": 404, "/settings": 404, "/pixel": 404, "/pixel/nope": 404, "/pixel/t": 405,
	} {
		res, _ := getURL(t, http.MethodGet, c.url+path, nil)
		if res.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, res.StatusCode, want)
		}
	}
}

// BenchmarkSettings: one settings request, built from the request.
func BenchmarkSettings(b *testing.B) {
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{discard()}, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}, Logger: quietLogger()})
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/projects/wk/settings", nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}
