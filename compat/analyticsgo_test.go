package compat

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	analytics "github.com/segmentio/analytics-go/v3"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// goCallback collects analytics-go's delivery reports by messageId.
type goCallback struct {
	mu      sync.Mutex
	ok      []string
	failed  map[string]error
	reports chan struct{} // one value per report
}

func newGoCallback() *goCallback {
	return &goCallback{failed: map[string]error{}, reports: make(chan struct{}, 100)}
}

func (c *goCallback) Success(m analytics.Message) {
	c.mu.Lock()
	c.ok = append(c.ok, goMessageID(m))
	c.mu.Unlock()
	c.reports <- struct{}{}
}

func (c *goCallback) Failure(m analytics.Message, err error) {
	c.mu.Lock()
	c.failed[goMessageID(m)] = err
	c.mu.Unlock()
	c.reports <- struct{}{}
}

func (c *goCallback) results() (ok []string, failed map[string]error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	failed = make(map[string]error, len(c.failed))
	for k, v := range c.failed {
		failed[k] = v
	}
	return slices.Clone(c.ok), failed
}

func goMessageID(m analytics.Message) string {
	switch m := m.(type) {
	case analytics.Track:
		return m.MessageId
	case analytics.Identify:
		return m.MessageId
	case analytics.Page:
		return m.MessageId
	case analytics.Screen:
		return m.MessageId
	case analytics.Group:
		return m.MessageId
	case analytics.Alias:
		return m.MessageId
	}
	return ""
}

// goLogger sends analytics-go's log to the test log.
type goLogger struct{ t *testing.T }

func (l goLogger) Logf(format string, args ...any) { l.t.Logf("analytics-go: "+format, args...) }
func (l goLogger) Errorf(format string, args ...any) {
	l.t.Logf("analytics-go error: "+format, args...)
}

