package compat

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// received is what the recording integration was handed, read back from the
// event's own Segment JSON.
type received struct {
	Type              spec.Type      `json:"type"`
	MessageID         string         `json:"messageId"`
	UserID            string         `json:"userId"`
	AnonymousID       string         `json:"anonymousId"`
	Timestamp         time.Time      `json:"timestamp"`
	OriginalTimestamp time.Time      `json:"originalTimestamp"`
	SentAt            time.Time      `json:"sentAt"`
	ReceivedAt        time.Time      `json:"receivedAt"`
	Context           map[string]any `json:"context"`
	Integrations      map[string]any `json:"integrations"`
	WriteKey          string         `json:"writeKey"`
	Event             string         `json:"event"`
	Name              string         `json:"name"`
	Category          string         `json:"category"`
	Properties        map[string]any `json:"properties"`
	Traits            map[string]any `json:"traits"`
	GroupID           string         `json:"groupId"`
	PreviousID        string         `json:"previousId"`

	// All holds every top-level field, unknown ones included.
	All map[string]any `json:"-"`
}

// recorder is an in-memory integration. It keeps a copy of each event (the
// Manager's events are shared and must not be kept), so the test can inspect
// them after Manager.Flush.
type recorder struct {
	mu     sync.Mutex
	events []received
	errs   []error
}

const recorderName = "Recorder"

func (r *recorder) integration() opentrack.Integration {
	return opentrack.Func(recorderName, r.record)
}

func (r *recorder) record(_ context.Context, e spec.Event) error {
	var got received
	b, err := e.MarshalJSON()
	if err == nil {
		err = decodeJSON(b, &got)
	}
	if err == nil {
		err = decodeJSON(b, &got.All)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("recording %s event %q: %w", e.Fields().Type, e.Fields().MessageID, err))
		return nil
	}
	r.events = append(r.events, got)
	return nil
}

func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// byMessageID returns the recorded events keyed by messageId. It fails the
// test if any event has no messageId or arrived twice.
func (r *recorder) byMessageID(t *testing.T) map[string]received {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, err := range r.errs {
		t.Error(err)
	}
	out := make(map[string]received, len(r.events))
	for _, e := range r.events {
		if e.MessageID == "" {
			t.Errorf("%s event delivered without a messageId", e.Type)
			continue
		}
		if _, dup := out[e.MessageID]; dup {
			t.Errorf("event %s (%s) delivered twice", e.MessageID, e.Type)
		}
		out[e.MessageID] = e
	}
	return out
}

// wireRequest is one HTTP exchange between an SDK and the collector.
type wireRequest struct {
	Method     string
	Path       string
	Header     http.Header
	Body       []byte
	Status     int
	RespHeader http.Header
	RespBody   []byte
}

// basicUser returns the Basic-auth username of the request, if any.
func (w wireRequest) basicUser() (string, bool) {
	v := w.Header.Get("Authorization")
	const prefix = "Basic "
	if !strings.HasPrefix(v, prefix) {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(v[len(prefix):])
	if err != nil {
		return "", false
	}
	user, _, _ := strings.Cut(string(raw), ":")
	return user, true
}

// wireLog records every request the collector's server answers, as the SDK
// sent it and as the server answered it, in arrival order.
type wireLog struct {
	mu   sync.Mutex
	reqs []wireRequest
}

func (l *wireLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		l.mu.Lock()
		l.reqs = append(l.reqs, wireRequest{
			Method:     r.Method,
			Path:       r.URL.Path,
			Header:     r.Header.Clone(),
			Body:       body,
			Status:     sw.status,
			RespHeader: w.Header().Clone(),
			RespBody:   sw.body.Bytes(),
		})
		l.mu.Unlock()
	})
}

// readBody reads the request's body and puts it back for the next handler.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, err
}

func (l *wireLog) requests() []wireRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

type statusWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len() < 64<<10 {
		w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// collector is the handler under test, mounted at /v1 on 127.0.0.1, with a
// recording integration.
type collector struct {
	URL  string // the server's base URL, without /v1
	m    *opentrack.Manager
	rec  *recorder
	wire *wireLog

	mu       sync.Mutex
	failures []opentrack.Failure
}

// newCollector starts a collector. Each of the optional middlewares wraps the
// handler, inside the wire log, so the log shows what they answer too.
// Deduplication is off so that an SDK sending an event twice shows as two
// deliveries instead of being hidden.
func newCollector(t *testing.T, opts opentrack.HandlerOptions, middlewares ...func(http.Handler) http.Handler) *collector {
	t.Helper()
	c := &collector{rec: &recorder{}, wire: &wireLog{}}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m, err := opentrack.New(opentrack.Options{
		Integrations: []opentrack.Integration{c.rec.integration()},
		DisableDedup: true,
		Logger:       logger,
		OnFailure: func(f opentrack.Failure) {
			c.mu.Lock()
			c.failures = append(c.failures, f)
			c.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("opentrack.New: %v", err)
	}
	c.m = m
	if opts.Logger == nil {
		opts.Logger = logger
	}
	var h http.Handler = opentrack.NewHandler(m, &opts)
	for _, mw := range middlewares {
		h = mw(h)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", h))
	srv := httptest.NewServer(c.wire.wrap(mux))
	c.URL = srv.URL
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("Manager.Shutdown: %v", err)
		}
	})
	return c
}

// delivered flushes the Manager and returns what the integration received,
// by messageId. It fails the test if any delivery failed.
func (c *collector) delivered(t *testing.T) map[string]received {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.m.Flush(ctx); err != nil {
		t.Fatalf("Manager.Flush: %v", err)
	}
	c.mu.Lock()
	for _, f := range c.failures {
		t.Errorf("delivery of %s failed: %v", f.Event.Fields().MessageID, f.Err)
	}
	c.mu.Unlock()
	return c.rec.byMessageID(t)
}

// posts returns the POST requests the server saw.
func (c *collector) posts() []wireRequest {
	var out []wireRequest
	for _, r := range c.wire.requests() {
		if r.Method == http.MethodPost {
			out = append(out, r)
		}
	}
	return out
}

// Assertion helpers.

func wantEqual[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// str returns the value at the dotted path in m as a string: a string as is,
// a json.Number as its digits; "" when absent.
func str(m map[string]any, path string) string {
	v := lookup(m, path)
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func lookup(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// wantFields checks that each dotted path of m holds the wanted value.
func wantFields(t *testing.T, what string, m map[string]any, want map[string]string) {
	t.Helper()
	for _, path := range slices.Sorted(maps.Keys(want)) {
		if got := str(m, path); got != want[path] {
			t.Errorf("%s.%s = %q, want %q", what, path, got, want[path])
		}
	}
}

// wantNear checks that got is within tolerance of want.
func wantNear(t *testing.T, what string, got, want time.Time, tolerance time.Duration) {
	t.Helper()
	if d := got.Sub(want); d < -tolerance || d > tolerance {
		t.Errorf("%s = %s, want %s ± %s (off by %s)", what, got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano), tolerance, d)
	}
}

// Node and npm.

// testdataDir returns the absolute path of testdata/name.
func testdataDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// skipped lists the SDK tests skipped for a missing tool, printed after the
// run so that a plain `go test ./compat` does not hide them behind "ok".
var skipped struct {
	sync.Mutex
	reasons []string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(skipped.reasons) > 0 {
		fmt.Fprintf(os.Stderr, "compat: %d SDK tests did not run:\n", len(skipped.reasons))
		for _, r := range skipped.reasons {
			fmt.Fprintf(os.Stderr, "  SKIP %s\n", r)
		}
	}
	os.Exit(code)
}

// missingTool skips t because a tool it needs is missing, and says so after
// the run; under CI (CI set, as .ci/run sets it) the test fails instead,
// because .ci/run installs every tool and a skip would hide the SDK untested.
func missingTool(t *testing.T, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set, and %s", reason)
	}
	skipped.Lock()
	skipped.reasons = append(skipped.reasons, t.Name()+": "+reason)
	skipped.Unlock()
	t.Skip(reason)
}

// requireNode returns the path of node, skipping the test (failing it under
// CI) when node or npm is missing or node is older than the SDKs need (20).
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		missingTool(t, "node not found on PATH; .ci/run installs it")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		missingTool(t, "npm not found on PATH; .ci/run installs it")
	}
	out, err := exec.CommandContext(t.Context(), node, "--version").Output()
	if err != nil {
		missingTool(t, "node --version failed: %v", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, _, _ := strings.Cut(v, ".")
	if n, err := strconv.Atoi(major); err != nil || n < 20 {
		missingTool(t, "node %s is too old: the SDKs need node 20 or later", strings.TrimSpace(string(out)))
	}
	return node
}

// npmInstall runs `npm ci` in dir unless its node_modules is already
// installed from the current package-lock.json. It skips the test if the
// install fails (no registry, for instance).
func npmInstall(t *testing.T, dir string) {
	t.Helper()
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatalf("missing lock file: %v", err)
	}
	// npm ci writes node_modules/.package-lock.json when it is done.
	if done, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil && !done.ModTime().Before(lock.ModTime()) {
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	// No package may download a browser of its own.
	cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		missingTool(t, "npm ci in %s failed, so the SDK is not installed (.ci/run installs it): %v\n%s", dir, err, tail(out, 2000))
	}
	t.Logf("npm ci in %s took %s", filepath.Base(dir), time.Since(start).Round(time.Millisecond))
}

// runNode runs `node script arg` in dir, arg as JSON, and returns its
// standard output, which it also returns when node fails.
func runNode(t *testing.T, ctx context.Context, node, dir, script string, arg any) ([]byte, error) {
	t.Helper()
	cfg, err := json.Marshal(arg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node, script, string(cfg))
	cmd.Dir = dir
	// On timeout, SIGTERM first: playwright-core then closes the browser it
	// launched; SIGKILL follows if node is still there after WaitDelay.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	t.Logf("node %s ran for %s", script, time.Since(start).Round(time.Millisecond))
	if stderr.Len() > 0 {
		t.Logf("node %s stderr:\n%s", script, tail(stderr.Bytes(), 8000))
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = errors.Join(err, ctxErr)
		}
		err = fmt.Errorf("node %s: %w", script, err)
	}
	return stdout.Bytes(), err
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
