package opentrack_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/gif"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// checkGIF checks a pixel answer as Segment gives it: 200, a 1x1
// transparent GIF, not to be cached.
func checkGIF(t *testing.T, what string, status int, header http.Header, body []byte) {
	t.Helper()
	if status != http.StatusOK || header.Get("Content-Type") != "image/gif" {
		t.Errorf("%s: %d %q, want 200 image/gif", what, status, header.Get("Content-Type"))
		return
	}
	if cc := header.Get("Cache-Control"); !strings.Contains(cc, "no-store") || !strings.Contains(cc, "no-cache") {
		t.Errorf("%s: Cache-Control %q, want no-store, no-cache", what, cc)
	}
	img, err := gif.Decode(bytes.NewReader(body))
	if err != nil {
		t.Errorf("%s: not a GIF: %v", what, err)
		return
	}
	if b := img.Bounds(); b.Dx() != 1 || b.Dy() != 1 {
		t.Errorf("%s: GIF is %dx%d, want 1x1", what, b.Dx(), b.Dy())
	}
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Errorf("%s: the pixel is not transparent (alpha %d)", what, a)
	}
}

// getPixel requests a pixel URL and checks the answer is the GIF.
func getPixel(t *testing.T, u string, header map[string]string) {
	t.Helper()
	res, body := getURL(t, http.MethodGet, u, header)
	checkGIF(t, u[:min(len(u), 120)], res.StatusCode, res.Header, body)
}

// encodePixel returns obj as JSON in the given base64 encoding. It grows a
// filler property until the standard encoding holds both '+' and '/', so
// that the two alphabets differ for it.
func encodePixel(t *testing.T, enc *base64.Encoding, obj map[string]any) string {
	t.Helper()
	for i := range 64 {
		obj["filler"] = ">>>???" + strings.Repeat("~", i)
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if std := base64.StdEncoding.EncodeToString(b); strings.Contains(std, "+") && strings.Contains(std, "/") {
			return enc.EncodeToString(b)
		}
	}
	t.Fatal("no filler gave both '+' and '/'")
	return ""
}