// TestAnalyticsGo sends all six calls with analytics-go v3 to a collector
// that requires a write key, and checks what the integration received.
func TestAnalyticsGo(t *testing.T) {
	c := newCollector(t, opentrack.HandlerOptions{WriteKeys: []string{"wk"}})
	cb := newGoCallback()
	client, err := analytics.NewWithConfig("wk", analytics.Config{
		Endpoint: c.URL,
		// Only Close sends, so the seven messages go in one batch request.
		Interval:  time.Hour,
		BatchSize: 100,
		Callback:  cb,
		Logger:    goLogger{t},
	})
	if err != nil {
		t.Fatal(err)
	}

	// A timestamp from the past, as a backfill sends: the collector must keep
	// it (corrected only for clock skew) rather than use the arrival time.
	past := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Millisecond)
	msgs := []analytics.Message{
		analytics.Track{
			MessageId: "go-track-1",
			UserId:    "go-user",
			Event:     "Order Completed",
			Timestamp: past,
			Properties: analytics.NewProperties().
				SetRevenue(42.5).
				SetOrderId("o-1").
				Set("items", []string{"a", "b"}),
			Integrations: analytics.NewIntegrations().Enable(recorderName),
		},
		analytics.Identify{
			UserId: "go-user",
			Traits: analytics.NewTraits().SetEmail("ada@example.com").SetName("Ada Lovelace"),
		},
		analytics.Page{
			AnonymousId: "go-anon",
			Name:        "Pricing",
			Properties:  analytics.NewProperties().SetURL("https://example.com/pricing"),
			// A message-level context: the batch-level library must be
			// merged into it, not replace it or be replaced by it.
			Context: &analytics.Context{Locale: "fr-FR"},
		},
		analytics.Screen{
			UserId:     "go-user",
			Name:       "Home",
			Properties: analytics.NewProperties().Set("tab", "feed"),
		},
		analytics.Group{
			UserId:  "go-user",
			GroupId: "acme",
			Traits:  analytics.NewTraits().SetName("Acme").Set("employees", 12),
		},
		analytics.Alias{
			UserId:     "go-user",
			PreviousId: "go-anon",
		},
		// Accepted, but its integrations object sends it nowhere. (The
		// SDK's DisableAll() writes "all" in lower case; see
		// TestAnalyticsGoDisableAll.)
		analytics.Track{
			MessageId:    "go-track-nowhere",
			UserId:       "go-user",
			Event:        "Internal Only",
			Integrations: analytics.NewIntegrations().Set("All", false),
		},
	}
	for _, m := range msgs {
		if err := client.Enqueue(m); err != nil {
			t.Fatalf("Enqueue %T: %v", m, err)
		}
	}
	sentBy := time.Now()
	if err := client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	ok, failed := cb.results()
	if len(failed) != 0 || len(ok) != len(msgs) {
		t.Fatalf("analytics-go reported %d delivered, %d failed (%v); want %d delivered", len(ok), len(failed), failed, len(msgs))
	}

	// On the wire: one batch, authenticated, with the library context at
	// batch level only (which is why the collector must merge it).
	posts := c.posts()
	if len(posts) != 1 {
		t.Fatalf("collector saw %d POSTs, want 1 batch", len(posts))
	}
	p := posts[0]
	wantEqual(t, "path", p.Path, "/v1/batch")
	wantEqual(t, "status", p.Status, http.StatusOK)
	if user, ok := p.basicUser(); !ok || user != "wk" {
		t.Errorf("Basic-auth user = %q (present %v), want wk", user, ok)
	}
	if ua := p.Header.Get("User-Agent"); !strings.HasPrefix(ua, "analytics-go") {
		t.Errorf("User-Agent = %q, want analytics-go's", ua)
	}
	var body struct {
		Batch   []map[string]any `json:"batch"`
		Context map[string]any   `json:"context"`
	}
	if err := decodeJSON(p.Body, &body); err != nil {
		t.Fatalf("batch body: %v", err)
	}
	wantEqual(t, "batch length", len(body.Batch), len(msgs))
	wantEqual(t, "batch context.library.name", str(body.Context, "library.name"), "analytics-go")
	for i, item := range body.Batch {
		if lib := lookup(item, "context.library"); lib != nil {
			t.Errorf("batch[%d] carries its own context.library %v; analytics-go was expected to send it at batch level only", i, lib)
		}
	}

	// What the integration received.
	got := c.delivered(t)
	if len(got) != len(msgs)-1 {
		t.Errorf("integration received %d events, want %d", len(got), len(msgs)-1)
	}
	if _, ok := got["go-track-nowhere"]; ok {
		t.Errorf("event with integrations {All: false} was delivered")
	}
	st := c.m.Stats()[0]
	wantEqual(t, "Stats.Accepted", st.Accepted, uint64(len(msgs)-1))
	wantEqual(t, "Stats.Delivered", st.Delivered, uint64(len(msgs)-1))

	types := map[spec.Type]received{}
	for _, id := range ok {
		if id == "go-track-nowhere" {
			continue
		}
		e, found := got[id]
		if !found {
			t.Errorf("message %s, reported delivered by analytics-go, did not reach the integration", id)
			continue
		}
		types[e.Type] = e
		// Every event: batch context merged, ip added, key not leaked,
		// server times set.
		wantFields(t, string(e.Type)+" context", e.Context, map[string]string{
			"library.name":    "analytics-go",
			"library.version": "3.0.0",
			"ip":              "127.0.0.1",
		})
		wantEqual(t, string(e.Type)+" writeKey", e.WriteKey, "")
		wantNear(t, string(e.Type)+" receivedAt", e.ReceivedAt, sentBy, 5*time.Second)
		wantNear(t, string(e.Type)+" sentAt", e.SentAt, sentBy, 5*time.Second)
		if e.Type != spec.TypeTrack {
			// No timestamp given: analytics-go stamps Enqueue time.
			wantNear(t, string(e.Type)+" timestamp", e.Timestamp, sentBy, 5*time.Second)
		}
	}
	for _, typ := range []spec.Type{spec.TypeTrack, spec.TypeIdentify, spec.TypePage, spec.TypeScreen, spec.TypeGroup, spec.TypeAlias} {
		if _, found := types[typ]; !found {
			t.Errorf("no %s event received", typ)
		}
	}

	tr := got["go-track-1"]
	wantEqual(t, "track type", tr.Type, spec.TypeTrack)
	wantEqual(t, "track userId", tr.UserID, "go-user")
	wantEqual(t, "track event", tr.Event, "Order Completed")
	wantFields(t, "track properties", tr.Properties, map[string]string{"revenue": "42.5", "orderId": "o-1"})
	if items, _ := json.Marshal(tr.Properties["items"]); string(items) != `["a","b"]` {
		t.Errorf("track properties.items = %s, want [\"a\",\"b\"]", items)
	}
	wantEqual(t, "track integrations.Recorder", tr.Integrations[recorderName], any(true))
	if !tr.OriginalTimestamp.Equal(past) {
		t.Errorf("track originalTimestamp = %s, want the given %s", tr.OriginalTimestamp, past)
	}
	// timestamp = receivedAt - (sentAt - originalTimestamp): with one clock,
	// it lies between the given time and that plus the request's latency.
	if d := tr.Timestamp.Sub(past); d < 0 || d > 5*time.Second {
		t.Errorf("track timestamp = %s, want the given %s corrected by at most the latency (off by %s)", tr.Timestamp, past, d)
	}

	id := types[spec.TypeIdentify]
	wantEqual(t, "identify userId", id.UserID, "go-user")
	wantFields(t, "identify traits", id.Traits, map[string]string{"email": "ada@example.com", "name": "Ada Lovelace"})

	pg := types[spec.TypePage]
	wantEqual(t, "page anonymousId", pg.AnonymousID, "go-anon")
	wantEqual(t, "page userId", pg.UserID, "")
	wantEqual(t, "page name", pg.Name, "Pricing")
	wantFields(t, "page properties", pg.Properties, map[string]string{"url": "https://example.com/pricing"})
	wantFields(t, "page context", pg.Context, map[string]string{"locale": "fr-FR"})

	sc := types[spec.TypeScreen]
	wantEqual(t, "screen name", sc.Name, "Home")
	wantFields(t, "screen properties", sc.Properties, map[string]string{"tab": "feed"})

	gr := types[spec.TypeGroup]
	wantEqual(t, "group groupId", gr.GroupID, "acme")
	wantFields(t, "group traits", gr.Traits, map[string]string{"name": "Acme", "employees": "12"})

	al := types[spec.TypeAlias]
	wantEqual(t, "alias userId", al.UserID, "go-user")
	wantEqual(t, "alias previousId", al.PreviousID, "go-anon")
}

