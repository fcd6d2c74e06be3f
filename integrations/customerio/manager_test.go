package customerio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
	"github.com/opentrackhq/opentrack/internal/testkit"
	"github.com/opentrackhq/opentrack/spec"
)

type failures = testkit.Failures

// newManager runs in under a Manager with fast retries.
func newManager(t *testing.T, in *Integration) (*opentrack.Manager, *failures) {
	t.Helper()
	f := &failures{}
	m, err := opentrack.New(opentrack.Options{
		Integrations: []opentrack.Integration{in},
		OnFailure:    f.Add,
		Logger:       slog.New(slog.DiscardHandler),
		Delivery: opentrack.Delivery{Retry: opentrack.RetryPolicy{
			InitialBackoff: time.Millisecond,
			MaxBackoff:     10 * time.Millisecond,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	return m, f
}

func flush(t *testing.T, m *opentrack.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// TestRetriedUntilDelivered: the first calls answer 503, and every event
// still arrives, once.
func TestRetriedUntilDelivered(t *testing.T) {
	in, srv := newTestIntegration(t, nil)
	m, fails := newManager(t, in)
	const n, failing = 40, 5
	srv.FailNext(failing, fakecustomerio.Response{Status: http.StatusServiceUnavailable})

	var events []spec.Event
	for i := range n {
		c := spec.Common{MessageID: fmt.Sprintf("msg-%d", i), UserID: fmt.Sprintf("user-%d", i%7), Timestamp: testTime}
		switch i % 4 {
		case 0:
			c.Type = spec.TypeTrack
			events = append(events, &spec.Track{Common: c, Event: "Tick", Properties: map[string]any{"n": i}})
		case 1:
			c.Type = spec.TypeIdentify
			events = append(events, &spec.Identify{Common: c, Traits: map[string]any{"n": i}})
		case 2:
			c.Type = spec.TypeGroup
			events = append(events, &spec.Group{Common: c, GroupID: "g", Traits: map[string]any{"n": i}})
		case 3:
			c.Type = spec.TypePage
			events = append(events, &spec.Page{Common: c, Name: "P", Properties: map[string]any{"n": i}})
		}
	}
	if err := m.Enqueue(context.Background(), events...); err != nil {
		t.Fatal(err)
	}
	flush(t, m)

	seen := map[int]int{}
	for _, c := range srv.Calls() {
		var b struct {
			N          *int `json:"n"`
			Data       struct{ N *int }
			Attributes struct{ N *int }
		}
		if err := json.Unmarshal(c.Body, &b); err != nil {
			t.Fatal(err)
		}
		switch {
		case b.N != nil:
			seen[*b.N]++
		case b.Data.N != nil:
			seen[*b.Data.N]++
		case b.Attributes.N != nil:
			seen[*b.Attributes.N]++
		default:
			t.Errorf("call without n: %s %s %s", c.Method, c.Path, c.Body)
		}
	}
	for i := range n {
		if seen[i] != 1 {
			t.Errorf("event %d arrived %d times, want once", i, seen[i])
		}
	}
	if got := srv.Attempts(); got != n+failing {
		t.Errorf("%d requests, want %d", got, n+failing)
	}
	st := m.Stats()[0]
	if st.Delivered != n || st.Retried != failing || st.Failed != 0 {
		t.Errorf("stats delivered %d retried %d failed %d; want %d, %d, 0", st.Delivered, st.Retried, st.Failed, n, failing)
	}
	if f := fails.List(); len(f) != 0 {
		t.Errorf("failures reported: %v", f[0].Err)
	}
}

// TestRetryAfterIsHonoured: a 429 asking for a second delays the retry by at
// least that, although the Manager's own backoff is milliseconds.
func TestRetryAfterIsHonoured(t *testing.T) {
	in, srv := newTestIntegration(t, nil)
	m, _ := newManager(t, in)
	srv.FailNext(1, fakecustomerio.Response{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"1"}}})
	start := time.Now()
	if err := m.Enqueue(context.Background(), sampleEvents()["track"]); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if took := time.Since(start); took < time.Second {
		t.Errorf("delivered after %v, before the 1s Retry-After", took)
	}
	if len(srv.Calls()) != 1 || srv.Attempts() != 2 {
		t.Errorf("%d calls in %d requests, want 1 in 2", len(srv.Calls()), srv.Attempts())
	}
}

// TestBadRequestIsReported: a 400 reaches OnFailure after one attempt.
func TestBadRequestIsReported(t *testing.T) {
	for _, call := range []string{"identify", "track"} {
		t.Run(call, func(t *testing.T) {
			in, srv := newTestIntegration(t, nil)
			m, fails := newManager(t, in)
			srv.FailNext(1, fakecustomerio.Response{Status: http.StatusBadRequest, Body: `{"meta":{"errors":["invalid"]}}`})
			e := sampleEvents()[call]
			if err := m.Enqueue(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			flush(t, m)
			f := fails.List()
			if len(f) != 1 {
				t.Fatalf("%d failures reported, want 1", len(f))
			}
			var se *StatusError
			if f[0].Attempts != 1 || f[0].Integration != Name || f[0].Event != e || !errors.As(f[0].Err, &se) || se.StatusCode != 400 {
				t.Errorf("failure %+v, want the event, 1 attempt, a 400 StatusError", f[0])
			}
			if srv.Attempts() != 1 || len(srv.Calls()) != 0 {
				t.Errorf("%d requests, %d calls; want 1 and 0", srv.Attempts(), len(srv.Calls()))
			}
			if st := m.Stats()[0]; st.Failed != 1 || st.Retried != 0 || st.Delivered != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestUndeliverableIsReported: an identify without userId or email is
// reported, not retried, and sends nothing.
func TestUndeliverableIsReported(t *testing.T) {
	in, srv := newTestIntegration(t, nil)
	m, fails := newManager(t, in)
	e := &spec.Identify{Common: spec.Common{Type: spec.TypeIdentify, MessageID: "m-1", AnonymousID: "anon-1"}, Traits: map[string]any{"name": "Ada"}}
	if err := m.Enqueue(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	f := fails.List()
	if len(f) != 1 || f[0].Attempts != 1 || !errors.Is(f[0].Err, ErrNotDeliverable) {
		t.Fatalf("failures %+v, want one ErrNotDeliverable after 1 attempt", f)
	}
	if srv.Attempts() != 0 {
		t.Errorf("%d requests sent", srv.Attempts())
	}
}
