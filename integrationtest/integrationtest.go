// Package integrationtest is a conformance suite for OpenTrack integrations,
// built-in or your own. It drives an integration through a real
// opentrack.Manager, and through direct calls, against a stand-in of its
// backend and checks the contract of opentrack.Integration: every call
// arrives once, with the values sent, transient failures are retried until delivered, permanent ones
// are reported without retries, a cancelled context is honoured, concurrent
// delivery is safe, events are not kept after a call returns, calls after
// Close fail, and Close may be called twice.
//
// An integration's test supplies a [Harness]:
//
//	func TestConformance(t *testing.T) {
//		integrationtest.Run(t, &harness{})
//	}
//
// Run the suite with -race: some cases can only fail through the race
// detector.
package integrationtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/testkit"
	"github.com/opentrackhq/opentrack/spec"
)

// Harness connects the suite to an integration and a stand-in of its
// backend. Each case (each subtest, where a case has several) calls New
// once, for a fresh integration and backend, and then uses the other
// methods on that backend. Cases run one after the other, never in
// parallel.
type Harness interface {
	// New returns an integration wired to a fresh stand-in backend; the
	// harness cleans both up with t.Cleanup. The suite may call the
	// integration's Init, Batch or per-call methods, Flush and Close itself
	// as well as through a Manager, and may call them after Close.
	New(t *testing.T) opentrack.Integration
	// Received returns one Record per event the backend holds, read back
	// from what it received on the wire and named in Segment's terms (see
	// [Record]). It may be called at any time, after Close too.
	Received(t *testing.T) []Record
	// FailNext makes the backend fail its next n requests: transiently (a
	// 503, a write error) or permanently (a 400). The suite calls it only
	// once the integration is initialised (Init, if any, has returned) and
	// has delivered an event through the Manager, so the failures fall on
	// the requests that deliver the case's next event, not on Init or
	// first-use set-up. A backend that takes one event in several requests
	// (a row per table) may fail more than n, so that a permanent failure
	// leaves nothing of the event stored. It returns false if the backend
	// cannot fail that way; the case is then skipped.
	FailNext(t *testing.T, n int, permanent bool) bool
	// Types lists the call types the integration stores; the suite expects
	// exactly one backend record per event of these types.
	Types() []spec.Type
}

// Record is one event as a backend stored it, read back by the harness.
type Record struct {
	// Type is the Segment call the backend stored the event as.
	Type spec.Type
	// MessageID is the event's messageId as the backend stored it.
	MessageID string
	// Fields maps paths of the event's Segment JSON ("userId", "event",
	// "properties.revenue", "traits.email", "context.ip", "groupId") to the
	// values the backend stored for them, as text: strings as they are,
	// numbers in their JSON form ("12.5"), booleans "true"/"false", arrays
	// and objects as JSON. A harness names the paths its backend keeps in a
	// form it can read back; the suite compares each with the event sent, so
	// a mangled event fails. Fields must name at least one path.
	Fields map[string]string
}

// Events returns one valid, enriched event of each type, with messageIds
// prefixed by prefix. The identify carries an email trait and the page a
// url, so that mappings that need them have them. Numbers are json.Number,
// as decoded from a request, except the screen's, which is an int as a Go
// caller would build it.
func Events(prefix string) []spec.Event {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	c := func(t spec.Type, n int) spec.Common {
		return spec.Common{Type: t, MessageID: fmt.Sprintf("%s-%d", prefix, n), UserID: "user-1", AnonymousID: "anon-1",
			Timestamp: now, OriginalTimestamp: now, SentAt: now, ReceivedAt: now,
			Context: map[string]any{"ip": "127.0.0.1", "library": map[string]any{"name": "integrationtest"}}}
	}
	return []spec.Event{
		&spec.Track{Common: c(spec.TypeTrack, 0), Event: "Order Completed", Properties: map[string]any{"revenue": json.Number("12.5"), "currency": "EUR"}},
		&spec.Identify{Common: c(spec.TypeIdentify, 1), Traits: map[string]any{"email": "ada@example.com", "name": "Ada"}},
		&spec.Page{Common: c(spec.TypePage, 2), Name: "Pricing", Properties: map[string]any{"url": "https://example.com/pricing", "path": "/pricing"}},
		&spec.Screen{Common: c(spec.TypeScreen, 3), Name: "Checkout", Properties: map[string]any{"step": 2}}, // a value built in Go, not decoded,
		&spec.Group{Common: c(spec.TypeGroup, 4), GroupID: "acme", Traits: map[string]any{"name": "Acme Inc"}},
		&spec.Alias{Common: c(spec.TypeAlias, 5), PreviousID: "anon-1"},
	}
}