// TestAnalyticsGoWrongKey sends with a write key the collector does not
// accept: analytics-go must report every message failed, and nothing may be
// delivered.
func TestAnalyticsGoWrongKey(t *testing.T) {
	c := newCollector(t, opentrack.HandlerOptions{WriteKeys: []string{"wk"}})
	cb := newGoCallback()
	client, err := analytics.NewWithConfig("not-the-key", analytics.Config{
		Endpoint:  c.URL,
		Interval:  time.Hour,
		BatchSize: 2, // the second Enqueue sends the batch
		Callback:  cb,
		Logger:    goLogger{t},
		// analytics-go retries every status >= 300, 401 included, ten
		// times; keep the waits short.
		RetryAfter: func(int) time.Duration { return time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, m := range []analytics.Message{
		analytics.Track{MessageId: "bad-1", UserId: "go-user", Event: "Wrong Key"},
		analytics.Identify{MessageId: "bad-2", UserId: "go-user", Traits: analytics.NewTraits().SetEmail("ada@example.com")},
	} {
		if err := client.Enqueue(m); err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
	}
	// Wait for both reports before Close, so that Close does not cut the
	// retries short.
	ctx := t.Context()
	for range 2 {
		select {
		case <-cb.reports:
		case <-time.After(30 * time.Second):
			t.Fatal("analytics-go reported nothing within 30s")
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	if err := client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	ok, failed := cb.results()
	if len(ok) != 0 {
		t.Errorf("analytics-go reported %v delivered with a wrong key", ok)
	}
	for _, id := range []string{"bad-1", "bad-2"} {
		err, found := failed[id]
		if !found {
			t.Errorf("no Failure callback for %s", id)
		} else if !strings.Contains(err.Error(), "401") {
			t.Errorf("Failure for %s: %v, want a 401", id, err)
		}
	}

	posts := c.posts()
	if len(posts) != 10 {
		t.Errorf("collector saw %d POSTs, want analytics-go's 10 attempts", len(posts))
	}
	for i, p := range posts {
		if p.Status != http.StatusUnauthorized || !strings.Contains(string(p.RespBody), "Invalid write key") {
			t.Errorf("attempt %d answered %d %s, want 401 Invalid write key", i+1, p.Status, p.RespBody)
		}
	}
	if got := c.delivered(t); len(got) != 0 {
		t.Errorf("integration received %d events sent with a wrong key", len(got))
	}
	wantEqual(t, "Stats.Accepted", c.m.Stats()[0].Accepted, uint64(0))
}

// TestAnalyticsGoDisableAll checks that analytics-go's DisableAll() keeps an
// event from every integration. The SDK writes the key in lower case,
// {"all": false}, where Segment's HTTP API documentation writes "All".
func TestAnalyticsGoDisableAll(t *testing.T) {
	c := newCollector(t, opentrack.HandlerOptions{})
	client, err := analytics.NewWithConfig("wk", analytics.Config{Endpoint: c.URL, Interval: time.Hour, Logger: goLogger{t}})
	if err != nil {
		t.Fatal(err)
	}
	err = client.Enqueue(analytics.Track{
		MessageId:    "go-disabled",
		UserId:       "go-user",
		Event:        "Internal Only",
		Integrations: analytics.NewIntegrations().DisableAll(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	posts := c.posts()
	if len(posts) != 1 || posts[0].Status != http.StatusOK {
		t.Fatalf("want one accepted batch, got %d requests", len(posts))
	}
	if !strings.Contains(string(posts[0].Body), `"integrations":{"all":false}`) {
		t.Fatalf("analytics-go no longer sends {\"all\":false}: %s", posts[0].Body)
	}
	got := c.delivered(t)
	if _, ok := got["go-disabled"]; ok {
		t.Errorf("an event sent with DisableAll() ({\"all\": false}) was delivered to %s", recorderName)
	}
}
