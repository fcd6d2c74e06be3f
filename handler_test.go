package opentrack_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

type collector struct {
	m   *opentrack.Manager
	rec *recorder
	url string // the /v1 base
}

func newCollector(t *testing.T, hopts *opentrack.HandlerOptions, mopts opentrack.Options) *collector {
	t.Helper()
	rec := newRecorder("Rec")
	if mopts.Integrations == nil {
		mopts.Integrations = []opentrack.Integration{rec}
	}
	m := newManager(t, mopts)
	if hopts == nil {
		hopts = &opentrack.HandlerOptions{}
	}
	hopts.Logger = quietLogger()
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", opentrack.NewHandler(m, hopts)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &collector{m: m, rec: rec, url: srv.URL + "/v1"}
}

type answer struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func (c *collector) do(t *testing.T, method, path, body string, header map[string]string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, c.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	a := answer{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("%s %s answered non-JSON %q", method, path, raw)
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
	}
	return a
}

func (c *collector) post(t *testing.T, path, body string) answer {
	return c.do(t, http.MethodPost, path, body, nil)
}

func basic(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

func TestHandlerAcceptsEveryCallOnEveryRoute(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	routes := []struct {
		paths []string
		body  string
		typ   spec.Type
	}{
		{[]string{"/track", "/t"}, `{"userId":"u1","event":"Clicked"}`, spec.TypeTrack},
		{[]string{"/identify", "/i"}, `{"userId":"u1","traits":{"email":"a@example.com"}}`, spec.TypeIdentify},
		{[]string{"/page", "/p"}, `{"anonymousId":"a1","name":"Home"}`, spec.TypePage},
		{[]string{"/screen", "/s"}, `{"userId":"u1","name":"Main"}`, spec.TypeScreen},
		{[]string{"/group", "/g"}, `{"userId":"u1","groupId":"g1"}`, spec.TypeGroup},
		{[]string{"/alias", "/a"}, `{"userId":"u1","previousId":"a1"}`, spec.TypeAlias},
	}
	want := 0
	for _, r := range routes {
		for _, p := range r.paths {
			a := c.post(t, p, r.body)
			if a.status != 200 || a.raw != "{\"success\":true}\n" {
				t.Errorf("POST %s = %d %s", p, a.status, a.raw)
			}
			want++
		}
	}
	for _, p := range []string{"/batch", "/b", "/import"} {
		a := c.post(t, p, `{"batch":[{"type":"track","userId":"u1","event":"E"},{"type":"screen","userId":"u1","name":"S"}]}`)
		if a.status != 200 {
			t.Errorf("POST %s = %d %s", p, a.status, a.raw)
		}
		want += 2
	}
	flush(t, c.m)
	got := c.rec.Got()
	if len(got) != want {
		t.Fatalf("delivered %d events, want %d", len(got), want)
	}
	types := map[spec.Type]int{}
	for _, e := range got {
		types[e.Fields().Type]++
	}
	for _, r := range routes {
		if types[r.typ] < 2 {
			t.Errorf("type %s delivered %d times, want at least 2", r.typ, types[r.typ])
		}
	}
}

func TestHandlerDropsAnalyticsJSMetrics(t *testing.T) {
	c := newCollector(t, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}}, opentrack.Options{})
	a := c.post(t, "/m", `{"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1}]}`)
	if a.status != 200 {
		t.Fatalf("POST /m = %d %s, want 200", a.status, a.raw)
	}
	flush(t, c.m)
	if n := len(c.rec.Got()); n != 0 {
		t.Errorf("metrics were delivered as %d events", n)
	}
}

func TestHandlerRouteDecidesType(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	if a := c.post(t, "/track", `{"type":"identify","userId":"u1","event":"E"}`); a.status != 200 {
		t.Fatalf("status %d %s", a.status, a.raw)
	}
	flush(t, c.m)
	if got := c.rec.Got(); len(got) != 1 || got[0].Fields().Type != spec.TypeTrack {
		t.Fatalf("got %v, want one track", got)
	}
}

