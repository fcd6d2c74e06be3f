package fakecustomerio

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cio "github.com/customerio/go-customerio/v3"
)

// do sends one request with the given Authorization header.
func do(t *testing.T, s *Server, method, path, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func basic(enc *base64.Encoding, user, pass string) string {
	return "Basic " + enc.EncodeToString([]byte(user+":"+pass))
}

func TestAuth(t *testing.T) {
	// "site>?:key~~" encodes with '_' and '-' in the URL-safe alphabet.
	s := New("site>?", "key~~")
	defer s.Close()
	cases := []struct {
		name string
		auth string
		want int
	}{
		{"url-safe base64, as go-customerio sends", basic(base64.URLEncoding, "site>?", "key~~"), 200},
		{"standard base64", basic(base64.StdEncoding, "site>?", "key~~"), 200},
		{"wrong key", basic(base64.StdEncoding, "site>?", "nope"), 401},
		{"wrong site", basic(base64.StdEncoding, "other", "key~~"), 401},
		{"no header", "", 401},
		{"bearer", "Bearer key~~", 401},
		{"garbage", "Basic !!!", 401},
	}
	for _, c := range cases {
		if got, body := do(t, s, "POST", "/api/v1/events", c.auth, `{"name":"x"}`); got != c.want {
			t.Errorf("%s: status %d (%s), want %d", c.name, got, body, c.want)
		}
	}
	if n := len(s.Calls()); n != 2 {
		t.Errorf("%d calls recorded, want the 2 authorized ones", n)
	}
	if n := s.Attempts(); n != len(cases) {
		t.Errorf("%d attempts, want %d", n, len(cases))
	}
}

// TestGoCustomerIO drives the server with the real client, whose credentials
// need the URL-safe alphabet.
func TestGoCustomerIO(t *testing.T) {
	s := New("site>?", "key~~")
	defer s.Close()
	c := cio.NewTrackClient("site>?", "key~~")
	c.URL = s.URL()
	ctx := context.Background()
	if err := c.IdentifyCtx(ctx, "user 1", map[string]any{"email": "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := c.TrackCtx(ctx, "user 1", "Signed Up", map[string]any{"plan": "pro"}); err != nil {
		t.Fatal(err)
	}
	if err := c.TrackAnonymousCtx(ctx, "anon-1", "Viewed", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.MergeCustomersCtx(ctx, cio.Identifier{Type: cio.IdentifierTypeID, Value: "u1"}, cio.Identifier{Type: cio.IdentifierTypeEmail, Value: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	calls := s.Calls()
	want := []string{
		"PUT /api/v1/customers/user%201",
		"POST /api/v1/customers/user%201/events",
		"POST /api/v1/events",
		"POST /api/v1/merge_customers",
	}
	if len(calls) != len(want) {
		t.Fatalf("%d calls, want %d", len(calls), len(want))
	}
	for i, c := range calls {
		if got := c.Method + " " + c.Path; got != want[i] {
			t.Errorf("call %d: %s, want %s", i, got, want[i])
		}
		if c.UserAgent != cio.DefaultUserAgent {
			t.Errorf("call %d: User-Agent %q", i, c.UserAgent)
		}
	}
	if string(calls[1].Body) != `{"data":{"plan":"pro"},"name":"Signed Up"}` {
		t.Errorf("track body %s", calls[1].Body)
	}
	// An identify with no attributes sends null, which Customer.io rejects.
	if err := c.IdentifyCtx(ctx, "u2", nil); err == nil || !strings.HasPrefix(err.Error(), "400:") {
		t.Errorf("identify with a null body: %v, want a 400", err)
	}
}

func TestRules(t *testing.T) {
	s := New("s", "k")
	defer s.Close()
	auth := basic(base64.StdEncoding, "s", "k")
	ulid := "01HWQZ3V9K8M2N4P6R8T0V2X4Y"
	cases := []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/api/v1/customers/u1", `{"a":1}`, 200},
		{"PUT", "/api/v1/customers/u1", `null`, 400},
		{"PUT", "/api/v1/customers/u1", `[1]`, 400},
		{"POST", "/api/v1/customers/u1", `{}`, 405},
		{"PUT", "/api/v1/customers/", `{}`, 404},
		{"GET", "/api/v1/customers/u1/events", ``, 405},
		{"POST", "/api/v1/customers/u1/devices", `{}`, 404},
		{"POST", "/api/v2/batch", `{}`, 404},
		{"POST", "/api/v1/customers/u1/events", `{"name":"E","type":"page","timestamp":1714564800,"id":"` + ulid + `","data":{"x":1}}`, 200},
		{"POST", "/api/v1/customers/u1/events", `{"name":""}`, 400},
		{"POST", "/api/v1/customers/u1/events", `{"name":"E","timestamp":"2024-05-01T12:00:00Z"}`, 400},
		{"POST", "/api/v1/customers/u1/events", `{"name":"E","timestamp":1714564800000}`, 400},
		{"POST", "/api/v1/customers/u1/events", `{"name":"E","timestamp":1714564800.5}`, 400},
		{"POST", "/api/v1/customers/u1/events", `{"name":"E","id":"not-a-ulid"}`, 400},
		{"POST", "/api/v1/customers/u1/events", `{"name":"E","type":"track"}`, 400},
		{"POST", "/api/v1/customers/u1/events", `{"name":"E","anonymous_id":"a"}`, 400},
		{"POST", "/api/v1/customers/u1/events", `{"name":"E","data":[1]}`, 400},
		{"POST", "/api/v1/customers/u1/events", `{"name":"E","properties":{}}`, 400},
		{"POST", "/api/v1/events", `{"name":"E","anonymous_id":"a","type":"screen"}`, 200},
		{"POST", "/api/v1/events", `{"name":"E","anonymous_id":""}`, 400},
		{"POST", "/api/v1/merge_customers", `{"primary":{"id":"a"},"secondary":{"cio_id":"b"}}`, 200},
		{"POST", "/api/v1/merge_customers", `{"primary":{"id":"a","email":"x@y"},"secondary":{"id":"b"}}`, 400},
		{"POST", "/api/v1/merge_customers", `{"primary":{"id":"a"}}`, 400},
		{"POST", "/api/v2/entity", `{"type":"object","action":"identify","identifiers":{"object_type_id":"1","object_id":"g"},"attributes":{"a":1},"cio_relationships":[{"identifiers":{"id":"u"}}],"timestamp":1714564800}`, 200},
		{"POST", "/api/v2/entity", `{"type":"object","action":"identify_anonymous","identifiers":{"object_type_id":"1","object_id":"g"},"cio_relationships":[{"identifiers":{"anonymous_id":"a"}}]}`, 200},
		{"POST", "/api/v2/entity", `{"type":"object","action":"identify_anonymous","identifiers":{"object_type_id":"1","object_id":"g"},"cio_relationships":[{"identifiers":{"id":"u"}}]}`, 400},
		{"POST", "/api/v2/entity", `{"type":"object","action":"identify","identifiers":{"object_type_id":1,"object_id":"g"}}`, 400},
		{"POST", "/api/v2/entity", `{"type":"object","action":"identify","identifiers":{"object_id":"g"}}`, 400},
		{"POST", "/api/v2/entity", `{"type":"object","action":"identify","identifiers":{"object_type_id":"1","object_id":"g"},"cio_relationships":{}}`, 400},
		{"POST", "/api/v2/entity", `{"type":"person","action":"identify","identifiers":{"id":"u"}}`, 200},
		{"POST", "/api/v2/entity", `{"type":"company","action":"identify","identifiers":{"id":"u"}}`, 400},
	}
	for _, c := range cases {
		if got, body := do(t, s, c.method, c.path, auth, c.body); got != c.want {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, got, body, c.want)
		}
	}
	ok := 0
	for _, c := range cases {
		if c.want == 200 {
			ok++
		}
	}
	if n := len(s.Calls()); n != ok {
		t.Errorf("%d calls recorded, want the %d accepted", n, ok)
	}
}

func TestFailNext(t *testing.T) {
	s := New("s", "k")
	defer s.Close()
	auth := basic(base64.StdEncoding, "s", "k")
	s.FailNext(2, Response{Status: 503, Header: http.Header{"Retry-After": {"3"}}})
	s.FailNext(1, Response{Status: 400, Body: `{"meta":{"errors":["bad"]}}`})

	// A request with wrong credentials does not use up the script.
	if got, _ := do(t, s, "POST", "/api/v1/events", "", `{"name":"E"}`); got != 401 {
		t.Fatalf("unauthorized: %d", got)
	}
	for i, want := range []int{503, 503, 400, 200} {
		got, body := do(t, s, "POST", "/api/v1/events", auth, `{"name":"E"}`)
		if got != want {
			t.Errorf("request %d: %d %s, want %d", i, got, body, want)
		}
		if want == 400 && body != `{"meta":{"errors":["bad"]}}` {
			t.Errorf("scripted body %q", body)
		}
	}
	if n := len(s.Calls()); n != 1 {
		t.Errorf("%d calls recorded, want 1", n)
	}
	if n := s.Attempts(); n != 5 {
		t.Errorf("%d attempts, want 5", n)
	}

	// Retry-After is sent as scripted.
	s.FailNext(1, Response{Status: 429, Header: http.Header{"Retry-After": {"7"}}})
	req, _ := http.NewRequest("POST", s.URL()+"/api/v1/events", strings.NewReader(`{"name":"E"}`))
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" {
		t.Errorf("got %d with Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	s.Reset()
	if s.Attempts() != 0 || len(s.Calls()) != 0 {
		t.Error("Reset kept state")
	}
}

func TestDelay(t *testing.T) {
	s := New("s", "k")
	defer s.Close()
	s.FailNext(1, Response{Status: 200, Body: "{}", Delay: 200 * time.Millisecond})
	start := time.Now()
	got, _ := do(t, s, "POST", "/api/v1/events", basic(base64.StdEncoding, "s", "k"), `{"name":"E"}`)
	if took := time.Since(start); got != 200 || took < 200*time.Millisecond {
		t.Errorf("status %d after %v, want 200 after at least 200ms", got, took)
	}
}

func TestIsULID(t *testing.T) {
	for s, want := range map[string]bool{
		"01HWQZ3V9K8M2N4P6R8T0V2X4Y": true,
		"7ZZZZZZZZZZZZZZZZZZZZZZZZZ": true,
		"8ZZZZZZZZZZZZZZZZZZZZZZZZZ": false, // overflows 128 bits
		"01hwqz3v9k8m2n4p6r8t0v2x4y": false, // not canonical
		"01HWQZ3V9K8M2N4P6R8T0V2X4":  false,
		"01HWQZ3V9K8M2N4P6R8T0V2X4I": false, // I is not in the alphabet
		"":                           false,
	} {
		if IsULID(s) != want {
			t.Errorf("IsULID(%q) = %v", s, !want)
		}
	}
}

// TestDump: GET /fakecustomerio/dump shows the calls and attempts, needs no
// credentials, is not itself counted, and is not answered by FailNext.
func TestDump(t *testing.T) {
	s := New("s", "k")
	defer s.Close()
	auth := basic(base64.StdEncoding, "s", "k")
	if got, _ := do(t, s, "PUT", "/api/v1/customers/u%201", auth, `{"email":"a@example.com"}`); got != 200 {
		t.Fatalf("identify: %d", got)
	}
	if got, _ := do(t, s, "POST", "/api/v1/events", "", `{"name":"x"}`); got != 401 {
		t.Fatalf("unauthorized event: %d", got)
	}
	s.FailNext(1, Response{Status: 503})
	status, body := do(t, s, "GET", DumpPath, "", "")
	if status != 200 {
		t.Fatalf("dump: %d %s", status, body)
	}
	var d Dump
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("dump %s: %v", body, err)
	}
	if d.Attempts != 2 || len(d.Calls) != 1 {
		t.Fatalf("dump = %+v, want 2 attempts and 1 call", d)
	}
	if c := d.Calls[0]; c.Method != "PUT" || c.Path != "/api/v1/customers/u%201" || string(c.Body) != `{"email":"a@example.com"}` || c.UserAgent != "Go-http-client/1.1" {
		t.Errorf("dumped call %+v", c)
	}
	if s.Attempts() != 2 {
		t.Errorf("the dump was counted: %d attempts", s.Attempts())
	}
	// The scripted failure is still waiting for the next Track API request.
	if got, _ := do(t, s, "POST", "/api/v1/events", auth, `{"name":"x"}`); got != 503 {
		t.Errorf("request after the dump: %d, want the scripted 503", got)
	}
	// Only GET reads the dump; other methods are Track API requests to an
	// unknown path.
	if got, _ := do(t, s, "POST", DumpPath, auth, `{}`); got != 404 {
		t.Errorf("POST %s: %d, want 404", DumpPath, got)
	}
}

// TestNewHandler serves a Server that is not listening.
func TestNewHandler(t *testing.T) {
	s := NewHandler("s", "k")
	if s.URL() != "" {
		t.Errorf("URL() = %q for a handler", s.URL())
	}
	s.Close() // does nothing
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/v1/events", strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Authorization", basic(base64.URLEncoding, "s", "k"))
	s.ServeHTTP(rec, req)
	if rec.Code != 200 || len(s.Calls()) != 1 || len(s.Dump().Calls) != 1 {
		t.Errorf("status %d, %d calls", rec.Code, len(s.Calls()))
	}
}
