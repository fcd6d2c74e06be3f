package compat

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/gif"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// loadReport is what load.js prints.
type loadReport struct {
	Unknown *struct {
		Loaded bool   `json:"loaded"`
		Error  string `json:"error"`
	} `json:"unknown"`
	Loaded *struct {
		Calls []struct {
			Call      string `json:"call"`
			MessageID string `json:"messageId"`
		} `json:"calls"`
		AnonymousID string         `json:"anonymousId"`
		UserID      string         `json:"userId"`
		APIHost     string         `json:"apiHost"`
		CDNSettings map[string]any `json:"cdnSettings"`
	} `json:"loaded"`
	Images []struct {
		Name   string `json:"name"`
		Loaded bool   `json:"loaded"`
		Width  int    `json:"width"`
		Height int    `json:"height"`
	} `json:"images"`
	Responses []json.RawMessage `json:"responses"`
	Failures  []json.RawMessage `json:"failures"`
	External  []string          `json:"external"`
	Console   []string          `json:"console"`
	Error     *string           `json:"error"`
}

// runLoadJS runs load.js with cfg (chromium, userDataDir and timeoutMs
// added) and returns its report, failing the test if it did not finish.
// The config goes in a file: the pixel's long URLs would not fit in an
// argument.
func runLoadJS(t *testing.T, c *collector, cfg map[string]any) loadReport {
	t.Helper()
	node := requireNode(t)
	chromium := requireChromium(t)
	dir := testdataDir(t, "browser")
	npmInstall(t, dir)
	cfg["chromium"] = chromium
	cfg["userDataDir"] = t.TempDir()
	cfg["timeoutMs"] = 25000
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, runErr := runNode(t, ctx, node, dir, "load.js", cfgFile)
	var report loadReport
	parseErr := json.Unmarshal(out, &report)
	for _, line := range report.Console {
		t.Logf("console: %s", line)
	}
	for _, r := range c.wire.requests() {
		t.Logf("wire: %-7s %.90s Origin=%s -> %d %s", r.Method, r.Path, r.Header.Get("Origin"), r.Status, r.RespHeader.Get("Content-Type"))
	}
	for _, f := range report.Failures {
		t.Logf("failed in the browser: %s", f)
	}
	switch {
	case runErr != nil:
		t.Fatalf("%v; its report says: %v\nstdout:\n%s", runErr, deref(report.Error), tail(out, 8000))
	case parseErr != nil:
		t.Fatalf("load.js output: %v\n%s", parseErr, tail(out, 8000))
	case report.Error != nil:
		t.Fatalf("load.js failed: %v\n%s", deref(report.Error), tail(out, 8000))
	}
	if len(report.External) > 0 {
		t.Errorf("the browser requested addresses outside 127.0.0.1: %v", report.External)
	}
	return report
}