// TestPixelDecodesEveryFormAndAlwaysAnswersAGIF: the pixel reads base64 in
// both alphabets, padded or not, escaped or not, and the unencoded form; it
// answers every request, good or bad, with the GIF; only valid calls with
// a valid write key are delivered, and the counters say what happened.
func TestPixelDecodesEveryFormAndAlwaysAnswersAGIF(t *testing.T) {
	h, m, rec, base := pixelCollector(t, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}}, opentrack.Options{})
	trackOf := func(id string) map[string]any {
		return map[string]any{"writeKey": "wk", "userId": "u1", "event": "Email Opened", "messageId": id, "properties": map[string]any{"subject": "Hi & bye"}}
	}
	valid := map[string]string{ // messageId: query
		"std-escaped":    "data=" + url.QueryEscape(encodePixel(t, base64.StdEncoding, trackOf("std-escaped"))),
		"std-raw":        "data=" + encodePixel(t, base64.StdEncoding, trackOf("std-raw")), // '+' arrives as a space
		"std-unpadded":   "data=" + url.QueryEscape(encodePixel(t, base64.RawStdEncoding, trackOf("std-unpadded"))),
		"url-padded":     "data=" + encodePixel(t, base64.URLEncoding, trackOf("url-padded")),
		"url-unpadded":   "data=" + encodePixel(t, base64.RawURLEncoding, trackOf("url-unpadded")) + "&cb=12345",
		"unencoded":      "userId=u1&event=Email+Opened&properties.subject=Hi%20%26%20bye&properties.link.id=7&writeKey=wk&messageId=unencoded",
		"unencoded-anon": "anonymousId=a1&event=Opened&writeKey=wk&messageId=unencoded-anon&messageId=ignored-second",
	}
	for _, q := range valid {
		getPixel(t, base+"/pixel/track?"+q, nil)
	}
	// The key as the Basic-auth username, as a Go client can send it.
	noKey := trackOf("basic-auth")
	delete(noKey, "writeKey")
	getPixel(t, base+"/pixel/track?data="+encodePixel(t, base64.RawURLEncoding, noKey), map[string]string{"Authorization": basic("wk")})
	valid["basic-auth"] = ""

	invalid := map[string]string{
		"bad base64":        "data=%21%21not*base64",
		"base64 of text":    "data=" + base64.RawURLEncoding.EncodeToString([]byte("not json")),
		"not an object":     "data=" + base64.RawURLEncoding.EncodeToString([]byte(`[1,2]`)),
		"no event":          "userId=u1&writeKey=wk",
		"no identity":       "event=E&writeKey=wk",
		"conflicting keys":  "userId=u1&event=E&writeKey=wk&properties=x&properties.a=1",
		"empty key part":    "userId=u1&event=E&writeKey=wk&properties..a=1",
		"too deep":          "userId=u1&event=E&writeKey=wk&" + strings.Repeat("a.", 40) + "b=1",
		"bad escape":        "userId=%zz&event=E&writeKey=wk",
		"oversized query":   "data=" + strings.Repeat("A", 200<<10),
		"oversized payload": "data=" + base64.RawURLEncoding.EncodeToString([]byte(`{"writeKey":"wk","userId":"u1","event":"E","properties":{"p":"`+strings.Repeat("x", 40<<10)+`"}}`)),
		"wrong type":        "data=" + base64.RawURLEncoding.EncodeToString([]byte(`{"writeKey":"wk","userId":"u1","event":42}`)),
	}
	for _, q := range invalid {
		getPixel(t, base+"/pixel/track?"+q, nil)
	}
	unauthorized := []struct {
		query  string
		header map[string]string
	}{
		{"userId=u1&event=E&writeKey=nope&messageId=bad-key", nil},
		{"userId=u1&event=E&messageId=no-key", nil},
		{"data=" + encodePixel(t, base64.URLEncoding, trackOf("bad-basic")), map[string]string{"Authorization": basic("nope")}},
		{"", nil},
	}
	for _, u := range unauthorized {
		getPixel(t, base+"/pixel/track?"+u.query, u.header)
	}

	flush(t, m)
	want := opentrack.PixelStats{Accepted: uint64(len(valid)), Invalid: uint64(len(invalid)), Unauthorized: uint64(len(unauthorized))}
	if got := h.PixelStats(); got != want {
		t.Errorf("PixelStats = %+v, want %+v", got, want)
	}
	got := rec.IDs()
	for id := range valid {
		if got[id] != 1 {
			t.Errorf("%s delivered %d times, want once", id, got[id])
		}
	}
	if len(got) != len(valid) {
		t.Errorf("delivered %v, want only the %d valid calls", got, len(valid))
	}
}

// pixelCollector is a collector whose Handler the test holds, to read its
// PixelStats.
func pixelCollector(t *testing.T, hopts *opentrack.HandlerOptions, mopts opentrack.Options) (*opentrack.Handler, *opentrack.Manager, *recorder, string) {
	t.Helper()
	rec := newRecorder("Rec")
	if mopts.Integrations == nil {
		mopts.Integrations = []opentrack.Integration{rec}
	}
	m := newManager(t, mopts)
	if hopts.Logger == nil {
		hopts.Logger = quietLogger()
	}
	h := opentrack.NewHandler(m, hopts)
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return h, m, rec, srv.URL + "/v1"
}

