package compat

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// TestAnalyticsNode runs @segment/analytics-node (testdata/node/send.js)
// against a collector that requires a write key: all six calls with the
// right key, then one track with a wrong key.
func TestAnalyticsNode(t *testing.T) {
	node := requireNode(t)
	dir := testdataDir(t, "node")
	npmInstall(t, dir)

	c := newCollector(t, opentrack.HandlerOptions{WriteKeys: []string{"wk-node"}})
	past := time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	out, err := runNode(t, ctx, node, dir, "send.js", map[string]string{
		"host":        c.URL,
		"writeKey":    "wk-node",
		"badWriteKey": "not-the-key",
		"past":        past.Format(time.RFC3339Nano),
	})
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s", err, tail(out, 8000))
	}

	type result struct {
		Call      string  `json:"call"`
		MessageID string  `json:"messageId"`
		Error     *string `json:"error"`
	}
	var report struct {
		Calls []result `json:"calls"`
		Bad   result   `json:"bad"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("send.js output: %v\n%s", err, out)
	}
	if len(report.Calls) != 6 {
		t.Fatalf("send.js reported %d calls, want 6", len(report.Calls))
	}
	sdkIDs := map[string]string{} // messageId -> call
	for _, r := range report.Calls {
		if r.Error != nil {
			t.Errorf("analytics-node reported %s failed: %s", r.Call, *r.Error)
		}
		if r.MessageID == "" {
			t.Errorf("analytics-node reported no messageId for %s", r.Call)
		}
		sdkIDs[r.MessageID] = r.Call
	}
	if report.Bad.Error == nil || !strings.Contains(*report.Bad.Error, "401") {
		t.Errorf("track with a wrong key: analytics-node reported error %v, want a 401", report.Bad.Error)
	}

	// On the wire: every batch with the right key accepted; the wrong key
	// refused once (analytics-node does not retry a 401).
	var good, bad int
	for _, p := range c.posts() {
		wantEqual(t, "path", p.Path, "/v1/batch")
		user, _ := p.basicUser()
		switch user {
		case "wk-node":
			good++
			wantEqual(t, "status of a batch with the right key", p.Status, http.StatusOK)
		case "not-the-key":
			bad++
			wantEqual(t, "status of a batch with a wrong key", p.Status, http.StatusUnauthorized)
			if rc := p.Header.Get("X-Retry-Count"); rc != "" {
				t.Errorf("analytics-node retried a 401 (X-Retry-Count %s)", rc)
			}
		default:
			t.Errorf("batch with Basic-auth user %q", user)
		}
	}
	if good == 0 || bad != 1 {
		t.Errorf("collector saw %d batches with the right key and %d with the wrong one, want >0 and 1", good, bad)
	}

	got := c.delivered(t)
	if len(got) != 6 {
		t.Errorf("integration received %d events, want 6", len(got))
	}
	types := map[spec.Type]received{}
	for id, call := range sdkIDs {
		e, ok := got[id]
		if !ok {
			t.Errorf("%s %s, reported delivered by analytics-node, did not reach the integration", call, id)
			continue
		}
		wantEqual(t, id+" type", string(e.Type), call)
		types[e.Type] = e
		wantFields(t, call+" context", e.Context, map[string]string{
			"library.name":    "@segment/analytics-node",
			"library.version": "3.1.0",
			"ip":              "127.0.0.1",
		})
		// Fields the collector does not know are kept, not stripped.
		wantFields(t, call, e.All, map[string]string{"_metadata.jsRuntime": "node"})
		wantEqual(t, call+" writeKey", e.WriteKey, "")
		wantNear(t, call+" receivedAt", e.ReceivedAt, start, time.Minute)
		if e.SentAt.IsZero() {
			t.Errorf("%s has no sentAt: the batch-level sentAt was not merged", call)
		}
		if e.Type != spec.TypeTrack {
			wantNear(t, call+" timestamp", e.Timestamp, e.ReceivedAt, 10*time.Second)
		}
	}
	for _, e := range got {
		if _, ok := sdkIDs[e.MessageID]; !ok {
			t.Errorf("integration received %s %s, which analytics-node did not report sending", e.Type, e.MessageID)
		}
	}

	tr := types[spec.TypeTrack]
	wantEqual(t, "track messageId", tr.MessageID, "node-track-1")
	wantEqual(t, "track userId", tr.UserID, "node-user")
	wantEqual(t, "track event", tr.Event, "Order Completed")
	wantFields(t, "track properties", tr.Properties, map[string]string{"orderId": "o-1", "revenue": "42.5"})
	if products, _ := json.Marshal(tr.Properties["products"]); string(products) != `[{"quantity":2,"sku":"s-1"}]` {
		t.Errorf("track properties.products = %s", products)
	}
	wantFields(t, "track context", tr.Context, map[string]string{"locale": "de-DE"})
	if !tr.OriginalTimestamp.Equal(past) {
		t.Errorf("track originalTimestamp = %s, want the given %s", tr.OriginalTimestamp, past)
	}
	if d := tr.Timestamp.Sub(past); d < 0 || d > 5*time.Second {
		t.Errorf("track timestamp = %s, want the given %s corrected by at most the latency (off by %s)", tr.Timestamp, past, d)
	}

	id := types[spec.TypeIdentify]
	wantEqual(t, "identify userId", id.UserID, "node-user")
	wantFields(t, "identify traits", id.Traits, map[string]string{"email": "ada@example.com", "name": "Ada Lovelace"})

	pg := types[spec.TypePage]
	wantEqual(t, "page anonymousId", pg.AnonymousID, "node-anon")
	wantEqual(t, "page name", pg.Name, "Pricing")
	wantEqual(t, "page category", pg.Category, "Docs")
	wantFields(t, "page properties", pg.Properties, map[string]string{"path": "/pricing"})

	sc := types[spec.TypeScreen]
	wantEqual(t, "screen userId", sc.UserID, "node-user")
	wantEqual(t, "screen name", sc.Name, "Home")
	wantFields(t, "screen properties", sc.Properties, map[string]string{"tab": "feed"})

	gr := types[spec.TypeGroup]
	wantEqual(t, "group groupId", gr.GroupID, "acme")
	wantFields(t, "group traits", gr.Traits, map[string]string{"name": "Acme", "employees": "12"})

	al := types[spec.TypeAlias]
	wantEqual(t, "alias userId", al.UserID, "node-user")
	wantEqual(t, "alias previousId", al.PreviousID, "node-anon")
}
