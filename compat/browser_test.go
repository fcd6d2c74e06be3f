package compat

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// requireChromium returns the path of Debian's Chromium, skipping the test
// when it is not installed.
func requireChromium(t *testing.T) string {
	t.Helper()
	const debian = "/usr/bin/chromium"
	if _, err := os.Stat(debian); err == nil {
		return debian
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	missingTool(t, "chromium not found (/usr/bin/chromium); .ci/run installs it with apt-get install chromium")
	return ""
}

// failOnce answers the first POST of the track event named event with a 503,
// as a collector under load would, so that analytics.js retries it. It
// records the messageId it refused.
type failOnce struct {
	event string

	mu        sync.Mutex
	messageID string
}

func (f *failOnce) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := readBody(r)
			var e struct {
				Event     string `json:"event"`
				MessageID string `json:"messageId"`
			}
			_ = json.Unmarshal(body, &e)
			f.mu.Lock()
			first := e.Event == f.event && f.messageID == ""
			if first {
				f.messageID = e.MessageID
			}
			f.mu.Unlock()
			if first {
				// Answer readably for the page's origin, as the handler's
				// own 503 does, so the browser sees a 503 and not a CORS
				// failure.
				if o := r.Header.Get("Origin"); o != "" {
					w.Header().Set("Access-Control-Allow-Origin", o)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"error":"Try again"}` + "\n"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (f *failOnce) refused() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.messageID
}

// pageServer serves the test page and the analytics.js UMD build from
// node_modules, on an origin of its own.
func pageServer(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	js := filepath.Join(dir, "node_modules", "@segment", "analytics-next", "dist", "umd", "index.js")
	if _, err := os.Stat(js); err != nil {
		t.Fatalf("analytics.js build missing from node_modules: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "index.html"))
	})
	mux.HandleFunc("GET /analytics-next.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, js)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestAnalyticsJS loads analytics.js (@segment/analytics-next) in headless
// Chromium from a page on one origin and sends to the collector on another,
// so every call goes through a CORS preflight: analytics.js posts text/plain
// but adds Authorization (and X-Retry-Count on retries). One event is failed
// once to make analytics.js retry it. A second page, on an origin the
// collector does not allow, must get nothing through.
func TestAnalyticsJS(t *testing.T) {
	node := requireNode(t)
	chromium := requireChromium(t)
	dir := testdataDir(t, "browser")
	npmInstall(t, dir)

	allowed := pageServer(t, dir)
	blocked := pageServer(t, dir)
	const writeKey = "wk-browser"
	flaky := &failOnce{event: "Retried Event"}
	c := newCollector(t, opentrack.HandlerOptions{
		WriteKeys:      []string{writeKey},
		AllowedOrigins: []string{allowed.URL},
	}, flaky.wrap)

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	start := time.Now()
	out, runErr := runNode(t, ctx, node, dir, "drive.js", map[string]any{
		"chromium":    chromium,
		"userDataDir": t.TempDir(),
		"collector":   c.URL,
		"writeKey":    writeKey,
		"allowedPage": allowed.URL + "/",
		"blockedPage": blocked.URL + "/",
		"expectOK":    7,
		"timeoutMs":   25000,
	})

	type call struct {
		Call      string `json:"call"`
		MessageID string `json:"messageId"`
	}
	type pageResult struct {
		Calls       []call `json:"calls"`
		AnonymousID string `json:"anonymousId"`
		UserID      string `json:"userId"`
	}
	var report struct {
		Allowed   *pageResult       `json:"allowed"`
		Blocked   *pageResult       `json:"blocked"`
		Responses []json.RawMessage `json:"responses"`
		Failures  []json.RawMessage `json:"failures"`
		External  []string          `json:"external"`
		Console   []string          `json:"console"`
		Error     *string           `json:"error"`
	}
	parseErr := json.Unmarshal(out, &report)
	for _, line := range report.Console {
		t.Logf("console: %s", line)
	}
	// What reached the collector explains most failures, so show it first.
	wire := c.wire.requests()
	for _, r := range wire {
		t.Logf("wire: %-7s %-5s Origin=%s Access-Control-Request-Headers=%q X-Retry-Count=%q -> %d",
			r.Method, r.Path, r.Header.Get("Origin"), r.Header.Get("Access-Control-Request-Headers"), r.Header.Get("X-Retry-Count"), r.Status)
	}
	for _, f := range report.Failures {
		t.Logf("failed in the browser: %s", f)
	}
	switch {
	case runErr != nil:
		t.Fatalf("%v; its report says: %v\nstdout:\n%s", runErr, deref(report.Error), tail(out, 8000))
	case parseErr != nil:
		t.Fatalf("drive.js output: %v\n%s", parseErr, tail(out, 8000))
	case report.Error != nil || report.Allowed == nil || report.Blocked == nil:
		t.Fatalf("drive.js failed: %v\n%s", deref(report.Error), tail(out, 8000))
	}
	if len(report.External) > 0 {
		t.Errorf("the browser requested addresses outside 127.0.0.1: %v", report.External)
	}
	if len(report.Allowed.Calls) != 7 || len(report.Blocked.Calls) != 1 {
		t.Fatalf("drive.js made %d + %d calls, want 7 + 1", len(report.Allowed.Calls), len(report.Blocked.Calls))
	}
	anon := report.Allowed.AnonymousID
	if anon == "" {
		t.Errorf("analytics.js has no anonymousId")
	}
	wantEqual(t, "analytics.js user id", report.Allowed.UserID, "browser-user")

	allowedOrigin, blockedOrigin := allowed.URL, blocked.URL

	// Preflights. analytics.js adds Authorization to a text/plain POST, so
	// the browser asks first.
	var preflights int
	for _, r := range wire {
		if r.Method != http.MethodOptions {
			continue
		}
		origin := r.Header.Get("Origin")
		asked := strings.ToLower(r.Header.Get("Access-Control-Request-Headers"))
		acao := r.RespHeader.Get("Access-Control-Allow-Origin")
		switch origin {
		case allowedOrigin:
			preflights++
			if !strings.Contains(asked, "authorization") {
				t.Errorf("preflight %s asked for headers %q, expected authorization among them", r.Path, asked)
			}
			if r.Status != http.StatusNoContent && r.Status != http.StatusOK {
				t.Errorf("preflight %s from the allowed origin answered %d", r.Path, r.Status)
			}
			wantEqual(t, "preflight Access-Control-Allow-Origin", acao, allowedOrigin)
			allowHeaders := strings.ToLower(r.RespHeader.Get("Access-Control-Allow-Headers"))
			for _, h := range []string{"authorization", "content-type", "x-retry-count"} {
				if !strings.Contains(allowHeaders, h) {
					t.Errorf("preflight %s: Access-Control-Allow-Headers %q lacks %s", r.Path, allowHeaders, h)
				}
			}
			if m := r.RespHeader.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
				t.Errorf("preflight %s: Access-Control-Allow-Methods %q lacks POST", r.Path, m)
			}
		case blockedOrigin:
			if r.Status != http.StatusForbidden || acao != "" {
				t.Errorf("preflight from a disallowed origin answered %d with Access-Control-Allow-Origin %q, want 403 without it", r.Status, acao)
			}
		default:
			t.Errorf("preflight %s with unexpected Origin %q", r.Path, origin)
		}
	}
	if preflights == 0 {
		t.Errorf("no CORS preflight from the allowed origin reached the collector")
	}

	// The POSTs: each event sent once, with the write key, and answered
	// readably for the page; only the refused one sent twice, the second
	// time with X-Retry-Count.
	refused := flaky.refused()
	if refused == "" {
		t.Fatalf("the event to fail once was never posted")
	}
	posted := map[string][]wireRequest{}
	for _, r := range wire {
		if r.Method != http.MethodPost {
			continue
		}
		if o := r.Header.Get("Origin"); o != allowedOrigin {
			t.Errorf("POST %s from origin %q reached the collector (%d)", r.Path, o, r.Status)
			continue
		}
		var body struct {
			MessageID string `json:"messageId"`
			WriteKey  string `json:"writeKey"`
			Type      string `json:"type"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Errorf("POST %s body: %v", r.Path, err)
			continue
		}
		posted[body.MessageID] = append(posted[body.MessageID], r)
		if body.Type == "" {
			t.Errorf("POST %s: body without a type", r.Path)
		} else {
			// analytics.js posts to the short forms: /t, /i, /p, ...
			wantEqual(t, "POST path for a "+body.Type, r.Path, "/v1/"+body.Type[:1])
		}
		if user, ok := r.basicUser(); !ok || user != writeKey {
			t.Errorf("POST %s: Basic-auth user %q (present %v), want %s", r.Path, user, ok, writeKey)
		}
		wantEqual(t, "POST body writeKey", body.WriteKey, writeKey)
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("POST %s: Content-Type %q, analytics.js was expected to send text/plain", r.Path, ct)
		}
		wantEqual(t, "POST answer Access-Control-Allow-Origin", r.RespHeader.Get("Access-Control-Allow-Origin"), allowedOrigin)
	}
	for id, reqs := range posted {
		if id == refused {
			continue
		}
		if len(reqs) != 1 || reqs[0].Status != http.StatusOK {
			t.Errorf("event %s posted %d times (first answer %d), want once, answered 200", id, len(reqs), reqs[0].Status)
		}
	}
	if reqs := posted[refused]; len(reqs) != 2 {
		t.Errorf("the refused event was posted %d times, want twice", len(reqs))
	} else {
		wantEqual(t, "first attempt status", reqs[0].Status, http.StatusServiceUnavailable)
		wantEqual(t, "first attempt X-Retry-Count", reqs[0].Header.Get("X-Retry-Count"), "")
		wantEqual(t, "retry status", reqs[1].Status, http.StatusOK)
		wantEqual(t, "retry X-Retry-Count", reqs[1].Header.Get("X-Retry-Count"), "1")
	}

	// What the integration received: every allowed call once, nothing from
	// the blocked page.
	got := c.delivered(t)
	if len(got) != 7 {
		t.Errorf("integration received %d events, want 7", len(got))
	}
	if id := report.Blocked.Calls[0].MessageID; got[id].MessageID != "" {
		t.Errorf("the event from the disallowed origin was delivered")
	}
	byCall := map[string]received{}
	for _, cl := range report.Allowed.Calls {
		e, ok := got[cl.MessageID]
		if !ok {
			t.Errorf("%s %s did not reach the integration", cl.Call, cl.MessageID)
			continue
		}
		wantEqual(t, cl.MessageID+" type", string(e.Type), cl.Call)
		key := cl.Call
		if e.Type == spec.TypeTrack {
			key += " " + e.Event
		}
		byCall[key] = e
		wantFields(t, key+" context", e.Context, map[string]string{
			"library.name":    "analytics.js",
			"library.version": "next-1.84.3",
			"ip":              "127.0.0.1",
			"page.url":        allowed.URL + "/",
			"page.path":       "/",
			"page.title":      "OpenTrack compat",
		})
		if ua := str(e.Context, "userAgent"); !strings.Contains(ua, "Chrome") {
			t.Errorf("%s context.userAgent = %q", key, ua)
		}
		wantEqual(t, key+" anonymousId", e.AnonymousID, anon)
		wantEqual(t, key+" writeKey", e.WriteKey, "")
		wantNear(t, key+" receivedAt", e.ReceivedAt, start, time.Minute)
		// One clock on both sides, so the corrected timestamp stays close
		// to the browser's.
		wantNear(t, key+" timestamp", e.Timestamp, e.OriginalTimestamp, 5*time.Second)
		if e.SentAt.IsZero() {
			t.Errorf("%s has no sentAt", key)
		}
	}

	pg := byCall["page"]
	wantEqual(t, "page userId", pg.UserID, "")
	wantEqual(t, "page name", pg.Name, "Getting Started")
	wantEqual(t, "page category", pg.Category, "Docs")
	wantFields(t, "page properties", pg.Properties, map[string]string{"section": "intro", "url": allowed.URL + "/", "path": "/"})

	id := byCall["identify"]
	wantEqual(t, "identify userId", id.UserID, "browser-user")
	wantFields(t, "identify traits", id.Traits, map[string]string{"email": "ada@example.com", "plan": "pro"})

	tr := byCall["track Signed Up"]
	wantEqual(t, "track userId", tr.UserID, "browser-user")
	wantFields(t, "track properties", tr.Properties, map[string]string{"plan": "pro", "seats": "3"})

	gr := byCall["group"]
	wantEqual(t, "group groupId", gr.GroupID, "acme")
	wantFields(t, "group traits", gr.Traits, map[string]string{"name": "Acme", "employees": "12"})

	al := byCall["alias"]
	wantEqual(t, "alias userId", al.UserID, "browser-user")
	wantEqual(t, "alias previousId", al.PreviousID, anon)

	sc := byCall["screen"]
	wantEqual(t, "screen name", sc.Name, "Home")
	wantEqual(t, "screen category", sc.Category, "App")
	wantFields(t, "screen properties", sc.Properties, map[string]string{"tab": "feed"})

	rt := byCall["track Retried Event"]
	wantEqual(t, "retried messageId", rt.MessageID, refused)
	wantFields(t, "retried properties", rt.Properties, map[string]string{"attempt": "any"})

	t.Logf("received from analytics.js: %v", slices.Sorted(maps.Keys(byCall)))
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}
