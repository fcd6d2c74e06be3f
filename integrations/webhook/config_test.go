package webhook

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrationtest"
	"github.com/opentrackhq/opentrack/internal/webhooktest"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestNewDefaults(t *testing.T) {
	in, err := New("https://hooks.example.com/in", nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.Name() != "Webhook" || in.method != "POST" || in.batchSize != 1 || in.maxBytes != DefaultMaxBatchBytes ||
		in.timeout != DefaultTimeout || in.signing != SigningSegment || in.secret != nil || !in.own {
		t.Errorf("defaults: %+v", in)
	}
	if in.origin != "https://hooks.example.com:443" {
		t.Errorf("origin %q", in.origin)
	}
	named, err := New("http://127.0.0.1:8080/a", &Options{Name: "Audit Hook", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if named.Name() != "Audit Hook" || named.timeout != time.Second || named.origin != "http://127.0.0.1:8080" {
		t.Errorf("named: %q, %v, %q", named.Name(), named.timeout, named.origin)
	}
	// A Manager takes two webhooks under different names.
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{in, named}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestNewUsesTheGivenClient(t *testing.T) {
	redirects := 0
	hc := &http.Client{Timeout: 3 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { redirects++; return nil }}
	in, err := New("http://127.0.0.1:1/", &Options{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	if in.client == hc || in.client.Timeout != 3*time.Second || in.own {
		t.Error("New must use a copy of the given client, keeping its settings")
	}
	if hc.CheckRedirect == nil || redirects != 0 {
		t.Error("New changed the caller's client")
	}
}

func TestNewRejects(t *testing.T) {
	cases := []struct {
		name, url string
		opts      Options
		field     string
	}{
		{"empty url", "", Options{}, "webhook.URL"},
		{"relative url", "/hook", Options{}, "webhook.URL"},
		{"no scheme", "hooks.example.com/in", Options{}, "webhook.URL"},
		{"ftp", "ftp://hooks.example.com/in", Options{}, "webhook.URL"},
		{"no host", "http:///in", Options{}, "webhook.URL"},
		{"unparsable", "http://[::1", Options{}, "webhook.URL"},
		{"control character", "http://example.com/\x7f", Options{}, "webhook.URL"},
		{"GET", "http://example.com", Options{Method: "GET"}, "webhook.Options.Method"},
		{"DELETE", "http://example.com", Options{Method: "delete"}, "webhook.Options.Method"},
		{"negative batch size", "http://example.com", Options{BatchSize: -1}, "webhook.Options.BatchSize"},
		{"negative batch bytes", "http://example.com", Options{MaxBatchBytes: -1}, "webhook.Options.MaxBatchBytes"},
		{"negative timeout", "http://example.com", Options{Timeout: -time.Second}, "webhook.Options.Timeout"},
		{"unknown signing", "http://example.com", Options{Signing: "github"}, "webhook.Options.Signing"},
		{"standard without secret", "http://example.com", Options{Signing: SigningStandard}, "webhook.Options.Secret"},
		{"standard without whsec_", "http://example.com", Options{Signing: SigningStandard, Secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "webhook.Options.Secret"},
		{"standard not base64", "http://example.com", Options{Signing: SigningStandard, Secret: "whsec_not base64!"}, "webhook.Options.Secret"},
		{"standard empty key", "http://example.com", Options{Signing: SigningStandard, Secret: "whsec_"}, "webhook.Options.Secret"},
		{"reserved header", "http://example.com", Options{Headers: http.Header{"content-type": {"text/plain"}}}, "webhook.Options.Headers"},
		{"signature header", "http://example.com", Options{Headers: http.Header{"X-Signature": {"forged"}}}, "webhook.Options.Headers"},
		{"webhook-id header", "http://example.com", Options{Headers: http.Header{"webhook-id": {"x"}}}, "webhook.Options.Headers"},
		{"idempotency header", "http://example.com", Options{Headers: http.Header{"Idempotency-Key": {"x"}}}, "webhook.Options.Headers"},
		{"bad header name", "http://example.com", Options{Headers: http.Header{"X Bad": {"x"}}}, "webhook.Options.Headers"},
		{"empty header name", "http://example.com", Options{Headers: http.Header{"": {"x"}}}, "webhook.Options.Headers"},
		{"header value with a newline", "http://example.com", Options{Headers: http.Header{"Authorization": {"Bearer s3cret\r\nX-Evil: 1"}}}, "webhook.Options.Headers"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, err := New(c.url, &c.opts)
			var ce *opentrack.ConfigError
			if !errors.As(err, &ce) || ce.Field != c.field || in != nil {
				t.Fatalf("New = %v, %v; want a *opentrack.ConfigError for %s", in, err, c.field)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "MfKQ9r8") {
				t.Errorf("the error shows a secret: %v", err)
			}
			if strings.Count(err.Error(), "webhook:") > 1 {
				t.Errorf("doubled prefix: %v", err)
			}
		})
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFromEnvNotConfigured(t *testing.T) {
	for _, e := range []map[string]string{{}, {"WEBHOOK_URL": "  "}, {"OTHER": "x"}} {
		in, err := FromEnv(t.Context(), env(e))
		if in != nil || !errors.Is(err, opentrack.ErrNotConfigured) {
			t.Errorf("%v: %v, %v; want nil, ErrNotConfigured", e, in, err)
		}
	}
}

func TestFromEnvRejects(t *testing.T) {
	url := map[string]string{"WEBHOOK_URL": "https://hooks.example.com/in"}
	with := func(extra ...string) map[string]string {
		m := maps.Clone(url)
		for i := 0; i < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	cases := []struct {
		name  string
		env   map[string]string
		field string
	}{
		{"secret without url", map[string]string{"WEBHOOK_SECRET": "s3cret"}, "WEBHOOK_URL"},
		{"headers without url", map[string]string{"WEBHOOK_HEADERS": `{"A":"b"}`}, "WEBHOOK_URL"},
		{"batch size without url", map[string]string{"WEBHOOK_BATCH_SIZE": "10"}, "WEBHOOK_URL"},
		{"timeout without url", map[string]string{"WEBHOOK_TIMEOUT": "5s"}, "WEBHOOK_URL"},
		{"bad url", map[string]string{"WEBHOOK_URL": "hooks.example.com"}, "WEBHOOK_URL"},
		{"ftp url", map[string]string{"WEBHOOK_URL": "ftp://hooks.example.com"}, "WEBHOOK_URL"},
		{"unknown signing", with("WEBHOOK_SIGNING", "sha256", "WEBHOOK_SECRET", "s3cret"), "WEBHOOK_SIGNING"},
		{"standard without secret", with("WEBHOOK_SIGNING", "standard"), "WEBHOOK_SECRET"},
		{"standard with a plain secret", with("WEBHOOK_SIGNING", "standard", "WEBHOOK_SECRET", "s3cret"), "WEBHOOK_SECRET"},
		{"headers not json", with("WEBHOOK_HEADERS", "Authorization: Bearer s3cret"), "WEBHOOK_HEADERS"},
		{"headers bad value", with("WEBHOOK_HEADERS", `{"Authorization":"Bearer s3cret\n"}`), "WEBHOOK_HEADERS"},
		{"headers reserved", with("WEBHOOK_HEADERS", `{"Content-Type":"text/plain"}`), "WEBHOOK_HEADERS"},
		{"method", with("WEBHOOK_METHOD", "GET"), "WEBHOOK_METHOD"},
		{"batch size zero", with("WEBHOOK_BATCH_SIZE", "0"), "WEBHOOK_BATCH_SIZE"},
		{"batch size text", with("WEBHOOK_BATCH_SIZE", "ten"), "WEBHOOK_BATCH_SIZE"},
		{"batch bytes negative", with("WEBHOOK_MAX_BATCH_BYTES", "-5"), "WEBHOOK_MAX_BATCH_BYTES"},
		{"timeout no unit", with("WEBHOOK_TIMEOUT", "10"), "WEBHOOK_TIMEOUT"},
		{"timeout zero", with("WEBHOOK_TIMEOUT", "0s"), "WEBHOOK_TIMEOUT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, err := FromEnv(t.Context(), env(c.env))
			var ce *opentrack.ConfigError
			if !errors.As(err, &ce) || ce.Field != c.field || in != nil {
				t.Fatalf("FromEnv = %v, %v; want a *opentrack.ConfigError naming %s", in, err, c.field)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

// TestFromEnvDelivers configures every variable and checks the requests a
// verifying receiver accepts.
func TestFromEnvDelivers(t *testing.T) {
	recv := webhooktest.New(&webhooktest.Options{StandardSecret: testSecret})
	defer recv.Close()
	in, err := FromEnv(t.Context(), env(map[string]string{
		"WEBHOOK_URL":             " " + recv.URL() + "/in ",
		"WEBHOOK_SECRET":          testSecret,
		"WEBHOOK_SIGNING":         "Standard",
		"WEBHOOK_HEADERS":         `{"authorization": "Bearer abc, def", "X-Note": "a; b=\"c\""}`,
		"WEBHOOK_METHOD":          "patch",
		"WEBHOOK_BATCH_SIZE":      "4",
		"WEBHOOK_MAX_BATCH_BYTES": "100000",
		"WEBHOOK_TIMEOUT":         "2s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if in.timeout != 2*time.Second || in.maxBytes != 100000 {
		t.Errorf("timeout %v, max bytes %d", in.timeout, in.maxBytes)
	}
	if err := in.Batch(t.Context(), integrationtest.Events("env")); err != nil {
		t.Fatal(err)
	}
	reqs := recv.Accepted()
	if len(reqs) != 2 || len(reqs[0].Events) != 4 || len(reqs[1].Events) != 2 {
		t.Fatalf("%d requests accepted, want 2 (4 and 2 events): %+v", len(reqs), recv.Received())
	}
	for _, r := range reqs {
		if r.Method != "PATCH" || r.Path != "/in" || r.Header.Get("Authorization") != "Bearer abc, def" || r.Header.Get("X-Note") != `a; b="c"` {
			t.Errorf("%s %s, headers %v", r.Method, r.Path, r.Header)
		}
	}
}

func TestParseHeaders(t *testing.T) {
	ok := map[string]string{
		``:   `map[]`,
		`  `: `map[]`,
		`{}`: `map[]`,
		`{"authorization":"Bearer a, b","x-team":" ; "}`: `map[Authorization:[Bearer a, b] X-Team:[ ; ]]`,
		` {"A": "1"} `: `map[A:[1]]`,
	}
	for in, want := range ok {
		h, err := parseHeaders(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := fmtHeader(h); got != want {
			t.Errorf("%q = %s, want %s", in, got, want)
		}
	}
	for _, in := range []string{`Authorization: Bearer x`, `[]`, `{"A":1}`, `{"A":["x"]}`, `{"A":null}`, `{"A":"1","a":"2"}`,
		`{"A":"1"}{}`, `{"A":"1"} x`, `{"A":"1"`, `{"A"}`, `"A"`} {
		if h, err := parseHeaders(in); err == nil {
			t.Errorf("%q accepted as %v", in, h)
		}
	}
}

// fmtHeader prints h with its names sorted.
func fmtHeader(h http.Header) string { return fmt.Sprint(map[string][]string(h)) }