// Run runs every case of the suite as a subtest of t.
func Run(t *testing.T, h Harness) {
	t.Run("DeliversEveryCall", func(t *testing.T) { testDeliversEveryCall(t, h) })
	t.Run("RetriesTransientFailures", func(t *testing.T) { testRetriesTransient(t, h) })
	t.Run("ReportsPermanentFailuresWithoutRetry", func(t *testing.T) { testPermanent(t, h) })
	t.Run("HonoursCancelledContext", func(t *testing.T) { testCancelled(t, h) })
	t.Run("ConcurrentDelivery", func(t *testing.T) { testConcurrent(t, h) })
	t.Run("DoesNotRetainEvents", func(t *testing.T) { testDoesNotRetain(t, h) })
	t.Run("CallAfterCloseFails", func(t *testing.T) { testCallAfterClose(t, h) })
	t.Run("CloseTwice", func(t *testing.T) { testCloseTwice(t, h) })
}

// manager runs in through a Manager with fast retries.
func manager(t *testing.T, in opentrack.Integration, f *testkit.Failures) *opentrack.Manager {
	t.Helper()
	m, err := opentrack.New(opentrack.Options{
		Integrations: []opentrack.Integration{in},
		OnFailure:    f.Add,
		Logger:       testkit.Quiet,
		Delivery: opentrack.Delivery{
			CallTimeout: 10 * time.Second,
			Retry:       opentrack.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxAttempts: 5},
			Batch:       opentrack.BatchOptions{Interval: 20 * time.Millisecond},
		},
	})
	if err != nil {
		t.Fatalf("opentrack.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return m
}

func flush(t *testing.T, m *opentrack.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func only(events []spec.Event, types []spec.Type) []spec.Event {
	keep := map[spec.Type]bool{}
	for _, ty := range types {
		keep[ty] = true
	}
	var out []spec.Event
	for _, e := range events {
		if keep[e.Fields().Type] {
			out = append(out, e)
		}
	}
	return out
}

// RecordFromJSON reads back one event that a backend received as Segment
// JSON (a JSON-lines file, a webhook body): every path of the object becomes
// a field. It is for harnesses of integrations that send events as they are.
func RecordFromJSON(raw []byte) (Record, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return Record{}, fmt.Errorf("integrationtest: %w", err)
	}
	fields := map[string]string{}
	flatten(fields, "", m)
	return Record{Type: spec.Type(fields["type"]), MessageID: fields["messageId"], Fields: fields}, nil
}

// expectation is what the backend must hold for the events sent: per
// messageId, the type and the flattened Segment JSON of the event, taken
// when it was sent (the suite may change the events afterwards).
type expectation map[string]expected

type expected struct {
	typ    spec.Type
	fields map[string]string
}

// expect records events as they are now, added to x.
func (x expectation) expect(t *testing.T, events ...spec.Event) expectation {
	t.Helper()
	for _, e := range events {
		raw, err := e.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal %s: %v", e.Fields().MessageID, err)
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("decode %s: %v", e.Fields().MessageID, err)
		}
		fields := map[string]string{}
		flatten(fields, "", m)
		x[e.Fields().MessageID] = expected{typ: e.Fields().Type, fields: fields}
	}
	return x
}

// flatten writes the values of m into out under dotted paths; objects are
// also written whole, as JSON, under their own path.
func flatten(out map[string]string, prefix string, m map[string]any) {
	for k, v := range m {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		switch v := v.(type) {
		case map[string]any:
			flatten(out, path, v)
			b, _ := json.Marshal(v)
			out[path] = string(b)
		case string:
			out[path] = v
		case json.Number:
			out[path] = v.String()
		case nil:
			out[path] = "null"
		default:
			b, _ := json.Marshal(v)
			out[path] = string(b)
		}
	}
}

// checkReceived checks that the backend holds exactly the events of want,
// each once, as their type, with the values sent.
func checkReceived(t *testing.T, h Harness, want expectation) {
	t.Helper()
	compare(t, h.Received(t), want)
}

// errorer is the part of *testing.T that compare uses.
type errorer interface {
	Helper()
	Errorf(format string, args ...any)
}

func compare(t errorer, got []Record, want expectation) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range got {
		seen[r.MessageID]++
		w, ok := want[r.MessageID]
		if !ok {
			t.Errorf("backend holds an event that was not expected there: %+v", r)
			continue
		}
		if r.Type != w.typ {
			t.Errorf("event %s stored as %s, want %s", r.MessageID, r.Type, w.typ)
		}
		if len(r.Fields) == 0 {
			t.Errorf("event %s: the harness read back no fields; Record.Fields must name at least one", r.MessageID)
		}
		for path, v := range r.Fields {
			sent, ok := w.fields[path]
			switch {
			case !ok:
				t.Errorf("event %s: the backend holds %s = %q, which the event sent did not have", r.MessageID, path, v)
			case sent != v:
				t.Errorf("event %s: %s = %q in the backend, want %q as sent", r.MessageID, path, v, sent)
			}
		}
	}
	for id, w := range want {
		if n := seen[id]; n != 1 {
			t.Errorf("backend holds %s event %s %d times, want once", w.typ, id, n)
		}
	}
}

