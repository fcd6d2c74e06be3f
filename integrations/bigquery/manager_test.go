package bigquery

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	analytics "github.com/segmentio/analytics-go/v3"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/fakebigquery"
	"github.com/opentrackhq/opentrack/spec"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newManager runs in under a Manager with quick retries.
func newManager(t *testing.T, in *Integration) *opentrack.Manager {
	t.Helper()
	m, err := opentrack.New(opentrack.Options{
		Integrations: []opentrack.Integration{in},
		Delivery: opentrack.Delivery{Retry: opentrack.RetryPolicy{
			InitialBackoff: 20 * time.Millisecond,
			MaxBackoff:     100 * time.Millisecond,
		}},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// assertOnce checks that table holds exactly the ids want, each once.
func assertOnce(t *testing.T, e *env, table string, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range e.rows(table) {
		seen[r.Values["id"].(string)]++
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("%s: id %s stored %d times, want once", table, id, seen[id])
		}
		delete(seen, id)
	}
	for id, n := range seen {
		t.Errorf("%s: unexpected id %s stored %d times", table, id, n)
	}
}

// TestFailingInsertsLandExactlyOnce makes the first insertAll calls fail and
// checks that, through the Manager's retries, every row lands exactly once.
func TestFailingInsertsLandExactlyOnce(t *testing.T) {
	cases := []struct {
		name  string
		fault fakebigquery.Fault
		// dupes: some failed requests were applied, so their rows are
		// sent twice and dropped by insertId. Otherwise no row may be
		// sent twice: rows that landed while a sibling row of their event
		// failed are not sent again.
		dupes bool
		// retried: the failures outlast the request timeout, so the
		// Manager (not only the client) must retry.
		retried bool
	}{
		{"503", fakebigquery.Fault{Op: fakebigquery.InsertAll, Status: http.StatusServiceUnavailable, Times: 4}, false, false},
		{"503 after applying", fakebigquery.Fault{Op: fakebigquery.InsertAll, Status: http.StatusServiceUnavailable, Apply: true, Times: 3}, true, false},
		{"answer lost after applying", fakebigquery.Fault{Op: fakebigquery.InsertAll, Status: http.StatusServiceUnavailable, Apply: true, Delay: time.Minute, Times: 3}, true, true},
		{"hang without applying", fakebigquery.Fault{Op: fakebigquery.InsertAll, Status: http.StatusServiceUnavailable, Delay: time.Minute, Times: 3}, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A short request timeout hands a failing request back to the
			// Manager instead of letting the client retry it for long.
			e := newEnv(t, &Options{RequestTimeout: 250 * time.Millisecond}, nil)
			m := newManager(t, e.in)
			defer m.Shutdown(e.ctx)

			var events []spec.Event
			var trackIDs, pageIDs, identifyIDs, userIDs []string
			for i := range 30 {
				id := fmt.Sprint("t", i)
				events = append(events, event(t, fmt.Sprintf(`{"type":"track","messageId":%q,"userId":"u%d","event":"Event %d","properties":{"i":%d}}`, id, i, i%3, i)))
				trackIDs = append(trackIDs, id)
			}
			for i := range 10 {
				id := fmt.Sprint("i", i)
				events = append(events, event(t, fmt.Sprintf(`{"type":"identify","messageId":%q,"userId":"user%d","traits":{"n":%d}}`, id, i, i)))
				identifyIDs = append(identifyIDs, id)
				userIDs = append(userIDs, fmt.Sprint("user", i))
				id = fmt.Sprint("p", i)
				events = append(events, event(t, fmt.Sprintf(`{"type":"page","messageId":%q,"anonymousId":"a%d"}`, id, i)))
				pageIDs = append(pageIDs, id)
			}
			e.srv.AddFault(tc.fault)
			if err := m.Enqueue(e.ctx, events...); err != nil {
				t.Fatal(err)
			}
			if err := m.Flush(e.ctx); err != nil {
				t.Fatal(err)
			}

			st := m.Stats()[0]
			if st.Delivered != uint64(len(events)) || st.Failed != 0 || tc.retried && st.Retried == 0 {
				t.Fatalf("manager stats = %+v", st)
			}
			assertOnce(t, e, "tracks", trackIDs)
			for k := range 3 {
				var ids []string
				for i := k; i < 30; i += 3 {
					ids = append(ids, fmt.Sprint("t", i))
				}
				assertOnce(t, e, fmt.Sprint("event_", k), ids)
			}
			assertOnce(t, e, "identifies", identifyIDs)
			assertOnce(t, e, "users", userIDs)
			assertOnce(t, e, "pages", pageIDs)

			fst := e.srv.Stats()
			// 30 tracks (tracks and their event tables), 10 identifies
			// (identifies and users), 10 pages.
			if fst.StoredRows != 90 {
				t.Fatalf("stored %d rows, want 90", fst.StoredRows)
			}
			if tc.dupes && fst.DuplicateRows == 0 {
				t.Fatalf("rows applied before a lost answer were not sent again: %+v", fst)
			}
			if !tc.dupes && fst.DuplicateRows != 0 {
				t.Fatalf("%d rows sent twice although no failed request was applied", fst.DuplicateRows)
			}
			if n := e.srv.Calls(fakebigquery.InsertAll); n <= 7 {
				t.Fatalf("insertAll calls = %d: the faults did not fire", n)
			}
		})
	}
}

// TestNewColumnsWaitForStreaming: BigQuery's streaming backend answers "no
// such field" for a while after a column is added. Those rows are retried
// later by the Manager, with their values, not dropped.
func TestNewColumnsWaitForStreaming(t *testing.T) {
	e := newEnv(t, nil, &fakebigquery.Options{SchemaLag: 300 * time.Millisecond})
	e.in.lagWait = 50 * time.Millisecond
	m := newManager(t, e.in)
	defer m.Shutdown(e.ctx)
	// The table exists; then events bring a new column.
	if err := e.in.Batch(e.ctx, pages(t, "old", 1, `{"a":"x"}`)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.Enqueue(e.ctx, pages(t, "new", 5, `{"a":"x","plan":"pro"}`)...); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatal("rows landed before the new column was known to streaming")
	}
	if st := m.Stats()[0]; st.Delivered != 5 || st.Failed != 0 || st.Retried == 0 {
		t.Fatalf("manager stats = %+v", st)
	}
	var ids []string
	for i := range 5 {
		ids = append(ids, fmt.Sprint("new-", i))
	}
	assertOnce(t, e, "pages", append(ids, "old-0"))
	for _, r := range e.rows("pages")[1:] {
		if r.Values["plan"] != "pro" {
			t.Fatalf("row %s lost its new value: %v", r.InsertID, r.Values)
		}
	}
	if st := e.in.Stats(); st.DroppedFields != 0 || st.ColumnsAdded != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

// recorder is an analytics-go Callback that keeps failures.
type recorder struct {
	mu       sync.Mutex
	ok       int
	failures []error
}

func (r *recorder) Success(analytics.Message) {
	r.mu.Lock()
	r.ok++
	r.mu.Unlock()
}

func (r *recorder) Failure(_ analytics.Message, err error) {
	r.mu.Lock()
	r.failures = append(r.failures, err)
	r.mu.Unlock()
}

// TestEndToEndFromAnalyticsGo sends events with Segment's Go SDK to the
// collector's handler, which hands them to the Manager, which writes them
// through this integration into the stand-in.
func TestEndToEndFromAnalyticsGo(t *testing.T) {
	e := newEnv(t, nil, nil)
	m := newManager(t, e.in)
	defer m.Shutdown(e.ctx)
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", opentrack.NewHandler(m, &opentrack.HandlerOptions{Logger: quiet})))
	collector := httptest.NewServer(mux)
	defer collector.Close()

	var cb recorder
	client, err := analytics.NewWithConfig("write-key", analytics.Config{
		Endpoint: collector.URL, BatchSize: 4, Interval: 50 * time.Millisecond, Callback: &cb,
	})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 1, 2, 3, 0, 0, 0, time.UTC)
	msgs := []analytics.Message{
		analytics.Track{MessageId: "t1", UserId: "u1", Event: "Order Completed", Timestamp: at,
			Properties: analytics.NewProperties().SetRevenue(25.5).Set("orderId", "o-1").Set("itemCount", 2).
				Set("products", []map[string]any{{"sku": "A"}}).Set("userId", "evil")},
		analytics.Identify{MessageId: "i1", UserId: "u1", Timestamp: at,
			Traits: analytics.NewTraits().SetEmail("ada@example.com").SetFirstName("Ada").Set("address", map[string]any{"city": "London"})},
		analytics.Page{MessageId: "p1", AnonymousId: "a1", Name: "Home", Timestamp: at,
			Properties: analytics.NewProperties().SetURL("https://example.com/").SetTitle("Home")},
		analytics.Screen{MessageId: "s1", UserId: "u1", Name: "Settings", Timestamp: at},
		analytics.Group{MessageId: "g1", UserId: "u1", GroupId: "acme", Timestamp: at,
			Traits: analytics.NewTraits().SetName("Acme").Set("employees", 120)},
		analytics.Alias{MessageId: "al1", UserId: "u1", PreviousId: "a1", Timestamp: at},
	}
	for _, msg := range msgs {
		if err := client.Enqueue(msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if cb.ok != len(msgs) || len(cb.failures) > 0 {
		t.Fatalf("analytics-go: %d delivered, failures %v", cb.ok, cb.failures)
	}
	if err := m.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}

	one := func(table string) map[string]any {
		t.Helper()
		rows := e.rows(table)
		if len(rows) != 1 {
			t.Fatalf("%s holds %d rows, want 1", table, len(rows))
		}
		return rows[0].Values
	}
	order := one("order_completed")
	want := map[string]any{
		"id": "t1", "user_id": "u1", "event": "order_completed", "event_text": "Order Completed",
		"order_id": "o-1", "products": `[{"sku":"A"}]`, "context_library_name": "analytics-go",
		"original_timestamp": "2024-01-02T03:00:00Z",
	}
	for k, v := range want {
		if fmt.Sprint(order[k]) != fmt.Sprint(v) {
			t.Errorf("order_completed.%s = %v, want %v", k, order[k], v)
		}
	}
	if fmt.Sprint(order["revenue"]) != "25.5" || fmt.Sprint(order["item_count"]) != "2" {
		t.Errorf("numbers: revenue %v, item_count %v", order["revenue"], order["item_count"])
	}
	// timestamp is originalTimestamp corrected by the sender's clock skew
	// (receivedAt - sentAt), a few milliseconds here.
	if ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(order["timestamp"])); err != nil || ts.Sub(at).Abs() > time.Second {
		t.Errorf("order_completed.timestamp = %v, want about %v", order["timestamp"], at)
	}
	for _, k := range []string{"received_at", "sent_at", "context_ip"} {
		if order[k] == nil {
			t.Errorf("order_completed.%s is empty", k)
		}
	}
	if tr := one("tracks"); tr["id"] != "t1" || tr["order_id"] != nil || tr["context_library_name"] != "analytics-go" {
		t.Errorf("tracks row = %v", tr)
	}
	if id := one("identifies"); id["email"] != "ada@example.com" || id["address_city"] != "London" {
		t.Errorf("identifies row = %v", id)
	}
	if u := one("users"); u["id"] != "u1" || u["first_name"] != "Ada" {
		t.Errorf("users row = %v", u)
	}
	if p := one("pages"); p["name"] != "Home" || p["url"] != "https://example.com/" || p["anonymous_id"] != "a1" {
		t.Errorf("pages row = %v", p)
	}
	if s := one("screens"); s["name"] != "Settings" {
		t.Errorf("screens row = %v", s)
	}
	if g := one("groups"); g["group_id"] != "acme" || fmt.Sprint(g["employees"]) != "120" {
		t.Errorf("groups row = %v", g)
	}
	if a := one("aliases"); a["previous_id"] != "a1" || a["user_id"] != "u1" {
		t.Errorf("aliases row = %v", a)
	}
	if st := e.in.Stats(); st.DiscardedProperties != 1 || st.RowsInserted != 8 {
		t.Errorf("stats = %+v; want the userId property discarded and 8 rows", st)
	}
}