// TestAnalyticsJSLoadsSettingsFromCollector loads analytics.js as the
// README tells, with only a write key and the collector as its CDN:
//
//	AnalyticsBrowser.load({ writeKey, cdnURL: collector })
//
// from a page on another origin. analytics.js fetches its settings from the
// collector's /v1/projects/{writeKey}/settings and sends every call to the
// collector, once, and nothing anywhere else. With a write key the
// collector does not know it gets a 404, fails to load and sends nothing.
func TestAnalyticsJSLoadsSettingsFromCollector(t *testing.T) {
	dir := testdataDir(t, "browser")
	page := pageServer(t, dir)
	const writeKey, unknownKey = "wk-settings", "wk-unknown"
	c := newCollector(t, opentrack.HandlerOptions{
		WriteKeys:      []string{writeKey},
		AllowedOrigins: []string{page.URL},
	})
	start := time.Now()
	report := runLoadJS(t, c, map[string]any{
		"scenario":        "settings",
		"collector":       c.URL,
		"page":            page.URL + "/",
		"writeKey":        writeKey,
		"unknownWriteKey": unknownKey,
		"expectOK":        6,
	})
	if report.Unknown == nil || report.Loaded == nil {
		t.Fatalf("load.js reported no result: %+v", report)
	}

	// The unknown key: a 404, a failed load, nothing sent.
	if report.Unknown.Loaded {
		t.Errorf("analytics.js loaded with a write key the collector does not know")
	}
	if !strings.Contains(report.Unknown.Error, "Unknown write key") {
		t.Errorf("loading with the unknown key failed with %q, want the collector's 404 message", report.Unknown.Error)
	}

	wire := c.wire.requests()
	settingsGets := map[string]int{}
	posted := map[string][]wireRequest{}
	for _, r := range wire {
		switch {
		case r.Method == http.MethodGet && strings.HasPrefix(r.Path, "/v1/projects/"):
			settingsGets[r.Path] = r.Status
			wantEqual(t, "settings Origin", r.Header.Get("Origin"), page.URL)
			wantEqual(t, "settings Access-Control-Allow-Origin", r.RespHeader.Get("Access-Control-Allow-Origin"), page.URL)
		case r.Method == http.MethodOptions:
			// Preflights of the POSTs (analytics.js adds Authorization).
		case r.Method == http.MethodPost && r.Path != "/v1/m":
			var body struct {
				MessageID string `json:"messageId"`
				Type      string `json:"type"`
			}
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Errorf("POST %s body: %v", r.Path, err)
				continue
			}
			posted[body.MessageID] = append(posted[body.MessageID], r)
			if user, _ := r.basicUser(); user != writeKey {
				t.Errorf("POST %s with write key %q, want %s", r.Path, user, writeKey)
			}
			if body.Type != "" {
				wantEqual(t, "POST path for a "+body.Type, r.Path, "/v1/"+body.Type[:1])
			}
		default:
			t.Errorf("unexpected request to the collector: %s %s", r.Method, r.Path)
		}
	}
	wantEqual(t, "the unknown key's settings", settingsGets["/v1/projects/"+unknownKey+"/settings"], http.StatusNotFound)
	wantEqual(t, "the known key's settings", settingsGets["/v1/projects/"+writeKey+"/settings"], http.StatusOK)

	// The known key: analytics.js took the collector's settings as they
	// are, and sent each call there once.
	host := strings.TrimPrefix(c.URL, "http://")
	wantEqual(t, "analytics.js apiHost", report.Loaded.APIHost, host+"/v1")
	if ints, _ := report.Loaded.CDNSettings["integrations"].(map[string]any); len(ints) != 1 || ints["Segment.io"] == nil {
		t.Errorf("analytics.js has integrations %v, want Segment.io only", ints)
	}
	if len(report.Loaded.Calls) != 6 {
		t.Fatalf("load.js made %d calls, want 6", len(report.Loaded.Calls))
	}
	if len(posted) != 6 {
		t.Errorf("%d events posted, want 6", len(posted))
	}
	for id, reqs := range posted {
		if len(reqs) != 1 || reqs[0].Status != http.StatusOK {
			t.Errorf("event %s posted %d times (first answer %d), want once, answered 200", id, len(reqs), reqs[0].Status)
		}
	}

	got := c.delivered(t)
	if len(got) != 6 {
		t.Errorf("integration received %d events, want 6", len(got))
	}
	anon := report.Loaded.AnonymousID
	for _, cl := range report.Loaded.Calls {
		e, ok := got[cl.MessageID]
		if !ok {
			t.Errorf("%s %s did not reach the integration", cl.Call, cl.MessageID)
			continue
		}
		wantEqual(t, cl.MessageID+" type", string(e.Type), cl.Call)
		wantFields(t, cl.Call+" context", e.Context, map[string]string{
			"library.name":    "analytics.js",
			"library.version": "next-1.84.3",
			"ip":              "127.0.0.1",
			"page.url":        page.URL + "/",
		})
		if ua := str(e.Context, "userAgent"); !strings.Contains(ua, "Chrome") {
			t.Errorf("%s context.userAgent = %q", cl.Call, ua)
		}
		wantEqual(t, cl.Call+" anonymousId", e.AnonymousID, anon)
		wantEqual(t, cl.Call+" writeKey", e.WriteKey, "")
		wantNear(t, cl.Call+" receivedAt", e.ReceivedAt, start, time.Minute)
		// Segment's settings make analytics.js add its _metadata; ours do too.
		if md, ok := e.All["_metadata"].(map[string]any); !ok || md["bundled"] == nil {
			t.Errorf("%s _metadata = %v, want analytics.js's bundled list", cl.Call, e.All["_metadata"])
		}
		switch e.Type {
		case spec.TypeIdentify:
			wantEqual(t, "identify userId", e.UserID, "browser-user")
			wantFields(t, "identify traits", e.Traits, map[string]string{"email": "ada@example.com", "plan": "pro"})
		case spec.TypeTrack:
			wantEqual(t, "track event", e.Event, "Signed Up")
			wantFields(t, "track properties", e.Properties, map[string]string{"plan": "pro", "seats": "3"})
		case spec.TypeAlias:
			wantEqual(t, "alias previousId", e.PreviousID, anon)
		case spec.TypeGroup:
			wantEqual(t, "group groupId", e.GroupID, "acme")
		case spec.TypePage:
			wantEqual(t, "page name", e.Name, "Getting Started")
		case spec.TypeScreen:
			wantEqual(t, "screen name", e.Name, "Home")
		}
	}
	for _, e := range got {
		if e.Event == "Never Sent" {
			t.Errorf("the unknown key's buffered call was delivered")
		}
	}
}