func testDeliversEveryCall(t *testing.T, h Harness) {
	var f testkit.Failures
	m := manager(t, h.New(t), &f)
	events := only(Events("every"), h.Types())
	if err := m.Enqueue(t.Context(), events...); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if len(f.List()) != 0 {
		t.Fatalf("%d events reported as failed: %+v", len(f.List()), f.List())
	}
	checkReceived(t, h, expectation{}.expect(t, events...))
	if s := m.Stats()[0]; s.Delivered != uint64(len(events)) {
		t.Errorf("Delivered = %d, want %d", s.Delivered, len(events))
	}
}

// warmUp delivers one event through m and flushes, so that the
// integration's Init and first-use set-up have run before a case arms
// FailNext. It returns what the backend then holds.
func warmUp(t *testing.T, h Harness, m *opentrack.Manager) expectation {
	t.Helper()
	e := only(Events("warmup"), h.Types())[:1]
	if err := m.Enqueue(t.Context(), e...); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	want := expectation{}.expect(t, e...)
	checkReceived(t, h, want)
	if t.Failed() {
		t.FailNow()
	}
	return want
}

func testRetriesTransient(t *testing.T, h Harness) {
	var f testkit.Failures
	m := manager(t, h.New(t), &f)
	want := warmUp(t, h, m)
	if !h.FailNext(t, 2, false) {
		t.Skip("the backend cannot fail transiently")
	}
	e := only(Events("transient"), h.Types())[:1]
	if err := m.Enqueue(t.Context(), e...); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if len(f.List()) != 0 {
		t.Fatalf("a transient failure was reported as final: %+v", f.List())
	}
	// Whether the integration retried by itself (as the BigQuery client
	// does) or the Manager did, the event must land exactly once.
	checkReceived(t, h, want.expect(t, e...))
	if s := m.Stats()[0]; s.Delivered != 2 || s.Failed != 0 {
		t.Errorf("Delivered = %d, Failed = %d; want 2 (warm-up included) and 0", s.Delivered, s.Failed)
	}
}

func testPermanent(t *testing.T, h Harness) {
	var f testkit.Failures
	m := manager(t, h.New(t), &f)
	want := warmUp(t, h, m)
	if !h.FailNext(t, 1, true) {
		t.Skip("the backend cannot fail permanently")
	}
	e := only(Events("permanent"), h.Types())[:1]
	if err := m.Enqueue(t.Context(), e...); err != nil {
		t.Fatal(err)
	}
	flush(t, m)
	if len(f.List()) != 1 {
		t.Fatalf("failures reported = %d, want 1", len(f.List()))
	}
	if !opentrack.IsPermanent(f.List()[0].Err) || f.List()[0].Attempts != 1 {
		t.Errorf("failure = %+v, want a Permanent error after 1 attempt", f.List()[0])
	}
	if id := f.List()[0].Event.Fields().MessageID; id != e[0].Fields().MessageID {
		t.Errorf("failure reported for event %q, want %q", id, e[0].Fields().MessageID)
	}
	checkReceived(t, h, want) // the warm-up only
	if s := m.Stats()[0]; s.Delivered != 1 || s.Failed != 1 || s.Retried != 0 {
		t.Errorf("Delivered = %d, Failed = %d, Retried = %d; want 1 (the warm-up), 1 and 0", s.Delivered, s.Failed, s.Retried)
	}
}

// call hands events to in directly, as the Manager would: in one Batch for
// a Batcher, else one call per event (stopping at the first error).
func call(ctx context.Context, in opentrack.Integration, events []spec.Event) error {
	if b, ok := in.(opentrack.Batcher); ok {
		return b.Batch(ctx, events)
	}
	for _, e := range events {
		if err := opentrack.Deliver(ctx, in, e); err != nil {
			return err
		}
	}
	return nil
}

// initialise calls in's Init, if it has one.
func initialise(t *testing.T, in opentrack.Integration) {
	t.Helper()
	if i, ok := in.(opentrack.Initializer); ok {
		if err := i.Init(t.Context()); err != nil {
			t.Fatalf("Init: %v", err)
		}
	}
}