func fieldsOf(a answer) []string {
	var out []string
	list, _ := a.body["fields"].([]any)
	for _, f := range list {
		m := f.(map[string]any)
		out = append(out, fmt.Sprintf("%s:%s", m["field"], m["rule"]))
	}
	return out
}

func TestHandlerRejectsBadInput(t *testing.T) {
	big := `{"userId":"u1","event":"E","properties":{"x":"` + strings.Repeat("a", 40<<10) + `"}}`
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		header  map[string]string
		status  int
		error   string
		fields  string // "field:rule,..." expected in the body
		noEvent bool
	}{
		{name: "no identity", path: "/track", body: `{"event":"E"}`, status: 400, error: "Invalid event", fields: "anonymousId:identity,userId:identity"},
		{name: "track without event", path: "/track", body: `{"userId":"u1"}`, status: 400, error: "Invalid event", fields: "event:required"},
		{name: "event name too long", path: "/track", body: `{"userId":"u1","event":"` + strings.Repeat("e", 201) + `"}`, status: 400, error: "Invalid event", fields: "event:length"},
		{name: "userId too long", path: "/identify", body: `{"userId":"` + strings.Repeat("u", 256) + `"}`, status: 400, error: "Invalid event", fields: "userId:length"},
		{name: "group without groupId", path: "/group", body: `{"userId":"u1"}`, status: 400, error: "Invalid event", fields: "groupId:required"},
		{name: "alias without previousId", path: "/alias", body: `{"userId":"u1"}`, status: 400, error: "Invalid event", fields: "previousId:required"},
		{name: "properties not an object", path: "/track", body: `{"userId":"u1","event":"E","properties":"x"}`, status: 400, error: "Invalid event", fields: "properties:type"},
		{name: "userId an object", path: "/track", body: `{"userId":{"a":1},"event":"E"}`, status: 400, error: "Invalid event", fields: "userId:type"},
		{name: "timestamp not RFC 3339", path: "/track", body: `{"userId":"u1","event":"E","timestamp":"yesterday"}`, status: 400, error: "Invalid event", fields: "timestamp:format"},
		{name: "bad JSON", path: "/track", body: `{"userId":`, status: 400, error: "Invalid JSON"},
		{name: "not an object", path: "/track", body: `[1,2]`, status: 400, error: "Invalid JSON"},
		{name: "batch not an array", path: "/batch", body: `{"batch":{}}`, status: 400, error: "Invalid batch", fields: "batch:type"},
		{name: "batch missing", path: "/batch", body: `{}`, status: 400, error: "Invalid batch", fields: "batch:required"},
		{name: "batch empty", path: "/batch", body: `{"batch":[]}`, status: 400, error: "Invalid batch", fields: "batch:required"},
		{name: "batch sentAt a number", path: "/batch", body: `{"batch":[{"type":"track","userId":"u","event":"E"}],"sentAt":5}`, status: 400, error: "Invalid batch", fields: "sentAt:type"},
		{name: "batch integrations an array", path: "/batch", body: `{"batch":[{"type":"track","userId":"u","event":"E"}],"integrations":[]}`, status: 400, error: "Invalid batch", fields: "integrations:type"},
		{name: "batch context too deep", path: "/batch", body: `{"batch":[{"type":"track","userId":"u","event":"E"}],"context":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70) + `}`, status: 400, error: "Invalid batch", fields: "context" + strings.Repeat(".a", 63) + ":depth"},
		{name: "batch item without type", path: "/batch", body: `{"batch":[{"userId":"u1"}]}`, status: 400, error: "No valid events"},
		{name: "event too large", path: "/track", body: big, status: 413, error: "Body too large: the limit is 32768 bytes"},
		{name: "form content type, not JSON", path: "/track", body: `userId=u1&event=E`, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 400, error: "Invalid JSON"},
		{name: "unknown encoding", path: "/track", body: `{}`, header: map[string]string{"Content-Encoding": "br"}, status: 415},
		{name: "bad gzip", path: "/track", body: `not gzip`, header: map[string]string{"Content-Encoding": "gzip"}, status: 400, error: "Invalid gzip body"},
		{name: "unknown path", path: "/nope", body: `{}`, status: 404, error: "Not found"},
		{name: "wrong method", method: "GET", path: "/track", status: 405, error: "Method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCollector(t, nil, opentrack.Options{})
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			a := c.do(t, method, tt.path, tt.body, tt.header)
			if a.status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", a.status, tt.status, a.raw)
			}
			if a.body["error"] == nil || (tt.error != "" && a.body["error"] != tt.error) {
				t.Errorf("error = %v, want %q", a.body["error"], tt.error)
			}
			if tt.fields != "" {
				if got := strings.Join(fieldsOf(a), ","); got != tt.fields {
					t.Errorf("fields = %s, want %s (body %s)", got, tt.fields, a.raw)
				}
			}
			flush(t, c.m)
			if n := len(c.rec.Got()); n != 0 {
				t.Errorf("%d events delivered from a rejected request", n)
			}
		})
	}
}

func TestHandlerBatchAcceptsValidItemsAndReportsOthers(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	huge := `{"type":"track","userId":"u1","event":"Big","properties":{"x":"` + strings.Repeat("a", 33<<10) + `"}}`
	a := c.post(t, "/batch", `{"batch":[
		{"type":"track","userId":"u1","event":"Good","messageId":"m0"},
		{"type":"track","userId":"u1"},
		{"type":"bogus","userId":"u1"},
		`+huge+`,
		{"type":"identify","anonymousId":"a1","messageId":"m4"}]}`)
	if a.status != 200 || a.body["success"] != true || a.body["accepted"] != float64(2) {
		t.Fatalf("answer = %d %s, want 200 success with 2 accepted", a.status, a.raw)
	}
	errs := a.body["errors"].([]any)
	var got []string
	for _, e := range errs {
		m := e.(map[string]any)
		f := m["fields"].([]any)[0].(map[string]any)
		got = append(got, fmt.Sprintf("%v:%v:%v", m["index"], f["field"], f["rule"]))
	}
	if want := "1:event:required 2:type:in 3::size"; strings.Join(got, " ") != want {
		t.Errorf("errors = %v, want %s", got, want)
	}
	flush(t, c.m)
	if ids := c.rec.IDs(); len(ids) != 2 || ids["m0"] != 1 || ids["m4"] != 1 {
		t.Errorf("delivered %v, want m0 and m4", ids)
	}
}

func TestHandlerBatchLimits(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	item := `{"type":"track","userId":"u1","event":"E"}`
	many := `{"batch":[` + strings.TrimSuffix(strings.Repeat(item+",", 2501), ",") + `]}`
	if a := c.post(t, "/batch", many); a.status != 400 || strings.Join(fieldsOf(a), ",") != "batch:length" {
		t.Errorf("2501 events: %d %s, want 400 batch:length", a.status, a.raw)
	}
	pad := strings.Repeat("p", 30<<10)
	var items []string
	for range 17 { // 17 x 30 KB > 500 KB
		items = append(items, `{"type":"track","userId":"u1","event":"E","properties":{"p":"`+pad+`"}}`)
	}
	if a := c.post(t, "/batch", `{"batch":[`+strings.Join(items, ",")+`]}`); a.status != 413 {
		t.Errorf("batch over 500 KB: %d %s, want 413", a.status, a.raw)
	}
	flush(t, c.m)
	if n := len(c.rec.Got()); n != 0 {
		t.Errorf("%d events delivered from refused batches", n)
	}
}

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestHandlerGzip(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	gz := map[string]string{"Content-Encoding": "gzip"}
	if a := c.do(t, "POST", "/batch", gzipped(t, `{"batch":[{"type":"track","userId":"u1","event":"Zipped"}]}`), gz); a.status != 200 {
		t.Fatalf("gzip batch: %d %s", a.status, a.raw)
	}
	// A bomb: 4 MB of spaces compress to ~4 KB, under the 500 KB body
	// limit, and must be refused once decompressed past it.
	bomb := gzipped(t, `{"batch":[`+strings.Repeat(" ", 4<<20)+`]}`)
	if len(bomb) > 500<<10 {
		t.Fatalf("bomb is %d bytes compressed; the test wants it under the limit", len(bomb))
	}
	if a := c.do(t, "POST", "/batch", bomb, gz); a.status != 413 {
		t.Errorf("gzip bomb: %d %s, want 413", a.status, a.raw)
	}
	flush(t, c.m)
	if got := c.rec.Got(); len(got) != 1 || got[0].(*spec.Track).Event != "Zipped" {
		t.Errorf("delivered %v, want the one zipped event", got)
	}
}

// TestHandlerAnyContentType: the body is JSON whatever the request declares.
// RudderStack's Node SDK gzips its batches and declares a form type.
func TestHandlerAnyContentType(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	for i, h := range []map[string]string{
		{"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
		{"Content-Type": "application/octet-stream"},
		{"Content-Type": ""},
		{"Content-Type": "text/plain;charset=UTF-8"},
	} {
		body := fmt.Sprintf(`{"batch":[{"type":"track","userId":"u1","event":"E%d"}]}`, i)
		if h["Content-Encoding"] == "gzip" {
			body = gzipped(t, body)
		}
		if a := c.do(t, "POST", "/batch", body, h); a.status != 200 {
			t.Errorf("Content-Type %q: %d %s, want 200", h["Content-Type"], a.status, a.raw)
		}
	}
	flush(t, c.m)
	if got := len(c.rec.Got()); got != 4 {
		t.Errorf("delivered %d events, want 4", got)
	}
}

func TestHandlerWriteKeys(t *testing.T) {
	c := newCollector(t, &opentrack.HandlerOptions{WriteKeys: []string{"k1", "k2"}}, opentrack.Options{})
	ev := `{"userId":"u1","event":"E"}`
	tests := []struct {
		name   string
		path   string
		body   string
		auth   string
		status int
	}{
		{"basic key 1", "/track", ev, basic("k1"), 200},
		{"basic key 2", "/track", ev, basic("k2"), 200},
		{"basic without colon", "/track", ev, "Basic " + base64.StdEncoding.EncodeToString([]byte("k1")), 200},
		{"basic scheme in lower case", "/track", ev, "basic " + base64.StdEncoding.EncodeToString([]byte("k1:")), 200},
		{"body key", "/track", `{"writeKey":"k2","userId":"u1","event":"E"}`, "", 200},
		{"batch body key", "/batch", `{"writeKey":"k1","batch":[{"type":"track","userId":"u1","event":"E"}]}`, "", 200},
		{"wrong basic key", "/track", ev, basic("nope"), 401},
		{"wrong header beats right body key", "/track", `{"writeKey":"k1","userId":"u1","event":"E"}`, basic("nope"), 401},
		{"no key", "/track", ev, "", 401},
		{"wrong body key", "/track", `{"writeKey":"x","userId":"u1","event":"E"}`, "", 401},
		{"bad JSON without a key", "/track", `{`, "", 401},
		{"bearer alone", "/track", ev, "Bearer k1", 401},
		{"prefix of a key", "/track", ev, basic("k"), 401},
	}
	want := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := c.do(t, "POST", tt.path, tt.body, map[string]string{"Authorization": tt.auth})
			if a.status != tt.status {
				t.Fatalf("status = %d, want %d (%s)", a.status, tt.status, a.raw)
			}
			if tt.status == 401 && a.body["error"] != "Invalid write key" {
				t.Errorf("body = %s", a.raw)
			}
		})
		if tt.status == 200 {
			want++
		}
	}
	flush(t, c.m)
	got := c.rec.Got()
	if len(got) != want {
		t.Fatalf("delivered %d events, want %d", len(got), want)
	}
	for _, e := range got {
		if e.Fields().WriteKey != "" {
			t.Errorf("the write key reached the integration: %q", e.Fields().WriteKey)
		}
	}
}

func TestHandlerRefusesAllWhenOnlyEmptyKeysAreConfigured(t *testing.T) {
	// WriteKeys: []string{os.Getenv("WRITE_KEY")} with the variable unset
	// must not open the collector.
	c := newCollector(t, &opentrack.HandlerOptions{WriteKeys: []string{""}}, opentrack.Options{})
	for _, auth := range []string{"", basic("")} {
		if a := c.do(t, "POST", "/track", `{"userId":"u1","event":"E"}`, map[string]string{"Authorization": auth}); a.status != 401 {
			t.Errorf("auth %q: %d, want 401", auth, a.status)
		}
	}
}

func TestHandlerPreflightAllowsRequestedHeaders(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	a := c.do(t, "OPTIONS", "/t", "", map[string]string{"Origin": "https://app.example.com",
		"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, x-tenant, bad header"})
	got := strings.ToLower(a.header.Get("Access-Control-Allow-Headers"))
	if !strings.Contains(got, "x-tenant") || strings.Contains(got, "bad header") || strings.Count(got, "authorization") != 1 {
		t.Errorf("Allow-Headers = %q, want the page's x-tenant added once, the malformed name left out", got)
	}
}

func TestHandlerBatchLargerThanAQueueIs413(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{Delivery: opentrack.Delivery{QueueSize: 2}})
	a := c.post(t, "/batch", `{"batch":[{"type":"track","userId":"u","event":"E"},{"type":"track","userId":"u","event":"E"},{"type":"track","userId":"u","event":"E"}]}`)
	if a.status != 413 {
		t.Errorf("3 events into a queue of 2: %d %s, want 413 (retrying cannot help)", a.status, a.raw)
	}
}

func TestHandlerCORS(t *testing.T) {
	c := newCollector(t, &opentrack.HandlerOptions{AllowedOrigins: []string{"https://app.example.com"}}, opentrack.Options{})
	pre := c.do(t, "OPTIONS", "/t", "", map[string]string{
		"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization,content-type,x-retry-count"})
	if pre.status != 204 {
		t.Fatalf("preflight = %d %s", pre.status, pre.raw)
	}
	if got := pre.header.Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
		t.Errorf("preflight Allow-Origin = %q", got)
	}
	allowed := strings.ToLower(pre.header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"authorization", "content-type", "x-retry-count"} {
		if !strings.Contains(allowed, h) {
			t.Errorf("preflight Allow-Headers %q does not name %s", allowed, h)
		}
	}
	if !strings.Contains(pre.header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("preflight Allow-Methods = %q", pre.header.Get("Access-Control-Allow-Methods"))
	}
	post := c.do(t, "POST", "/t", `{"userId":"u1","event":"E"}`, map[string]string{"Origin": "https://app.example.com", "Content-Type": "text/plain"})
	if post.status != 200 || post.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("POST from allowed origin = %d, Allow-Origin %q", post.status, post.header.Get("Access-Control-Allow-Origin"))
	}
	for _, method := range []string{"OPTIONS", "POST"} {
		a := c.do(t, method, "/t", `{"userId":"u1","event":"E"}`, map[string]string{"Origin": "https://evil.example.com"})
		if a.status != 403 || a.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s from other origin = %d, Allow-Origin %q; want 403 without it", method, a.status, a.header.Get("Access-Control-Allow-Origin"))
		}
	}
	flush(t, c.m)
	if n := len(c.rec.Got()); n != 1 {
		t.Errorf("delivered %d events, want only the allowed origin's", n)
	}

	open := newCollector(t, nil, opentrack.Options{})
	a := open.do(t, "OPTIONS", "/batch", "", map[string]string{"Origin": "http://localhost:3000"})
	if a.status != 204 || a.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("open handler preflight = %d, Allow-Origin %q", a.status, a.header.Get("Access-Control-Allow-Origin"))
	}
}

func TestHandlerEnriches(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	sent := time.Now().UTC().Add(time.Hour) // the device clock runs an hour fast
	orig := sent.Add(-10 * time.Second)
	body := fmt.Sprintf(`{"sentAt":%q,"context":{"library":{"name":"analytics-go"}},"integrations":{"Rec":true},"batch":[
		{"type":"track","userId":"u1","event":"E","timestamp":%q,"custom":{"kept":true}},
		{"type":"page","userId":"u1","messageId":"given","context":{"ip":"10.1.2.3","library":{"name":"own"}}}]}`,
		sent.Format(time.RFC3339Nano), orig.Format(time.RFC3339Nano))
	before := time.Now()
	if a := c.post(t, "/batch", body); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.raw)
	}
	after := time.Now()
	flush(t, c.m)
	got := c.rec.Got()
	if len(got) != 2 {
		t.Fatalf("got %d events", len(got))
	}
	var tr *spec.Track
	var pg *spec.Page
	for _, e := range got {
		switch e := e.(type) {
		case *spec.Track:
			tr = e
		case *spec.Page:
			pg = e
		}
	}
	if len(tr.MessageID) != 36 || pg.MessageID != "given" {
		t.Errorf("messageIds = %q, %q; want a generated UUID and the given one", tr.MessageID, pg.MessageID)
	}
	if tr.ReceivedAt.Before(before) || tr.ReceivedAt.After(after) {
		t.Errorf("receivedAt %v not within the request", tr.ReceivedAt)
	}
	if !tr.OriginalTimestamp.Equal(orig) || !tr.SentAt.Equal(sent) {
		t.Errorf("originalTimestamp %v, sentAt %v; want the sender's", tr.OriginalTimestamp, tr.SentAt)
	}
	if skew := tr.ReceivedAt.Sub(tr.Timestamp); skew < 9*time.Second || skew > 11*time.Second {
		t.Errorf("timestamp is %v before receipt, want ~10s (clock skew corrected)", skew)
	}
	if tr.Context["ip"] != "127.0.0.1" || pg.Context["ip"] != "10.1.2.3" {
		t.Errorf("context.ip = %v, %v; want the request's, and the sender's kept", tr.Context["ip"], pg.Context["ip"])
	}
	lib := func(e spec.Event) any { return e.Fields().Context["library"].(map[string]any)["name"] }
	if lib(tr) != "analytics-go" || lib(pg) != "own" {
		t.Errorf("library = %v, %v; want the batch's merged in and the item's kept", lib(tr), lib(pg))
	}
	if tr.Integrations["Rec"] != true {
		t.Errorf("batch integrations not merged: %v", tr.Integrations)
	}
	if string(tr.Extra["custom"]) != `{"kept":true}` {
		t.Errorf("unknown field not kept: %q", tr.Extra["custom"])
	}
}

func TestHandlerAnswers503WhenQueueFullAndEnqueuesNothing(t *testing.T) {
	slow := newBlocker("Slow")
	other := newRecorder("Other")
	c := newCollector(t, nil, opentrack.Options{Integrations: []opentrack.Integration{slow, other},
		Delivery: opentrack.Delivery{QueueSize: 2, Workers: 1}})
	batch := `{"batch":[{"type":"track","userId":"u1","event":"E","messageId":"a"},{"type":"track","userId":"u1","event":"E","messageId":"b"}]}`
	if a := c.post(t, "/batch", batch); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.raw)
	}
	a := c.post(t, "/track", `{"userId":"u1","event":"E","messageId":"c"}`)
	if a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Fatalf("full queue: %d Retry-After %q, want 503 with Retry-After", a.status, a.header.Get("Retry-After"))
	}
	close(slow.release)
	flush(t, c.m)
	if ids := other.IDs(); ids["c"] != 0 || len(ids) != 2 {
		t.Errorf("Other received %v; the refused event must not be enqueued anywhere", ids)
	}
	// Sent again, as SDKs do after a 503, it is accepted.
	if a := c.post(t, "/track", `{"userId":"u1","event":"E","messageId":"c"}`); a.status != 200 {
		t.Fatalf("retry: %d %s", a.status, a.raw)
	}
	flush(t, c.m)
	if other.IDs()["c"] != 1 {
		t.Errorf("retried event not delivered")
	}
}

func TestHandlerAnswers503AfterShutdown(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := c.m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	a := c.post(t, "/track", `{"userId":"u1","event":"E"}`)
	if a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Errorf("after shutdown: %d, Retry-After %q", a.status, a.header.Get("Retry-After"))
	}
}

// TestHandlerCapsItemErrors: a batch of many bad items gets a small answer:
// the first errors and a count, not one entry per item, so that a client
// that never reads cannot pin a large answer in the kernel.
func TestHandlerCapsItemErrors(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	items := make([]string, 2500)
	for i := range items {
		items[i] = `{"type":"track"}` // no user, no event name
	}
	body := `{"batch":[` + strings.Join(items, ",") + `]}`
	a := c.do(t, "POST", "/batch", body, nil)
	if a.status != 400 || len(a.raw) > 4096 {
		t.Fatalf("answer %d, %d bytes: want 400 and a small body", a.status, len(a.raw))
	}
	if a.body["rejected"] != float64(2500) || len(a.body["errors"].([]any)) != 10 {
		t.Errorf("rejected = %v, errors listed = %d; want 2500 and the first 10", a.body["rejected"], len(a.body["errors"].([]any)))
	}
	// With one valid item: accepted, the same cap.
	items[1234] = `{"type":"track","userId":"u1","event":"E"}`
	a = c.do(t, "POST", "/batch", `{"batch":[`+strings.Join(items, ",")+`]}`, nil)
	if a.status != 200 || a.body["accepted"] != float64(1) || a.body["rejected"] != float64(2499) || len(a.body["errors"].([]any)) != 10 {
		t.Errorf("answer %d %.200s: want 200, 1 accepted, 2499 rejected, 10 listed", a.status, a.raw)
	}
}

// brokenBody fails to read like a connection reset, with the server's
// socket addresses in the error.
type brokenBody struct{}

func (brokenBody) Read([]byte) (int, error) {
	return 0, errors.New("read tcp 127.0.0.1:18088->127.0.0.1:51234: connection reset by peer")
}

// TestHandlerAnswersReadErrorsPlainly: an error answer never quotes the
// server's sockets.
func TestHandlerAnswersReadErrorsPlainly(t *testing.T) {
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{newRecorder("Rec")}})
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{Logger: quietLogger()})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/track", brokenBody{}))
	if w.Code != 400 || strings.Contains(w.Body.String(), "127.0.0.1") || !strings.Contains(w.Body.String(), "Could not read the body") {
		t.Errorf("answer %d %s; want 400 without addresses", w.Code, w.Body)
	}
}

// TestManagerCountsUnroutedEvents: an event accepted for no integration is
// counted, not lost without a trace.
func TestManagerCountsUnroutedEvents(t *testing.T) {
	c := newCollector(t, nil, opentrack.Options{})
	if a := c.do(t, "POST", "/track", `{"userId":"u1","event":"E","integrations":{"All":false}}`, nil); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.raw)
	}
	flush(t, c.m)
	if n := c.m.Unrouted(); n != 1 || len(c.rec.Got()) != 0 {
		t.Errorf("Unrouted = %d, delivered %d; want 1 and 0", n, len(c.rec.Got()))
	}
}