// pixelVariant is one way of calling the tracking pixel.
type pixelVariant struct {
	name      string
	query     string
	messageID string // set when the call is valid and must be delivered
}

// pixelVariants returns the calls both clients make: base64 in both
// alphabets, padded and not, the unencoded form, and calls the pixel must
// refuse while still answering its image. prefix makes the messageIds
// unique to the client.
func pixelVariants(t *testing.T, prefix, writeKey string) []pixelVariant {
	t.Helper()
	// payload grows a filler until the standard alphabet's '+' and '/'
	// both appear in its base64, so that the alphabets differ for it.
	payload := func(id string, key string) []byte {
		for i := range 64 {
			b, err := json.Marshal(map[string]any{
				"writeKey": key, "userId": "reader-1", "event": "Email Opened", "messageId": id,
				"properties": map[string]any{"subject": "Hi >>>??? & bye", "campaign": "c-7", "filler": strings.Repeat("~", i)},
			})
			if err != nil {
				t.Fatal(err)
			}
			if std := base64.StdEncoding.EncodeToString(b); strings.Contains(std, "+") && strings.Contains(std, "/") {
				return b
			}
		}
		t.Fatal("no filler gave both '+' and '/'")
		return nil
	}
	var out []pixelVariant
	valid := func(name string, query func(id string) string) {
		id := prefix + "-" + name
		out = append(out, pixelVariant{name: name, query: query(id), messageID: id})
	}
	invalid := func(name, query string) {
		out = append(out, pixelVariant{name: name, query: query})
	}
	valid("std-padded", func(id string) string {
		return "data=" + url.QueryEscape(base64.StdEncoding.EncodeToString(payload(id, writeKey)))
	})
	valid("std-padded-unescaped", func(id string) string {
		return "data=" + base64.StdEncoding.EncodeToString(payload(id, writeKey))
	})
	valid("std-unpadded", func(id string) string {
		return "data=" + url.QueryEscape(base64.RawStdEncoding.EncodeToString(payload(id, writeKey)))
	})
	valid("url-padded", func(id string) string {
		return "data=" + base64.URLEncoding.EncodeToString(payload(id, writeKey))
	})
	valid("url-unpadded", func(id string) string {
		return "data=" + base64.RawURLEncoding.EncodeToString(payload(id, writeKey))
	})
	valid("unencoded", func(id string) string {
		return url.Values{"writeKey": {writeKey}, "userId": {"reader-1"}, "event": {"Email Opened"}, "messageId": {id},
			"properties.subject": {"Hi >>>??? & bye"}, "properties.campaign": {"c-7"}}.Encode()
	})
	invalid("bad base64", "data=%21%21%21not-base64*")
	invalid("bad key", "data="+base64.RawURLEncoding.EncodeToString(payload(prefix+"-bad-key", "not-"+writeKey)))
	invalid("no key", "userId=reader-1&event=Email+Opened&messageId="+prefix+"-no-key")
	invalid("no event", "writeKey="+writeKey+"&userId=reader-1&messageId="+prefix+"-no-event")
	invalid("oversized query", "data="+strings.Repeat("QUJD", 50<<10)) // 200 KB
	return out
}

