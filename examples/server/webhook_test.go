package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	analytics "github.com/segmentio/analytics-go/v3"

	"github.com/opentrackhq/opentrack/internal/webhooktest"
)

// sdkReports records analytics-go's outcome for each message.
type sdkReports struct {
	mu       sync.Mutex
	ok, fail int
	errs     []error
}

func (c *sdkReports) Success(analytics.Message) { c.mu.Lock(); c.ok++; c.mu.Unlock() }
func (c *sdkReports) Failure(_ analytics.Message, err error) {
	c.mu.Lock()
	c.fail++
	c.errs = append(c.errs, err)
	c.mu.Unlock()
}

// TestWebhookEndToEnd sends the six Segment calls with analytics-go to the
// server configured only by environment variables, and checks that each
// reaches a receiver that verifies the signature, once, with its values.
func TestWebhookEndToEnd(t *testing.T) {
	const (
		segmentSecret  = "shared secret, with; punctuation"
		standardSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	)
	cases := []struct {
		name   string
		recv   webhooktest.Options
		env    map[string]string
		method string
		batch  bool
	}{
		{"segment signature, one event per request", webhooktest.Options{SegmentSecret: segmentSecret},
			map[string]string{"WEBHOOK_SECRET": segmentSecret}, "POST", false},
		{"standard webhooks, batches", webhooktest.Options{StandardSecret: standardSecret},
			map[string]string{"WEBHOOK_SECRET": standardSecret, "WEBHOOK_SIGNING": "standard", "WEBHOOK_BATCH_SIZE": "100", "WEBHOOK_METHOD": "PUT"},
			"PUT", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recv := webhooktest.New(&c.recv)
			defer recv.Close()
			env := map[string]string{
				"OPENTRACK_DATA_DIR": t.TempDir(),
				"PORT":               "0",
				"WRITE_KEY":          "wk",
				"WEBHOOK_URL":        recv.URL() + "/segment",
				"WEBHOOK_HEADERS":    `{"Authorization": "Bearer abc, def"}`,
			}
			for k, v := range c.env {
				env[k] = v
			}
			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			ready := make(chan string, 1)
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, func(k string) string { return env[k] }, slog.New(slog.DiscardHandler), ready)
			}()
			var addr string
			select {
			case addr = <-ready:
			case err := <-done:
				t.Fatalf("server did not start: %v", err)
			}

			reports := &sdkReports{}
			client, err := analytics.NewWithConfig("wk", analytics.Config{
				Endpoint:  "http://" + strings.Replace(addr, "[::]", "127.0.0.1", 1),
				Interval:  20 * time.Millisecond,
				BatchSize: 6,
				Callback:  reports,
			})
			if err != nil {
				t.Fatal(err)
			}
			msgs := []analytics.Message{
				analytics.Track{MessageId: "e2e-track", UserId: "user-1", Event: "Order Completed",
					Properties: analytics.NewProperties().SetRevenue(9.5).Set("note", "a, b")},
				analytics.Identify{MessageId: "e2e-identify", UserId: "user-1", Traits: analytics.NewTraits().SetEmail("ada@example.com")},
				analytics.Page{MessageId: "e2e-page", AnonymousId: "anon-1", Name: "Pricing",
					Properties: analytics.NewProperties().SetURL("https://example.com/pricing")},
				analytics.Screen{MessageId: "e2e-screen", UserId: "user-1", Name: "Checkout"},
				analytics.Group{MessageId: "e2e-group", UserId: "user-1", GroupId: "acme", Traits: analytics.NewTraits().SetName("Acme")},
				analytics.Alias{MessageId: "e2e-alias", UserId: "user-1", PreviousId: "anon-1"},
			}
			for _, msg := range msgs {
				if err := client.Enqueue(msg); err != nil {
					t.Fatalf("enqueue %T: %v", msg, err)
				}
			}
			if err := client.Close(); err != nil {
				t.Fatal(err)
			}
			if reports.ok != len(msgs) || reports.fail != 0 {
				t.Fatalf("analytics-go: %d accepted, %d failed (%v); want %d, 0", reports.ok, reports.fail, reports.errs, len(msgs))
			}
			// Stop the server as SIGTERM would: it delivers what it
			// accepted before it returns.
			stop()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the server did not stop")
			}

			for _, r := range recv.Received() {
				if r.Status != 200 {
					t.Errorf("the receiver answered %d: %s", r.Status, r.Reason)
				}
			}
			got := map[string]map[string]any{}
			for _, r := range recv.Accepted() {
				if r.Header.Get("Authorization") != "Bearer abc, def" || r.Path != "/segment" || r.Method != c.method || r.Batch != c.batch {
					t.Errorf("%s %s (array %v) with Authorization %q, want %s /segment (array %v)",
						r.Method, r.Path, r.Batch, r.Header.Get("Authorization"), c.method, c.batch)
				}
				for _, raw := range r.Events {
					var e map[string]any
					if err := json.Unmarshal(raw, &e); err != nil {
						t.Fatal(err)
					}
					id, _ := e["messageId"].(string)
					if _, dup := got[id]; dup {
						t.Errorf("%s arrived twice", id)
					}
					got[id] = e
				}
			}
			var ids []string
			for id := range got {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			want := []string{"e2e-alias", "e2e-group", "e2e-identify", "e2e-page", "e2e-screen", "e2e-track"}
			if !slices.Equal(ids, want) {
				t.Fatalf("received %v, want %v", ids, want)
			}
			for id, typ := range map[string]string{"e2e-track": "track", "e2e-identify": "identify", "e2e-page": "page",
				"e2e-screen": "screen", "e2e-group": "group", "e2e-alias": "alias"} {
				e := got[id]
				if e["type"] != typ || e["receivedAt"] == nil || e["timestamp"] == nil {
					t.Errorf("%s: %v, want a %s call enriched by the collector", id, e, typ)
				}
			}
			track := got["e2e-track"]
			props, _ := track["properties"].(map[string]any)
			lib, _ := track["context"].(map[string]any)["library"].(map[string]any)
			if track["event"] != "Order Completed" || props["revenue"] != 9.5 || props["note"] != "a, b" || lib["name"] != "analytics-go" {
				t.Errorf("track: %v", track)
			}
			if g := got["e2e-group"]; g["groupId"] != "acme" {
				t.Errorf("group: %v", g)
			}
			if a := got["e2e-alias"]; a["previousId"] != "anon-1" || a["userId"] != "user-1" {
				t.Errorf("alias: %v", a)
			}
		})
	}
}
