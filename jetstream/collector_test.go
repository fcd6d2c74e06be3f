package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/jetstream"
	"github.com/opentrackhq/opentrack/spec"
)

// sink is a destination shared by collectors: it records each event by
// messageId and counts the ones it sees more than once, as a destination
// that dedupes by messageId would.
type sink struct {
	mu      sync.Mutex
	got     map[string]int        // messageId → deliveries
	types   map[string]spec.Type  // messageId → type
	events  map[string]spec.Event // messageId → the event delivered
	changed chan struct{}         // closed and replaced on each delivery
}

func newSink() *sink {
	return &sink{got: map[string]int{}, types: map[string]spec.Type{}, events: map[string]spec.Event{}, changed: make(chan struct{})}
}

// integration returns an Integration called name that delivers to s.
func (s *sink) integration(name string) opentrack.Integration {
	return opentrack.Func(name, func(_ context.Context, e spec.Event) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		c := e.Fields()
		s.got[c.MessageID]++
		s.types[c.MessageID] = c.Type
		s.events[c.MessageID] = e
		close(s.changed)
		s.changed = make(chan struct{})
		return nil
	})
}

// duplicates returns how many deliveries were of a messageId seen before.
func (s *sink) duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.got {
		n += c - 1
	}
	return n
}

func (s *sink) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[id]
}

// waitFor waits until every id has been delivered, and returns those
// still missing when d has passed.
func (s *sink) waitFor(ids []string, d time.Duration) (missing []string) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		missing = missing[:0]
		for _, id := range ids {
			if s.got[id] == 0 {
				missing = append(missing, id)
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return missing
		}
	}
}

// collector is one OpenTrack collector on a JetStream queue: a Manager
// behind the Handler, on an httptest server.
type collector struct {
	q    *jetstream.Queue
	m    *opentrack.Manager
	base string // the server's URL, for an SDK's endpoint
	url  string // the API's base, base + "/v1"
}

func newCollector(t *testing.T, o *jetstream.Options, d opentrack.Delivery, ins ...opentrack.Integration) *collector {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	q, err := jetstream.Open(t.Context(), o)
	if err != nil {
		t.Fatalf("jetstream.Open: %v", err)
	}
	m, err := opentrack.New(opentrack.Options{Integrations: ins, Queue: q, Logger: quiet, Delivery: d})
	if err != nil {
		q.Close()
		t.Fatalf("opentrack.New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", opentrack.NewHandler(m, &opentrack.HandlerOptions{WriteKeys: []string{"wk"}, Logger: quiet})))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Shutdown(ctx)
	})
	return &collector{q: q, m: m, base: srv.URL, url: srv.URL + "/v1"}
}

var client = &http.Client{Timeout: 10 * time.Second}

// post sends body to path and returns the status and Retry-After.
func post(t *testing.T, url, body string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("wk", "")
	res, err := client.Do(req)
	if err != nil {
		return 0, ""
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, res.Header.Get("Retry-After")
}

// batchBody is a /batch request of one track event per id, for user.
func batchBody(user string, ids ...string) string {
	type ev struct {
		Type       string         `json:"type"`
		MessageID  string         `json:"messageId"`
		UserID     string         `json:"userId"`
		Event      string         `json:"event"`
		Properties map[string]any `json:"properties"`
	}
	var b struct {
		Batch []ev `json:"batch"`
	}
	for i, id := range ids {
		b.Batch = append(b.Batch, ev{"track", id, user, "Load", map[string]any{"i": i}})
	}
	out, _ := json.Marshal(b)
	return string(out)
}

func trackBody(id, user string) string {
	return fmt.Sprintf(`{"messageId":%q,"userId":%q,"event":"Load"}`, id, user)
}
