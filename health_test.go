package opentrack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/journal"
	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

type healthAnswer struct {
	code    int
	Status  string `json:"status"`
	Reasons []struct {
		Integration string `json:"integration"`
		Reason      string `json:"reason"`
	} `json:"reasons"`
}

func probe(t *testing.T, h http.Handler) healthAnswer {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	var a healthAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		t.Fatalf("%d %q: %v", w.Code, w.Body, err)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	a.code = w.Code
	return a
}

// reason returns the reason given for integration, or "".
func (a healthAnswer) reason(integration string) string {
	for _, r := range a.Reasons {
		if r.Integration == integration {
			return r.Reason
		}
	}
	return ""
}

func TestReadinessHealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newRecorder("A")
		m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a}})
		synctest.Wait() // the lane is up
		if got := probe(t, m.ReadinessHandler(nil)); got.code != 200 || got.Status != "ready" || len(got.Reasons) != 0 {
			t.Errorf("readiness = %+v, want 200 ready", got)
		}
		if got := probe(t, m.LivenessHandler()); got.code != 200 || got.Status != "ok" {
			t.Errorf("liveness = %+v", got)
		}
		_ = m.Shutdown(t.Context())
		got := probe(t, m.ReadinessHandler(nil))
		if got.code != 503 || got.Status != "unavailable" || len(got.Reasons) != 1 || got.Reasons[0].Reason != "shutting down" {
			t.Errorf("readiness after Shutdown = %+v, want 503 shutting down", got)
		}
		if got := probe(t, m.LivenessHandler()); got.code != 200 {
			t.Errorf("liveness after Shutdown = %+v, want 200: the process still serves", got)
		}
	})
}

func TestReadinessFailingInit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := &initer{recorder: newRecorder("Warehouse"), failUntil: 1 << 30}
		ok := newRecorder("Fine")
		m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{in, ok}})
		synctest.Wait() // Init failed once and waits to retry
		got := probe(t, m.ReadinessHandler(nil))
		why := got.reason("Warehouse")
		if got.code != 503 || !strings.Contains(why, "cannot initialize") || !strings.Contains(why, "transient") || got.reason("Fine") != "" {
			t.Errorf("readiness = %+v, want 503 naming Warehouse's Init error only", got)
		}
		in.heal()
		time.Sleep(time.Minute) // past the Init backoff
		synctest.Wait()
		if got := probe(t, m.ReadinessHandler(nil)); got.code != 200 {
			t.Errorf("readiness after Init succeeded = %+v, want 200", got)
		}
	})
}

func TestReadinessLag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := newBlocker("Slow")
		m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{slow}})
		if err := m.Enqueue(t.Context(), track("m1")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		lag := m.ReadinessHandler(&opentrack.ReadinessOptions{MaxOldestAge: time.Minute})
		got := probe(t, lag)
		if got.code != 503 || !strings.Contains(got.reason("Slow"), "lagging") || !strings.Contains(got.reason("Slow"), "2m0s") {
			t.Errorf("readiness = %+v, want 503: Slow lagging 2m0s", got)
		}
		if got := probe(t, m.ReadinessHandler(nil)); got.code != 200 {
			t.Errorf("readiness without MaxOldestAge = %+v, want 200: lag is not checked", got)
		}
		close(slow.release)
		flush(t, m)
		if got := probe(t, lag); got.code != 200 {
			t.Errorf("readiness once delivered = %+v, want 200", got)
		}
	})
}

func TestReadinessFailingDestination(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		down := true
		a := opentrack.Func("A", func(context.Context, spec.Event) error {
			if down {
				return errTransient
			}
			return nil
		})
		m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a},
			Delivery: opentrack.Delivery{Retry: opentrack.RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Second, MaxBackoff: time.Second}}})
		for _, u := range []string{"u1", "u2", "u3"} {
			if err := m.Enqueue(t.Context(), trackBy(u, "m-"+u)); err != nil {
				t.Fatal(err)
			}
		}
		flush(t, m) // 12 calls failed
		ready := m.ReadinessHandler(nil)
		got := probe(t, ready)
		if why := got.reason("A"); got.code != 503 || !strings.Contains(why, "failing: the last 12 calls failed") || !strings.Contains(why, "transient") {
			t.Errorf("readiness = %+v, want 503: A failing, with its last error", got)
		}
		if got := probe(t, m.ReadinessHandler(&opentrack.ReadinessOptions{FailingCalls: 13})); got.code != 200 {
			t.Errorf("readiness with FailingCalls 13 = %+v, want 200", got)
		}
		if got := probe(t, m.ReadinessHandler(&opentrack.ReadinessOptions{FailingCalls: -1})); got.code != 200 {
			t.Errorf("readiness with the check off = %+v, want 200", got)
		}
		time.Sleep(opentrack.DefaultFailingInterval + time.Second)
		if got := probe(t, ready); got.code != 200 {
			t.Errorf("readiness a minute after the last failure = %+v, want 200", got)
		}

		// Failing again, then one success clears it.
		for _, u := range []string{"u1", "u2", "u3"} {
			if err := m.Enqueue(t.Context(), trackBy(u, "n-"+u)); err != nil {
				t.Fatal(err)
			}
		}
		flush(t, m)
		if got := probe(t, ready); got.code != 503 {
			t.Errorf("readiness = %+v, want 503", got)
		}
		down = false
		if err := m.Enqueue(t.Context(), track("ok")); err != nil {
			t.Fatal(err)
		}
		flush(t, m)
		if got := probe(t, ready); got.code != 200 {
			t.Errorf("readiness after a delivery = %+v, want 200", got)
		}
	})
}