// TestPixelStats: the counters tell accepted, invalid and unauthorized
// calls apart.
func TestPixelStats(t *testing.T) {
	h, m, rec, base := pixelCollector(t, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}}, opentrack.Options{})
	for _, q := range []string{
		"userId=u1&event=E&writeKey=wk",   // accepted
		"userId=u1&event=E&writeKey=wk",   // accepted (another messageId)
		"userId=u1&writeKey=wk",           // invalid: no event
		"data=%21%21&writeKey=wk",         // invalid: unreadable (the data form's key is in the data)
		"userId=u1&event=E&writeKey=nope", // unauthorized
		"userId=u1&event=E",               // unauthorized: no key
	} {
		getPixel(t, base+"/pixel/track?"+q, nil)
	}
	getPixel(t, base+"/pixel/track?data=%21%21", map[string]string{"Authorization": basic("wk")})                     // invalid
	getPixel(t, base+"/pixel/track?userId=u1&event=E&writeKey=wk", map[string]string{"Authorization": basic("nope")}) // unauthorized: the header decides
	flush(t, m)
	if got, want := h.PixelStats(), (opentrack.PixelStats{Accepted: 2, Invalid: 3, Unauthorized: 3}); got != want {
		t.Errorf("PixelStats = %+v, want %+v", got, want)
	}
	if n := len(rec.Got()); n != 2 {
		t.Errorf("delivered %d, want 2", n)
	}
}

// TestPixelEnriches: a pixel call is enriched as a POST is (messageId,
// receivedAt, context.ip), plus context.userAgent from the request when
// absent; the write key is cleared; the route gives the type; dotted keys
// nest.
func TestPixelEnriches(t *testing.T) {
	c := newCollector(t, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}}, opentrack.Options{})
	ua := map[string]string{"User-Agent": "MailClient/1.0"}
	calls := map[string]string{
		"track":    "writeKey=wk&userId=u1&event=Email+Opened&properties.email.subject=Hi&properties.campaign=c7&messageId=m-track",
		"page":     "writeKey=wk&anonymousId=a1&name=Landing&properties.url=https%3A%2F%2Fexample.com%2F&messageId=m-page",
		"screen":   "writeKey=wk&userId=u1&name=Home&messageId=m-screen",
		"identify": "writeKey=wk&userId=u1&traits.email=ada%40example.com&messageId=m-identify",
		"group":    "writeKey=wk&userId=u1&groupId=acme&traits.name=Acme&messageId=m-group",
		"alias":    "writeKey=wk&userId=u1&previousId=a1&messageId=m-alias&context.userAgent=Given%2F2.0",
	}
	for route, q := range calls {
		getPixel(t, c.url+"/pixel/"+route+"?"+q, ua)
	}
	flush(t, c.m)
	byID := map[string]spec.Event{}
	for _, e := range c.rec.Got() {
		byID[e.Fields().MessageID] = e
	}
	for route := range calls {
		e, ok := byID["m-"+route]
		if !ok {
			t.Errorf("%s not delivered", route)
			continue
		}
		f := e.Fields()
		if string(f.Type) != route {
			t.Errorf("%s: type %s", route, f.Type)
		}
		if f.WriteKey != "" || f.ReceivedAt.IsZero() || f.Timestamp.IsZero() || f.Context["ip"] != "127.0.0.1" {
			t.Errorf("%s: writeKey %q receivedAt %v timestamp %v context %v", route, f.WriteKey, f.ReceivedAt, f.Timestamp, f.Context)
		}
		wantUA := "MailClient/1.0"
		if route == "alias" {
			wantUA = "Given/2.0"
		}
		if f.Context["userAgent"] != wantUA {
			t.Errorf("%s: context.userAgent %v, want %s", route, f.Context["userAgent"], wantUA)
		}
	}
	if tr, ok := byID["m-track"].(*spec.Track); !ok || tr.Event != "Email Opened" || at(tr.Properties, "email.subject") != "Hi" || tr.Properties["campaign"] != "c7" {
		t.Errorf("track = %+v", byID["m-track"])
	}
	if p, ok := byID["m-page"].(*spec.Page); !ok || p.Name != "Landing" || p.Properties["url"] != "https://example.com/" {
		t.Errorf("page = %+v", byID["m-page"])
	}
	if g, ok := byID["m-group"].(*spec.Group); !ok || g.GroupID != "acme" || g.Traits["name"] != "Acme" {
		t.Errorf("group = %+v", byID["m-group"])
	}
	if a, ok := byID["m-alias"].(*spec.Alias); !ok || a.PreviousID != "a1" {
		t.Errorf("alias = %+v", byID["m-alias"])
	}

	// A message id generated when none is given; and without a User-Agent
	// header, none is made up.
	getPixel(t, c.url+"/pixel/track?writeKey=wk&userId=u9&event=E", map[string]string{"User-Agent": ""})
	flush(t, c.m)
	found := false
	for _, e := range c.rec.Got() {
		if e.Fields().UserID != "u9" {
			continue
		}
		found = true
		if e.Fields().MessageID == "" {
			t.Errorf("no messageId generated")
		}
		if ua, ok := e.Fields().Context["userAgent"]; ok {
			t.Errorf("context.userAgent %v without a User-Agent header", ua)
		}
	}
	if !found {
		t.Errorf("the call without a messageId was not delivered")
	}
}