// TestPixelFromChromiumAndGo: the tracking pixel, shown as <img> elements
// by Chromium on a page of another origin and fetched by Go's HTTP client,
// answers every request with the 1x1 GIF, and delivers exactly the valid
// calls, once each, enriched with the client's address and User-Agent.
func TestPixelFromChromiumAndGo(t *testing.T) {
	dir := testdataDir(t, "browser")
	page := pageServer(t, dir)
	const writeKey = "wk-pixel"
	c := newCollector(t, opentrack.HandlerOptions{
		WriteKeys:      []string{writeKey},
		AllowedOrigins: []string{page.URL},
	})

	// Go's HTTP client, as a server sending pixel calls would.
	goVariants := pixelVariants(t, "go", writeKey)
	for _, v := range goVariants {
		res, err := http.Get(c.URL + "/v1/pixel/track?" + v.query)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "image/gif" {
			t.Errorf("Go %s: %d %s", v.name, res.StatusCode, res.Header.Get("Content-Type"))
			continue
		}
		img, err := gif.Decode(bytes.NewReader(body))
		if err != nil {
			t.Errorf("Go %s: not a GIF: %v", v.name, err)
		} else if b := img.Bounds(); b.Dx() != 1 || b.Dy() != 1 {
			t.Errorf("Go %s: a %dx%d image", v.name, b.Dx(), b.Dy())
		}
	}

	// Chromium, as a mail client or a page showing the pixel would.
	browserVariants := pixelVariants(t, "browser", writeKey)
	var images []map[string]string
	for _, v := range browserVariants {
		images = append(images, map[string]string{"name": v.name, "src": c.URL + "/v1/pixel/track?" + v.query})
	}
	report := runLoadJS(t, c, map[string]any{
		"scenario":  "pixel",
		"collector": c.URL,
		"page":      page.URL + "/",
		"images":    images,
	})
	if len(report.Images) != len(browserVariants) {
		t.Fatalf("the page showed %d images, want %d", len(report.Images), len(browserVariants))
	}
	for _, img := range report.Images {
		if !img.Loaded || img.Width != 1 || img.Height != 1 {
			t.Errorf("Chromium %s: loaded %v as %dx%d, want a 1x1 image", img.Name, img.Loaded, img.Width, img.Height)
		}
	}

	// Every pixel request was answered with the image.
	var pixelRequests int
	for _, r := range c.wire.requests() {
		if !strings.HasPrefix(r.Path, "/v1/pixel/") {
			t.Errorf("unexpected request: %s %s", r.Method, r.Path)
			continue
		}
		pixelRequests++
		if r.Status != http.StatusOK || r.RespHeader.Get("Content-Type") != "image/gif" {
			t.Errorf("%s %s answered %d %s", r.Method, r.Path, r.Status, r.RespHeader.Get("Content-Type"))
		}
	}
	wantEqual(t, "pixel requests", pixelRequests, len(goVariants)+len(browserVariants))

	// Exactly the valid calls were delivered, once each.
	got := c.delivered(t)
	want := 0
	for client, variants := range map[string][]pixelVariant{"Go-http-client": goVariants, "Chrome": browserVariants} {
		for _, v := range variants {
			if v.messageID == "" {
				continue
			}
			want++
			e, ok := got[v.messageID]
			if !ok {
				t.Errorf("%s %s was not delivered", client, v.name)
				continue
			}
			wantEqual(t, v.name+" type", e.Type, spec.TypeTrack)
			wantEqual(t, v.name+" event", e.Event, "Email Opened")
			wantEqual(t, v.name+" userId", e.UserID, "reader-1")
			wantEqual(t, v.name+" writeKey", e.WriteKey, "")
			wantFields(t, v.name+" properties", e.Properties, map[string]string{"subject": "Hi >>>??? & bye", "campaign": "c-7"})
			wantFields(t, v.name+" context", e.Context, map[string]string{"ip": "127.0.0.1"})
			if ua := str(e.Context, "userAgent"); !strings.Contains(ua, client) {
				t.Errorf("%s context.userAgent = %q, want %s's", v.name, ua, client)
			}
		}
	}
	if len(got) != want {
		ids := make([]string, 0, len(got))
		for id := range got {
			ids = append(ids, id)
		}
		t.Errorf("delivered %d events %v, want the %d valid calls only", len(got), ids, want)
	}
}
