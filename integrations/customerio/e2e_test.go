package customerio

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	analytics "github.com/segmentio/analytics-go/v3"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
	"github.com/opentrackhq/opentrack/spec"
)

// sdkCallback records analytics-go's outcome for each message.
type sdkCallback struct {
	mu       sync.Mutex
	ok, fail int
	errs     []error
}

func (c *sdkCallback) Success(analytics.Message) { c.mu.Lock(); c.ok++; c.mu.Unlock() }
func (c *sdkCallback) Failure(_ analytics.Message, err error) {
	c.mu.Lock()
	c.fail++
	c.errs = append(c.errs, err)
	c.mu.Unlock()
}

// TestEndToEnd sends every Segment call with analytics-go to the collector's
// handler and checks what reaches the Customer.io stand-in.
func TestEndToEnd(t *testing.T) {
	cioSrv := fakecustomerio.New(testSite, testKey)
	defer cioSrv.Close()
	in, err := FromEnv(context.Background(), env(map[string]string{
		"CUSTOMERIO_SITE_ID":   testSite,
		"CUSTOMERIO_API_KEY":   testKey,
		"CUSTOMERIO_TRACK_URL": cioSrv.URL(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	m, fails := newManager(t, in)
	h := opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"write-key"}})
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", h))
	collector := httptest.NewServer(mux)
	defer collector.Close()

	cb := &sdkCallback{}
	client, err := analytics.NewWithConfig("write-key", analytics.Config{
		Endpoint:  collector.URL,
		Interval:  20 * time.Millisecond,
		BatchSize: 5,
		Callback:  cb,
	})
	if err != nil {
		t.Fatal(err)
	}

	ts := time.Date(2024, 5, 1, 12, 0, 0, 123e6, time.UTC)
	created := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	msgs := []analytics.Message{
		analytics.Identify{MessageId: "e2e-identify", UserId: "user-1", AnonymousId: "anon-1", Timestamp: ts,
			Traits: analytics.NewTraits().SetEmail("ada@example.com").SetName("Ada").SetCreatedAt(created)},
		analytics.Identify{MessageId: "e2e-identify-email", AnonymousId: "anon-2", Timestamp: ts,
			Traits: analytics.NewTraits().SetEmail("grace@example.com")},
		analytics.Track{MessageId: "e2e-track", UserId: "user-1", Event: "Order Completed", Timestamp: ts,
			Properties: analytics.NewProperties().SetRevenue(9.5).Set("shipped_at", "2024-05-02T08:00:00Z")},
		analytics.Track{MessageId: "e2e-track-anon", AnonymousId: "anon-1", Event: "Viewed Pricing", Timestamp: ts},
		analytics.Page{MessageId: "e2e-page", UserId: "user-1", Name: "Pricing", Timestamp: ts,
			Properties: analytics.NewProperties().SetURL("https://example.com/pricing")},
		analytics.Screen{MessageId: "e2e-screen", AnonymousId: "anon-1", Name: "Checkout", Timestamp: ts},
		analytics.Group{MessageId: "e2e-group", UserId: "user-1", GroupId: "acme", Timestamp: ts,
			Traits: analytics.NewTraits().SetName("Acme").Set("employees", 250)},
		analytics.Alias{MessageId: "e2e-alias", UserId: "user-1", PreviousId: "old-user-1", Timestamp: ts},
		// Integration selection by the catalog name Segment uses.
		analytics.Track{MessageId: "e2e-excluded", UserId: "user-1", Event: "Excluded", Timestamp: ts,
			Integrations: analytics.NewIntegrations().Set("Customer.io", false)},
		analytics.Track{MessageId: "e2e-only-cio", UserId: "user-1", Event: "Only Customer.io", Timestamp: ts,
			Integrations: analytics.NewIntegrations().DisableAll().Set("Customer.io", true)},
	}
	for _, msg := range msgs {
		if err := client.Enqueue(msg); err != nil {
			t.Fatalf("enqueue %T: %v", msg, err)
		}
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if cb.ok != len(msgs) || cb.fail != 0 {
		t.Fatalf("analytics-go: %d succeeded, %d failed (%v); want %d, 0", cb.ok, cb.fail, cb.errs, len(msgs))
	}
	flush(t, m)
	if f := fails.List(); len(f) != 0 {
		t.Fatalf("%d failures, first: %v", len(f), f[0].Err)
	}

	got := map[string]map[string]any{}
	var keys []string
	for _, c := range cioSrv.Calls() {
		var body map[string]any
		dec := json.NewDecoder(strings.NewReader(string(c.Body)))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil {
			t.Fatal(err)
		}
		key := c.Method + " " + c.Path
		if name, ok := body["name"].(string); ok && strings.HasSuffix(c.Path, "/events") {
			key += " " + name
		}
		if _, dup := got[key]; dup {
			t.Errorf("%s arrived twice", key)
		}
		got[key] = body
		keys = append(keys, key)
	}
	sort.Strings(keys)
	want := []string{
		"POST /api/v1/customers/user-1/events Only Customer.io",
		"POST /api/v1/customers/user-1/events Order Completed",
		"POST /api/v1/customers/user-1/events https://example.com/pricing",
		"POST /api/v1/events Checkout",
		"POST /api/v1/events Viewed Pricing",
		"POST /api/v1/merge_customers",
		"POST /api/v2/entity",
		"PUT /api/v1/customers/grace@example.com",
		"PUT /api/v1/customers/user-1",
	}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(keys, "\n"), strings.Join(want, "\n"))
	}

	// Events carry the event's time and an id derived from the messageId.
	for key, mid := range map[string]string{
		"POST /api/v1/customers/user-1/events Order Completed":             "e2e-track",
		"POST /api/v1/events Viewed Pricing":                               "e2e-track-anon",
		"POST /api/v1/customers/user-1/events https://example.com/pricing": "e2e-page",
		"POST /api/v1/events Checkout":                                     "e2e-screen",
	} {
		b := got[key]
		if want := eventID(&spec.Common{MessageID: mid, OriginalTimestamp: ts}); b["id"] != want {
			t.Errorf("%s: id %v, want %s", key, b["id"], want)
		}
		sec, err := b["timestamp"].(json.Number).Int64()
		if err != nil || sec < ts.Unix()-2 || sec > ts.Unix()+2 {
			t.Errorf("%s: timestamp %v, want about %d", key, b["timestamp"], ts.Unix())
		}
	}
	if b := got["POST /api/v1/events Viewed Pricing"]; b["anonymous_id"] != "anon-1" {
		t.Errorf("anonymous track: %v", b)
	}
	if b := got["POST /api/v1/events Checkout"]; b["type"] != "screen" || b["anonymous_id"] != "anon-1" {
		t.Errorf("screen: %v", b)
	}
	if b := got["POST /api/v1/customers/user-1/events https://example.com/pricing"]; b["type"] != "page" {
		t.Errorf("page: %v", b)
	}
	order := got["POST /api/v1/customers/user-1/events Order Completed"]["data"].(map[string]any)
	if order["revenue"] != json.Number("9.5") || order["shipped_at"] != json.Number("1714636800") {
		t.Errorf("track data: %v", order)
	}
	person := got["PUT /api/v1/customers/user-1"]
	if person["email"] != "ada@example.com" || person["created_at"] != json.Number(fmt.Sprint(created.Unix())) || person["anonymous_id"] != "anon-1" {
		t.Errorf("identify attributes: %v", person)
	}
	if _, ok := person["createdAt"]; ok {
		t.Errorf("createdAt kept beside created_at: %v", person)
	}
	group := got["POST /api/v2/entity"]
	ids, _ := group["identifiers"].(map[string]any)
	rels, _ := group["cio_relationships"].([]any)
	if group["action"] != "identify" || ids["object_id"] != "acme" || ids["object_type_id"] != "1" || len(rels) != 1 ||
		fmt.Sprint(rels[0]) != "map[identifiers:map[id:user-1]]" {
		t.Errorf("group: %v", group)
	}
	merge := got["POST /api/v1/merge_customers"]
	if fmt.Sprint(merge) != "map[primary:map[id:user-1] secondary:map[id:old-user-1]]" {
		t.Errorf("alias: %v", merge)
	}
}