// TestPixelHeadRecordsNothing: HEAD gets the GIF's headers and records
// nothing (link checkers and mail scanners send it).
func TestPixelHeadRecordsNothing(t *testing.T) {
	h, m, rec, base := pixelCollector(t, &opentrack.HandlerOptions{}, opentrack.Options{})
	res, body := getURL(t, http.MethodHead, base+"/pixel/track?userId=u1&event=E", nil)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "image/gif" || len(body) != 0 || res.ContentLength != 43 {
		t.Errorf("HEAD: %d %q, %d bytes, Content-Length %d", res.StatusCode, res.Header.Get("Content-Type"), len(body), res.ContentLength)
	}
	flush(t, m)
	if n := len(rec.Got()); n != 0 || h.PixelStats() != (opentrack.PixelStats{}) {
		t.Errorf("HEAD delivered %d events, stats %+v", n, h.PixelStats())
	}
}

// TestPixelQueueFullIsCountedAndStillAGIF: when the queue refuses the
// event, the pixel still answers the GIF (it cannot ask for a retry), and
// counts the event as dropped.
func TestPixelQueueFullIsCountedAndStillAGIF(t *testing.T) {
	slow := newBlocker("Slow")
	h, m, _, base := pixelCollector(t, &opentrack.HandlerOptions{}, opentrack.Options{Integrations: []opentrack.Integration{slow},
		Delivery: opentrack.Delivery{QueueSize: 2, Workers: 1}})
	res, err := http.Post(base+"/batch", "application/json", strings.NewReader(`{"batch":[{"type":"track","userId":"u1","event":"E"},{"type":"track","userId":"u1","event":"E"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("filling the queue: %d", res.StatusCode)
	}
	getPixel(t, base+"/pixel/track?userId=u1&event=Dropped", nil)
	if got := h.PixelStats(); got != (opentrack.PixelStats{Dropped: 1}) {
		t.Errorf("PixelStats = %+v, want one dropped", got)
	}
	close(slow.release)
	flush(t, m)
	if n := slow.n.Load(); n != 2 {
		t.Errorf("Slow delivered %d, want the 2 of the batch only", n)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPixelLogsErrorsSparingly: refused pixel calls are logged at debug
// level, at most one line a second, without the payload or the key.
func TestPixelLogsErrorsSparingly(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, _, _, base := pixelCollector(t, &opentrack.HandlerOptions{WriteKeys: []string{"right-key"}, Logger: logger}, opentrack.Options{})
	start := time.Now()
	const n = 20
	for i := range n {
		q := "writeKey=sekrit-wrong-key&userId=u1&event=E&properties.subject=private-subject"
		if i%2 == 1 {
			q = "writeKey=right-key&userId=u1&properties.subject=private-subject" // no event
		}
		getPixel(t, base+"/pixel/track?"+q, nil)
	}
	elapsed := time.Since(start)
	out := buf.String()
	lines := strings.Count(out, "\n")
	if lines < 1 || lines > 1+int(elapsed/time.Second) {
		t.Errorf("%d requests in %s logged %d lines, want 1 to %d:\n%s", n, elapsed, lines, 1+int(elapsed/time.Second), out)
	}
	for _, secret := range []string{"sekrit", "right-key", "private-subject"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log holds %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "pixel") {
		t.Errorf("log = %q, want a debug line about the pixel", out)
	}
	if s := h.PixelStats(); s.Unauthorized+s.Invalid != n {
		t.Errorf("PixelStats = %+v, want %d refused", s, n)
	}
}

// FuzzPixelQuery sends arbitrary queries to the pixel: it never panics,
// always answers the GIF, and counts every call exactly once.
func FuzzPixelQuery(f *testing.F) {
	m, err := opentrack.New(opentrack.Options{
		Integrations: []opentrack.Integration{opentrack.Func("Discard", func(context.Context, spec.Event) error { return nil })},
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Shutdown(ctx)
	})
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}, MaxEventBytes: 1024, Logger: slog.New(slog.DiscardHandler)})
	payload := base64.StdEncoding.EncodeToString([]byte(`{"writeKey":"wk","userId":"u1","event":"E","properties":{"s":">>>???"}}`))
	for _, seed := range []struct {
		route byte
		query string
	}{
		{0, "data=" + payload},
		{0, "data=" + url.QueryEscape(payload)},
		{0, "data=" + strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(payload), "=")},
		{1, "writeKey=wk&anonymousId=a&name=P&properties.a.b.c=1"},
		{2, "writeKey=wk&userId=u&traits.x=1&traits.x.y=2"},
		{3, "writeKey=wk&userId=u&groupId=g&a..b=1"},
		{4, "writeKey=wk&userId=u&previousId=p&%zz=1"},
		{5, "data=%21%21&writeKey=wk"},
		{0, "data=" + strings.Repeat("QUFB", 400)},
		{0, "data=e30&data=x"},
		{0, ";;&&==..&"},
		{0, ""},
	} {
		f.Add(seed.route, seed.query)
	}
	routes := []string{"track", "page", "identify", "group", "alias", "screen"}
	f.Fuzz(func(t *testing.T, route byte, query string) {
		before := h.PixelStats()
		req := httptest.NewRequest(http.MethodGet, "/v1/pixel/"+routes[int(route)%len(routes)], nil)
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkGIF(t, fmt.Sprintf("query %.80q", query), rec.Code, rec.Header(), rec.Body.Bytes())
		after := h.PixelStats()
		calls := func(s opentrack.PixelStats) uint64 { return s.Accepted + s.Invalid + s.Unauthorized + s.Dropped }
		if calls(after)-calls(before) != 1 {
			t.Errorf("query %.80q: stats went from %+v to %+v, want one more call counted", query, before, after)
		}
	})
}

// BenchmarkPixel: one ~600-byte track as the pixel's URL-safe base64, from
// the query to the Manager.
func BenchmarkPixel(b *testing.B) {
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{discard()}, DisableDedup: true, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}, Logger: quietLogger()})
	payload := strings.Replace(trackBody, `{"type":"track",`, `{"writeKey":"wk",`, 1)
	query := "data=" + base64.RawURLEncoding.EncodeToString([]byte(payload))
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/pixel/track?"+query, nil)
		h.ServeHTTP(&nopWriter{h: http.Header{}}, req)
	}
	if s := h.PixelStats(); s.Accepted == 0 || s.Invalid+s.Unauthorized+s.Dropped != 0 {
		b.Fatalf("PixelStats = %+v, want every call accepted", s)
	}
}
