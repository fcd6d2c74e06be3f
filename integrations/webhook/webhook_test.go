package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/webhook"
	"github.com/opentrackhq/opentrack/integrationtest"
	"github.com/opentrackhq/opentrack/internal/testkit"
	"github.com/opentrackhq/opentrack/internal/webhooktest"
	"github.com/opentrackhq/opentrack/spec"
)

type failures = testkit.Failures

// newManager runs in through a Manager with fast retries.
func newManager(t *testing.T, in opentrack.Integration) (*opentrack.Manager, *failures) {
	t.Helper()
	f := &failures{}
	m, err := opentrack.New(opentrack.Options{
		Integrations: []opentrack.Integration{in},
		OnFailure:    f.Add,
		Logger:       slog.New(slog.DiscardHandler),
		Delivery: opentrack.Delivery{
			Retry: opentrack.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, MaxAttempts: 5},
			Batch: opentrack.BatchOptions{Interval: 10 * time.Millisecond},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return m, f
}

func deliver(t *testing.T, m *opentrack.Manager, events ...spec.Event) {
	t.Helper()
	if err := m.Enqueue(t.Context(), events...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func newWebhook(t *testing.T, url string, opts *webhook.Options) *webhook.Integration {
	t.Helper()
	in, err := webhook.New(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// decoded is an event as a sender posts it, with a field Segment's spec
// does not know, decoded and enriched as the collector does.
func decoded(t *testing.T, id string) spec.Event {
	t.Helper()
	e, err := spec.Decode([]byte(`{"type":"track","messageId":"`+id+`","userId":"u1","event":"Order Completed",
		"properties":{"revenue":12.50,"note":"a, b; \"c\""},"customField":{"kept":true},"sentAt":"2026-01-02T03:04:05Z"}`), spec.TypeTrack)
	if err != nil {
		t.Fatal(err)
	}
	spec.Enrich(e, time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC), "192.0.2.1")
	return e
}

var userAgent = regexp.MustCompile(`^OpenTrack/\S+ \(\+https://github\.com/opentrackhq/opentrack\)$`)

// TestRequest checks one request as a receiver sees it: the enriched event
// as Segment JSON with unknown fields kept, byte for byte, and the headers.
func TestRequest(t *testing.T) {
	recv := webhooktest.New(&webhooktest.Options{SegmentSecret: segmentSecret})
	defer recv.Close()
	in := newWebhook(t, recv.URL()+"/segment?token=x", &webhook.Options{
		Secret: segmentSecret,
		Headers: http.Header{
			"authorization": {"Bearer abc, def; ghi"},
			"X-Tenant":      {"one", "two"},
		},
	})
	e := decoded(t, "msg-1")
	want, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := opentrack.Deliver(t.Context(), in, e); err != nil {
		t.Fatal(err)
	}
	got := recv.Accepted()
	if len(got) != 1 {
		t.Fatalf("%d requests accepted, want 1: %+v", len(got), recv.Received())
	}
	r := got[0]
	if r.Method != "POST" || r.Path != "/segment" || r.Batch {
		t.Errorf("%s %s (array %v), want POST /segment with an object", r.Method, r.Path, r.Batch)
	}
	if !bytes.Equal(r.Body, want) {
		t.Errorf("body\n%s\nwant e.MarshalJSON()\n%s", r.Body, want)
	}
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(body["customField"]) != "map[kept:true]" || body["receivedAt"] == nil || body["context"] == nil {
		t.Errorf("body lacks the unknown field or the enrichment: %s", r.Body)
	}
	h := r.Header
	mac := hmac.New(sha1.New, []byte(segmentSecret))
	mac.Write(r.Body)
	for name, want := range map[string]string{
		"Content-Type":    "application/json",
		"Idempotency-Key": "msg-1",
		"Authorization":   "Bearer abc, def; ghi",
		"X-Signature":     hex.EncodeToString(mac.Sum(nil)),
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if got := h.Values("X-Tenant"); fmt.Sprint(got) != "[one two]" {
		t.Errorf("X-Tenant: %q, want both values", got)
	}
	if !userAgent.MatchString(h.Get("User-Agent")) {
		t.Errorf("User-Agent %q, want OpenTrack/<version> (+https://github.com/opentrackhq/opentrack)", h.Get("User-Agent"))
	}
	for _, name := range []string{"Webhook-Id", "Webhook-Signature", "Webhook-Timestamp"} {
		if h.Get(name) != "" {
			t.Errorf("%s sent with Segment signing", name)
		}
	}
}

func TestMethodAndUserAgentOption(t *testing.T) {
	recv := webhooktest.New(nil)
	defer recv.Close()
	for _, method := range []string{"put", "PATCH", "Post"} {
		in := newWebhook(t, recv.URL(), &webhook.Options{Method: method, Headers: http.Header{"User-Agent": {"my-app/1.0"}}})
		if err := opentrack.Deliver(t.Context(), in, decoded(t, "m-"+method)); err != nil {
			t.Fatal(err)
		}
	}
	got := recv.Accepted()
	if len(got) != 3 {
		t.Fatalf("%d requests accepted, want 3", len(got))
	}
	for i, want := range []string{"PUT", "PATCH", "POST"} {
		if got[i].Method != want || got[i].Header.Get("User-Agent") != "my-app/1.0" || got[i].Header.Get("X-Signature") != "" {
			t.Errorf("request %d: %s, User-Agent %q, X-Signature %q; want %s, my-app/1.0, none (no secret)",
				i, got[i].Method, got[i].Header.Get("User-Agent"), got[i].Header.Get("X-Signature"), want)
		}
	}
}

// TestSignatures has a receiver check both signatures, Standard Webhooks'
// with that project's own library, and refuse a request signed with
// another secret.
func TestSignatures(t *testing.T) {
	cases := []struct {
		name    string
		recv    webhooktest.Options
		opts    webhook.Options
		refused bool
	}{
		{"segment", webhooktest.Options{SegmentSecret: segmentSecret}, webhook.Options{Secret: segmentSecret}, false},
		{"segment, batched", webhooktest.Options{SegmentSecret: segmentSecret}, webhook.Options{Secret: segmentSecret, BatchSize: 10}, false},
		{"standard", webhooktest.Options{StandardSecret: standardSecret}, webhook.Options{Signing: webhook.SigningStandard, Secret: standardSecret}, false},
		{"standard, batched", webhooktest.Options{StandardSecret: standardSecret}, webhook.Options{Signing: webhook.SigningStandard, Secret: standardSecret, BatchSize: 10}, false},
		{"segment, wrong secret", webhooktest.Options{SegmentSecret: segmentSecret}, webhook.Options{Secret: "other"}, true},
		{"standard, wrong secret", webhooktest.Options{StandardSecret: standardSecret}, webhook.Options{Signing: webhook.SigningStandard, Secret: "whsec_b3RoZXIgc2VjcmV0IGtleSBvZiAzMiBieXRlcyEh"}, true},
		{"standard, unsigned", webhooktest.Options{StandardSecret: standardSecret}, webhook.Options{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recv := webhooktest.New(&c.recv)
			defer recv.Close()
			in := newWebhook(t, recv.URL(), &c.opts)
			events := integrationtest.Events("sig")
			err := in.Batch(t.Context(), events)
			if c.refused {
				var be *opentrack.BatchError
				if !errors.As(err, &be) || len(be.Failed) != len(events) {
					t.Fatalf("err = %v, want every event to fail", err)
				}
				for i, err := range be.Failed {
					var se *webhook.StatusError
					if !opentrack.IsPermanent(err) || !errors.As(err, &se) || se.StatusCode != 401 {
						t.Errorf("event %d: %v, want a permanent 401", i, err)
					}
				}
				if len(recv.Accepted()) != 0 {
					t.Fatal("a request with a wrong signature was accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			reqs := recv.Accepted()
			want := 6 // one request per event
			if c.opts.BatchSize > 1 {
				want = 1
			}
			if len(reqs) != want {
				t.Fatalf("%d requests accepted, want %d", len(reqs), want)
			}
			if len(recv.Events()) != len(events) {
				t.Errorf("%d events arrived, want %d", len(recv.Events()), len(events))
			}
			for i, r := range reqs {
				id := r.Header.Get("Idempotency-Key")
				if c.opts.BatchSize <= 1 && id != events[i].Fields().MessageID {
					t.Errorf("Idempotency-Key %q, want the messageId %q", id, events[i].Fields().MessageID)
				}
				if c.opts.BatchSize > 1 && !regexp.MustCompile(`^batch_[0-9a-f]{32}$`).MatchString(id) {
					t.Errorf("Idempotency-Key %q, want a batch id", id)
				}
				if c.opts.Signing != webhook.SigningStandard {
					continue
				}
				if got := r.Header.Get("Webhook-Id"); got != id {
					t.Errorf("webhook-id %q, want the Idempotency-Key %q", got, id)
				}
				ts, err := strconv.ParseInt(r.Header.Get("Webhook-Timestamp"), 10, 64)
				if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
					t.Errorf("webhook-timestamp %q, want the time of sending", r.Header.Get("Webhook-Timestamp"))
				}
				// The same signature as the library's own signer.
				wh, err := standardwebhooks.NewWebhook(standardSecret)
				if err != nil {
					t.Fatal(err)
				}
				sig, err := wh.Sign(id, time.Unix(ts, 0), r.Body)
				if err != nil || r.Header.Get("Webhook-Signature") != sig {
					t.Errorf("webhook-signature %q, the library signs %q", r.Header.Get("Webhook-Signature"), sig)
				}
				if r.Header.Get("X-Signature") != "" {
					t.Error("X-Signature sent with Standard Webhooks signing")
				}
			}
		})
	}
}

// TestBatchID checks that a batch's id depends on its events alone: the
// same events in the same order give the same id, other events another.
func TestBatchID(t *testing.T) {
	recv := webhooktest.New(nil)
	defer recv.Close()
	in := newWebhook(t, recv.URL(), &webhook.Options{BatchSize: 10})
	a, b := integrationtest.Events("a"), integrationtest.Events("b")
	for _, batch := range [][]spec.Event{a, a, b, a[:5], {a[1], a[0], a[2], a[3], a[4], a[5]}} {
		if err := in.Batch(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, r := range recv.Accepted() {
		ids = append(ids, r.Header.Get("Idempotency-Key"))
	}
	if len(ids) != 5 || ids[0] != ids[1] {
		t.Fatalf("ids %q: the same batch twice must have the same id", ids)
	}
	seen := map[string]bool{}
	for _, id := range append([]string{ids[0]}, ids[2:]...) {
		if seen[id] {
			t.Errorf("ids %q: different batches share an id", ids)
		}
		seen[id] = true
	}
}

// TestBatchLimits checks how a batch is split: by count, by bytes, an
// oversized event alone, order kept.
func TestBatchLimits(t *testing.T) {
	var events []spec.Event
	for i := range 7 {
		events = append(events, integrationtest.Events(fmt.Sprintf("lim%d", i))[0])
	}
	big := integrationtest.Events("big")[0].(*spec.Track)
	big.Properties["blob"] = strings.Repeat("x", 3000)
	size := func(e spec.Event) int {
		b, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	one := size(events[0])
	cases := []struct {
		name   string
		opts   webhook.Options
		events []spec.Event
		want   []int // events per request
	}{
		{"by count", webhook.Options{BatchSize: 3}, events, []int{3, 3, 1}},
		{"by bytes", webhook.Options{BatchSize: 100, MaxBatchBytes: 2*one + 3}, events, []int{2, 2, 2, 1}},
		{"bytes one short", webhook.Options{BatchSize: 100, MaxBatchBytes: 2*one + 2}, events[:3], []int{1, 1, 1}},
		{"an event over the limit goes alone", webhook.Options{BatchSize: 100, MaxBatchBytes: 1000}, []spec.Event{events[0], big, events[1]}, []int{1, 1, 1}},
		{"per event", webhook.Options{}, events[:3], []int{1, 1, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recv := webhooktest.New(nil)
			defer recv.Close()
			in := newWebhook(t, recv.URL(), &c.opts)
			if err := in.Batch(t.Context(), c.events); err != nil {
				t.Fatal(err)
			}
			var got []int
			var order []string
			for _, r := range recv.Accepted() {
				got = append(got, len(r.Events))
				if c.opts.BatchSize > 1 && c.opts.MaxBatchBytes > 0 && len(r.Events) > 1 && len(r.Body) > c.opts.MaxBatchBytes {
					t.Errorf("a body of %d bytes, over MaxBatchBytes %d", len(r.Body), c.opts.MaxBatchBytes)
				}
				if r.Batch != (c.opts.BatchSize > 1) {
					t.Errorf("array %v with BatchSize %d", r.Batch, c.opts.BatchSize)
				}
				for _, raw := range r.Events {
					rec, err := integrationtest.RecordFromJSON(raw)
					if err != nil {
						t.Fatal(err)
					}
					order = append(order, rec.MessageID)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("events per request %v, want %v", got, c.want)
			}
			var want []string
			for _, e := range c.events {
				want = append(want, e.Fields().MessageID)
			}
			if fmt.Sprint(order) != fmt.Sprint(want) {
				t.Errorf("order %v, want %v", order, want)
			}
		})
	}
}

// TestDeliveryTuning: with BatchSize 1 the Manager hands events over one
// by one, at once; with more, in batches of up to BatchSize.
func TestDeliveryTuning(t *testing.T) {
	for _, c := range []struct {
		opts webhook.Options
		want opentrack.Delivery
	}{
		{webhook.Options{}, opentrack.Delivery{Batch: opentrack.BatchOptions{MaxEvents: 1}}},
		{webhook.Options{BatchSize: 50}, opentrack.Delivery{Batch: opentrack.BatchOptions{MaxEvents: 50, MaxBytes: webhook.DefaultMaxBatchBytes}}},
		{webhook.Options{BatchSize: 50, MaxBatchBytes: 9000}, opentrack.Delivery{Batch: opentrack.BatchOptions{MaxEvents: 50, MaxBytes: 9000}}},
	} {
		if got := newWebhook(t, "http://127.0.0.1:1", &c.opts).Delivery(); got != c.want {
			t.Errorf("%+v: Delivery() = %+v, want %+v", c.opts, got, c.want)
		}
	}
}

// TestRetriedUntilDelivered: a 503, then success, through the Manager.
func TestRetriedUntilDelivered(t *testing.T) {
	for _, batch := range []int{1, 10} {
		t.Run(fmt.Sprint("batch size ", batch), func(t *testing.T) {
			recv := webhooktest.New(&webhooktest.Options{SegmentSecret: segmentSecret})
			defer recv.Close()
			m, f := newManager(t, newWebhook(t, recv.URL(), &webhook.Options{Secret: segmentSecret, BatchSize: batch}))
			recv.FailNext(1, webhooktest.Response{Status: http.StatusServiceUnavailable})
			deliver(t, m, decoded(t, "retry-1"))
			if len(f.List()) != 0 {
				t.Fatalf("failures: %+v", f.List())
			}
			got := recv.Received()
			if len(got) != 2 || got[0].Status != 503 || got[1].Status != 200 {
				t.Fatalf("requests %+v, want a 503 then a 200", got)
			}
			if got[0].Header.Get("Idempotency-Key") != got[1].Header.Get("Idempotency-Key") {
				t.Errorf("the retry's Idempotency-Key %q differs from the first attempt's %q",
					got[1].Header.Get("Idempotency-Key"), got[0].Header.Get("Idempotency-Key"))
			}
			if s := m.Stats()[0]; s.Delivered != 1 || s.Retried != 1 || len(recv.Events()) != 1 {
				t.Errorf("Delivered %d, Retried %d, events received %d; want 1, 1, 1", s.Delivered, s.Retried, len(recv.Events()))
			}
		})
	}
}

// TestRetryAfterHonoured: a 429 asking for a second is retried no sooner,
// though the Manager's own backoff is a millisecond.
func TestRetryAfterHonoured(t *testing.T) {
	recv := webhooktest.New(nil)
	defer recv.Close()
	m, f := newManager(t, newWebhook(t, recv.URL(), nil))
	recv.FailNext(1, webhooktest.Response{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"1"}}})
	deliver(t, m, decoded(t, "ra-1"))
	if len(f.List()) != 0 {
		t.Fatalf("failures: %+v", f.List())
	}
	got := recv.Received()
	if len(got) != 2 || got[0].Status != 429 || got[1].Status != 200 {
		t.Fatalf("requests %+v, want a 429 then a 200", got)
	}
	if wait := got[1].At.Sub(got[0].At); wait < time.Second {
		t.Errorf("retried after %v, want at least the 1s Retry-After asked for", wait)
	}
}

// TestClientErrorIsPermanent: a 400 is reported to OnFailure with its
// status and the start of the answer, and not retried; in a batch, for
// every event of the request.
func TestClientErrorIsPermanent(t *testing.T) {
	for _, batch := range []int{1, 10} {
		t.Run(fmt.Sprint("batch size ", batch), func(t *testing.T) {
			recv := webhooktest.New(nil)
			defer recv.Close()
			in := newWebhook(t, recv.URL(), &webhook.Options{BatchSize: batch})
			answer := `{"error":"field userId: ` + strings.Repeat("long ", 200) + `"}`
			recv.FailNext(1, webhooktest.Response{Status: http.StatusBadRequest, Body: answer})
			if batch == 1 {
				// A direct call's error, as the Manager gets it.
				err := opentrack.Deliver(t.Context(), in, decoded(t, "direct"))
				var se *webhook.StatusError
				if !opentrack.IsPermanent(err) || !errors.As(err, &se) || se.StatusCode != 400 {
					t.Fatalf("err = %v, want a permanent *webhook.StatusError with 400", err)
				}
				recv.FailNext(1, webhooktest.Response{Status: http.StatusBadRequest, Body: answer})
			}
			m, f := newManager(t, in)
			events := []spec.Event{decoded(t, "bad-1")}
			if batch > 1 {
				events = integrationtest.Events("bad")
			}
			deliver(t, m, events...)
			fs := f.List()
			if len(fs) != len(events) {
				t.Fatalf("%d failures, want %d", len(fs), len(events))
			}
			for _, x := range fs {
				var se *webhook.StatusError
				if !errors.As(x.Err, &se) || se.StatusCode != 400 || !strings.HasPrefix(se.Body, `{"error":"field userId: long`) ||
					len(se.Body) > 512 || x.Attempts != 1 || !opentrack.IsPermanent(x.Err) {
					t.Errorf("failure %+v, want a permanent 400 with the start of the body, after 1 attempt", x)
				}
			}
			if s := m.Stats()[0]; s.Retried != 0 || s.Failed != uint64(len(events)) {
				t.Errorf("Retried %d, Failed %d; want 0, %d", s.Retried, s.Failed, len(events))
			}
			if n := len(recv.Received()); n != 1+map[bool]int{true: 1}[batch == 1] {
				t.Errorf("%d requests, want no retry", n)
			}
		})
	}
}

// TestHangingReceiverTimesOut: a receiver that does not answer within
// Timeout fails the call with a retryable error, and the Manager's retry
// delivers the event once.
func TestHangingReceiverTimesOut(t *testing.T) {
	recv := webhooktest.New(nil)
	defer recv.Close()
	in := newWebhook(t, recv.URL(), &webhook.Options{Timeout: 100 * time.Millisecond})

	recv.FailNext(1, webhooktest.Response{Status: 200, Delay: time.Minute})
	start := time.Now()
	err := opentrack.Deliver(t.Context(), in, decoded(t, "direct"))
	if err == nil || opentrack.IsPermanent(err) || !strings.Contains(err.Error(), "no answer within 100ms") {
		t.Fatalf("err = %v, want a retryable timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the call took %v with a 100ms timeout", d)
	}

	m, f := newManager(t, in)
	recv.FailNext(1, webhooktest.Response{Status: 200, Delay: time.Minute})
	deliver(t, m, decoded(t, "hang-1"))
	if len(f.List()) != 0 {
		t.Fatalf("failures: %+v", f.List())
	}
	if s := m.Stats()[0]; s.Delivered != 1 || s.Retried != 1 {
		t.Errorf("Delivered %d, Retried %d; want 1, 1", s.Delivered, s.Retried)
	}
	if got := recv.Events(); len(got) != 1 {
		t.Errorf("%d events accepted, want 1", len(got))
	}
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	recv := webhooktest.New(nil)
	url := recv.URL()
	recv.Close() // nothing listens there any more
	err := opentrack.Deliver(t.Context(), newWebhook(t, url, nil), decoded(t, "net"))
	if err == nil || opentrack.IsPermanent(err) || !strings.HasPrefix(err.Error(), "webhook: ") {
		t.Fatalf("err = %v, want a retryable webhook: error", err)
	}
}

// TestRedirects: a 307 or 308 on the webhook's own origin is followed with
// the body, signature and headers; a redirect to another host or port, or
// one that would turn the POST into a GET, is not, and nothing reaches the
// other host.
func TestRedirects(t *testing.T) {
	other := webhooktest.New(nil)
	defer other.Close()
	var target string
	recv := webhooktest.NewWithHandler(&webhooktest.Options{SegmentSecret: segmentSecret},
		func(w http.ResponseWriter, r *http.Request, next http.HandlerFunc) {
			if loc := r.URL.Query().Get("to"); loc != "" {
				code, _ := strconv.Atoi(r.URL.Query().Get("code"))
				w.Header().Set("Location", strings.ReplaceAll(loc, "SELF", target))
				w.WriteHeader(code)
				return
			}
			next(w, r)
		})
	defer recv.Close()
	target = recv.URL()
	localhost := strings.Replace(recv.URL(), "127.0.0.1", "localhost", 1)

	cases := []struct {
		name, to string
		code     int
		follow   bool
		client   *http.Client
	}{
		{"307 same origin", "SELF/moved", 307, true, nil},
		{"308 same origin, relative", "/moved", 308, true, nil},
		{"307 to another port", other.URL() + "/stolen", 307, false, nil},
		{"308 to another host name", localhost + "/stolen", 308, false, nil},
		{"302 same origin would drop the body", "SELF/moved", 302, false, nil},
		{"303 same origin would drop the body", "SELF/moved", 303, false, nil},
		{"307 to another port, with a permissive client", other.URL() + "/stolen", 307, false,
			&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, beforeOther := len(recv.Received()), len(other.Received())
			u := recv.URL() + "/hook?code=" + strconv.Itoa(c.code) + "&to=" + c.to
			in := newWebhook(t, u, &webhook.Options{Secret: segmentSecret, HTTPClient: c.client,
				Headers: http.Header{"Authorization": {"Bearer token"}}})
			err := opentrack.Deliver(t.Context(), in, decoded(t, "redirect"))
			got := recv.Received()[before:]
			if c.follow {
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 1 || got[0].Status != 200 || got[0].Path != "/moved" || got[0].Method != "POST" ||
					got[0].Header.Get("Authorization") != "Bearer token" || got[0].Header.Get("Idempotency-Key") != "redirect" {
					t.Fatalf("after the redirect: %+v, want the signed POST with its headers at /moved", got)
				}
				return
			}
			if !opentrack.IsPermanent(err) || !strings.Contains(err.Error(), "not followed") {
				t.Errorf("err = %v, want a permanent redirect not followed", err)
			}
			if len(got) != 0 {
				t.Errorf("the redirect was followed on the receiver: %+v", got)
			}
			if n := len(other.Received()) - beforeOther; n != 0 {
				t.Errorf("the other host got %d requests", n)
			}
		})
	}
}

func TestCallsAfterCloseFail(t *testing.T) {
	recv := webhooktest.New(nil)
	defer recv.Close()
	for _, batch := range []int{1, 5} {
		in := newWebhook(t, recv.URL(), &webhook.Options{BatchSize: batch})
		if err := in.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		for _, e := range integrationtest.Events("closed") {
			err := opentrack.Deliver(t.Context(), in, e)
			if !errors.Is(err, opentrack.ErrClosed) || !opentrack.IsPermanent(err) || strings.Count(err.Error(), "webhook:") != 1 {
				t.Errorf("after Close: %v, want a permanent webhook: ErrClosed", err)
			}
		}
		if err := in.Batch(t.Context(), integrationtest.Events("closed")); !errors.Is(err, opentrack.ErrClosed) {
			t.Errorf("Batch after Close: %v", err)
		}
	}
	if n := len(recv.Received()); n != 0 {
		t.Errorf("%d requests after Close", n)
	}
}

// unencodable is an event whose JSON cannot be written.
type unencodable struct{ spec.Track }

func (*unencodable) MarshalJSON() ([]byte, error) { return nil, errors.New("cannot encode") }

// TestPartialBatch: an event that cannot be encoded fails alone; and when
// a batch is split in requests, each request's outcome applies to its own
// events.
func TestPartialBatch(t *testing.T) {
	recv := webhooktest.New(nil)
	defer recv.Close()
	in := newWebhook(t, recv.URL(), &webhook.Options{BatchSize: 2})
	events := integrationtest.Events("part")
	events[2] = &unencodable{Track: spec.Track{Common: spec.Common{Type: spec.TypeTrack, MessageID: "bad"}}}
	recv.FailNext(1, webhooktest.Response{Status: 503}) // the first request: events 0 and 1
	err := in.Batch(t.Context(), events)
	var be *opentrack.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a *opentrack.BatchError", err)
	}
	// Requests: [0 1] failed 503, [3 4] ok, [5] ok; event 2 not encodable.
	if len(be.Failed) != 3 || be.Failed[0] == nil || be.Failed[1] == nil || be.Failed[2] == nil {
		t.Fatalf("failed %v, want events 0, 1 (the 503) and 2 (encoding)", be.Failed)
	}
	if opentrack.IsPermanent(be.Failed[0]) || !opentrack.IsPermanent(be.Failed[2]) {
		t.Errorf("the 503 must be retryable and the encoding error permanent: %v", be.Failed)
	}
	if got := len(recv.Events()); got != 3 {
		t.Errorf("%d events accepted, want 3", got)
	}
}

func TestCancelledDuringBatch(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var calls atomic.Int32
	recv := webhooktest.NewWithHandler(nil, func(w http.ResponseWriter, r *http.Request, next http.HandlerFunc) {
		if calls.Add(1) == 1 {
			next(w, r)
			return
		}
		// The call's context ends during the second request. (The
		// server notices the client going away once the body is read.)
		io.Copy(io.Discard, r.Body)
		cancel()
		<-r.Context().Done()
	})
	defer recv.Close()
	in := newWebhook(t, recv.URL(), &webhook.Options{BatchSize: 2})
	err := in.Batch(ctx, integrationtest.Events("cancel"))
	var be *opentrack.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 4 {
		t.Fatalf("err = %v, want a BatchError failing the 4 events after the first request", err)
	}
	for i := 2; i < 6; i++ {
		if e := be.Failed[i]; e == nil || opentrack.IsPermanent(e) || !errors.Is(e, context.Canceled) {
			t.Errorf("event %d: %v, want a retryable context.Canceled", i, e)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d requests, want none after the context ended", n)
	}
	if n := len(recv.Events()); n != 2 {
		t.Errorf("%d events accepted, want the first request's 2", n)
	}
}

// TestURLErrorHidesCredentials: a URL that does not parse is refused
// without quoting it, since it may carry a password.
func TestURLErrorHidesCredentials(t *testing.T) {
	_, err := webhook.New("https://user:s3cret@exa mple.com/%zz", nil)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("New = %v; want an error without the password", err)
	}
}