func TestStatsHandler(t *testing.T) {
	a := opentrack.Func("A", func(_ context.Context, e spec.Event) error {
		if e.Fields().MessageID == "bad" {
			return opentrack.Permanent(errTransient)
		}
		return nil
	})
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a}})
	if err := m.Enqueue(t.Context(), track("m1"), track("bad")); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	w := httptest.NewRecorder()
	m.StatsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/stats", nil))
	var page struct {
		Integrations []map[string]any `json:"integrations"`
		Unrouted     *uint64          `json:"unrouted"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || w.Code != 200 || page.Unrouted == nil {
		t.Fatalf("%d %s: %v", w.Code, w.Body, err)
	}
	got := page.Integrations
	if len(got) != 1 || got[0]["integration"] != "A" || got[0]["ready"] != true || got[0]["accepted"] != float64(2) ||
		got[0]["delivered"] != float64(1) || got[0]["failed"] != float64(1) || got[0]["queued"] != float64(0) {
		t.Errorf("stats = %v", got)
	}
	w = httptest.NewRecorder()
	m.StatsHandler().ServeHTTP(w, httptest.NewRequest("HEAD", "/stats", nil))
	if w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD: %d, %d bytes, headers %v", w.Code, w.Body.Len(), w.Header())
	}
}

// TestStatsShowTheJournal: with a journal, the stats page gives its size on
// disk and the age of its oldest record.
func TestStatsShowTheJournal(t *testing.T) {
	j, err := journal.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{newRecorder("A")}, Queue: j})
	if err := m.Enqueue(t.Context(), track("m1")); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	m.StatsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/stats", nil))
	var page struct {
		Queue *struct {
			Bytes            int64   `json:"bytes"`
			OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
		} `json:"queue"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || page.Queue == nil || page.Queue.Bytes <= 0 {
		t.Errorf("stats %s: want the journal's size", w.Body)
	}
}

// TestFlushAfterRestartWaitsForTheBacklog: Flush on a Manager started on a
// journal that holds records waits for those too, not only for what this
// process enqueued.
func TestFlushAfterRestartWaitsForTheBacklog(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Open([]string{"A"}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		if err := j.Append(t.Context(), []queue.Record{{Event: track(fmt.Sprint("m", i)), Targets: []string{"A"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if j, err = journal.Open(dir, nil); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	slow := opentrack.Func("A", func(context.Context, spec.Event) error {
		time.Sleep(5 * time.Millisecond) // so that the backlog takes a while
		got.Add(1)
		return nil
	})
	m := newManager(t, opentrack.Options{Integrations: []opentrack.Integration{slow}, Queue: j})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if g := got.Load(); g != n {
		t.Errorf("Flush returned with %d of the %d events from before the restart delivered", g, n)
	}
}

// TestRestartWithABacklogDeliversIt: a Manager started on a journal that
// holds records begins delivering them at once, to a per-event integration
// and to a Batcher, with every channel its lanes use made before they read
// (this is where they raced: the test catches it under -race, as CI runs
// it; without -race a nil channel would hang it until go test's timeout).
func TestRestartWithABacklogDeliversIt(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Open([]string{"A", "B"}); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		if err := j.Append(t.Context(), []queue.Record{{Event: track(fmt.Sprint("m", i)), Targets: []string{"A", "B"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err = journal.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The test's goroutine waits on these and touches nothing the lanes
	// use, so that nothing orders their start before what they read.
	doneA, doneB := make(chan struct{}), make(chan struct{})
	var gotA, gotB atomic.Int64
	a := opentrack.Func("A", func(context.Context, spec.Event) error {
		if gotA.Add(1) == n {
			close(doneA)
		}
		return nil
	})
	b := &funcBatcher{Base: opentrack.Base{ID: "B"}, fn: func(events []spec.Event) error {
		if gotB.Add(int64(len(events))) == n {
			close(doneB)
		}
		return nil
	}}
	newManager(t, opentrack.Options{Integrations: []opentrack.Integration{a, b}, Queue: j})
	for name, done := range map[string]chan struct{}{"A": doneA, "B": doneB} {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s got %d of the %d events waiting in the journal (A %d, B %d)", name, map[string]int64{"A": gotA.Load(), "B": gotB.Load()}[name], n, gotA.Load(), gotB.Load())
		}
	}
}