func testCancelled(t *testing.T, h Harness) {
	in := h.New(t)
	initialise(t, in)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	e := only(Events("cancelled"), h.Types())[:1]
	err := call(ctx, in, e)
	if err == nil {
		t.Errorf("a call with a cancelled context returned nil")
	}
	if opentrack.IsPermanent(err) {
		t.Errorf("a cancelled call was marked Permanent (%v); the Manager must be free to retry it", err)
	}
	checkReceived(t, h, expectation{})
	if c, ok := in.(opentrack.Closer); ok {
		_ = c.Close(t.Context())
	}
}

func testConcurrent(t *testing.T, h Harness) {
	var f testkit.Failures
	m := manager(t, h.New(t), &f)
	want := expectation{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				events := only(Events(fmt.Sprintf("c%d-%d", g, i)), h.Types())
				if err := m.Enqueue(t.Context(), events...); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want.expect(t, events...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	flush(t, m)
	if len(f.List()) != 0 {
		t.Fatalf("%d events reported as failed", len(f.List()))
	}
	checkReceived(t, h, want)
}

// scribble changes every map and string of e in place, as a caller that
// reuses its events would, and gives it the call type ty.
func scribble(e spec.Event, ty spec.Type) {
	c := e.Fields()
	c.Type = ty
	c.MessageID += "-reused"
	c.UserID, c.AnonymousID = "someone-else", "anon-else"
	reuse := func(m map[string]any) {
		if m == nil {
			return
		}
		clear(m)
		m["reused"] = true
	}
	reuse(c.Context)
	switch ev := e.(type) {
	case *spec.Track:
		ev.Event = "Something Else"
		reuse(ev.Properties)
	case *spec.Identify:
		reuse(ev.Traits)
	case *spec.Page:
		ev.Name = "Else"
		reuse(ev.Properties)
	case *spec.Screen:
		ev.Name = "Else"
		reuse(ev.Properties)
	case *spec.Group:
		ev.GroupID = "else"
		reuse(ev.Traits)
	case *spec.Alias:
		ev.PreviousID = "else"
	}
}

// testDoesNotRetain checks that an integration does not keep the events,
// or a Batcher the slice, after a call returns: the caller then changes
// them all into one call type and overwrites the slice, and whatever the
// integration writes later (on Flush or Close) would change the backend's
// counts; an integration that reads them from another goroutine fails
// under -race.
func testDoesNotRetain(t *testing.T, h Harness) {
	types := h.Types()
	t.Run("DirectCalls", func(t *testing.T) {
		in := h.New(t)
		initialise(t, in)
		events := only(Events("retain"), types)
		want := expectation{}.expect(t, events...)
		batch := append([]spec.Event(nil), events...)
		if err := call(t.Context(), in, batch); err != nil {
			t.Fatalf("delivery: %v", err)
		}
		for i, e := range events {
			scribble(e, types[0])
			batch[i] = events[0]
		}
		if f, ok := in.(opentrack.Flusher); ok {
			if err := f.Flush(t.Context()); err != nil {
				t.Fatalf("Flush: %v", err)
			}
		}
		if c, ok := in.(opentrack.Closer); ok {
			if err := c.Close(t.Context()); err != nil {
				t.Fatalf("Close: %v", err)
			}
		}
		checkReceived(t, h, want)
	})
	t.Run("Manager", func(t *testing.T) {
		var f testkit.Failures
		m := manager(t, h.New(t), &f)
		events := only(Events("retain"), types)
		want := expectation{}.expect(t, events...)
		if err := m.Enqueue(t.Context(), events...); err != nil {
			t.Fatal(err)
		}
		flush(t, m)
		for _, e := range events {
			scribble(e, types[0])
		}
		flush(t, m)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if len(f.List()) != 0 {
			t.Fatalf("%d events reported as failed: %+v", len(f.List()), f.List())
		}
		checkReceived(t, h, want)
	})
}

func testCallAfterClose(t *testing.T, h Harness) {
	in := h.New(t)
	c, ok := in.(opentrack.Closer)
	if !ok {
		t.Skip("the integration has no Close")
	}
	initialise(t, in)
	e := only(Events("beforeclose"), h.Types())[:1]
	if err := call(t.Context(), in, e); err != nil {
		t.Fatalf("delivery before Close: %v", err)
	}
	want := expectation{}.expect(t, e...)
	checkReceived(t, h, want)
	if err := c.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	after := only(Events("afterclose"), h.Types())
	for i := range after {
		if err := call(t.Context(), in, after[i:i+1]); err == nil {
			t.Errorf("%s call after Close returned nil", after[i].Fields().Type)
		}
	}
	checkReceived(t, h, want)
}

func testCloseTwice(t *testing.T, h Harness) {
	in := h.New(t)
	c, ok := in.(opentrack.Closer)
	if !ok {
		t.Skip("the integration has no Close")
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}
