package compat

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack/spec"
)

// What the RudderStack SDK tests (rudderstack_go_test.go,
// rudderstack_node_test.go) share: the calls both SDKs make, and the checks
// of what the collector stored against what was asked for and what the SDK
// put on the wire.

// rudderPast is the explicit time given to the backfilled calls. It is more
// than spec.MaxSendDelay before any run of the tests, which matters for the
// Go SDK only: see TestRudderStackGo.
var rudderPast = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// rudderCall is one SDK call, in the shape send.js takes it (unset fields
// are left out of the SDK's argument).
type rudderCall struct {
	Call        string         `json:"call"`
	MessageID   string         `json:"messageId,omitempty"`
	UserID      string         `json:"userId,omitempty"`
	AnonymousID string         `json:"anonymousId,omitempty"`
	Event       string         `json:"event,omitempty"`
	Name        string         `json:"name,omitempty"`
	GroupID     string         `json:"groupId,omitempty"`
	PreviousID  string         `json:"previousId,omitempty"`
	Properties  map[string]any `json:"properties,omitempty"`
	Traits      map[string]any `json:"traits,omitempty"`
	// Timestamp, when set, is the explicit time of the event (RFC 3339).
	Timestamp string `json:"timestamp,omitempty"`
}

// rudderProperties and rudderTraits hold what JSON can carry that an SDK or
// a decoder could lose: null, booleans, nested objects, arrays (of mixed
// items, and empty), numbers, non-ASCII text in values and keys.
func rudderProperties() map[string]any {
	return map[string]any{
		"revenue": 42.5,
		"count":   3,
		"plan":    "Zoë 日本",
		"名前":      "Zoë 🚀",
		"coupon":  nil,
		"trial":   false,
		"paid":    true,
		"items":   []any{"a", 2, map[string]any{"sku": "s-1", "tags": []any{"x", nil}}},
		"empty":   []any{},
		"address": map[string]any{
			"city": "Zürich",
			"geo":  map[string]any{"lat": 47.37, "lon": 8.54},
			"note": nil,
		},
	}
}

func rudderTraits() map[string]any {
	return map[string]any{
		"email":    "zoe@example.com",
		"name":     "Zoë 日本",
		"age":      36,
		"vip":      true,
		"churned":  false,
		"nickname": nil,
		"tags":     []any{"beta", "日本"},
		"address":  map[string]any{"city": "Zürich", "zip": "8001", "floor": nil},
	}
}

// rudderCalls returns the twelve calls each SDK makes: the six calls with no
// time given (the SDK stamps the call time, and generates the messageId),
// then the six again with rudderPast as their explicit time and a messageId
// of the caller's, prefix-<call>-past.
func rudderCalls(prefix string) []rudderCall {
	user, anon := prefix+"-user", prefix+"-anon"
	base := []rudderCall{
		{Call: "track", UserID: user, AnonymousID: anon, Event: "Order Completed", Properties: rudderProperties()},
		{Call: "identify", UserID: user, Traits: rudderTraits()},
		{Call: "page", AnonymousID: anon, Name: "Prices – 日本", Properties: map[string]any{"path": "/prices", "title": "Zoë 日本", "ref": nil}},
		{Call: "screen", UserID: user, Name: "Home", Properties: map[string]any{"tab": "feed", "dark": true}},
		{Call: "group", UserID: user, AnonymousID: anon, GroupID: "acme-42", Traits: map[string]any{"name": "Acme Zoë", "employees": 12, "plan": nil, "public": false}},
		{Call: "alias", UserID: user, PreviousID: anon},
	}
	calls := slices.Clone(base)
	for _, c := range base {
		c.MessageID = prefix + "-" + c.Call + "-past"
		c.Timestamp = rudderPast.Format(time.RFC3339)
		calls = append(calls, c)
	}
	return calls
}

// rudderSDK describes how an SDK shows itself on the wire.
type rudderSDK struct {
	name           string // for messages
	libraryName    string // context.library.name
	libraryVersion string // context.library.version
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// wireEvents decodes the batch bodies of posts, gunzipping those sent with
// Content-Encoding: gzip, and returns their events by messageId. It fails
// the test on a body it cannot read, an event without messageId, or one
// sent twice.
func wireEvents(t *testing.T, posts []wireRequest) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for i, p := range posts {
		body := p.Body
		if strings.EqualFold(p.Header.Get("Content-Encoding"), "gzip") {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("POST %d: gzip body: %v", i+1, err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatalf("POST %d: gzip body: %v", i+1, err)
			}
		}
		var b struct {
			Batch []map[string]any `json:"batch"`
		}
		if err := decodeJSON(body, &b); err != nil {
			t.Fatalf("POST %d: batch body: %v\n%s", i+1, err, tail(body, 2000))
		}
		for _, e := range b.Batch {
			id := str(e, "messageId")
			if id == "" {
				t.Errorf("POST %d: event without messageId on the wire: %v", i+1, e)
				continue
			}
			if _, dup := out[id]; dup {
				t.Errorf("event %s sent twice", id)
			}
			out[id] = e
		}
	}
	return out
}

// canonJSON returns v as JSON with object keys sorted and numbers as
// written, so that two values compare equal exactly when they are the same
// JSON value.
func canonJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %v: %v", v, err)
	}
	var n any
	if err := decodeJSON(b, &n); err != nil {
		t.Fatal(err)
	}
	b, err = json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantJSON checks that got and want are the same JSON value.
func wantJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	if g, w := canonJSON(t, got), canonJSON(t, want); g != w {
		t.Errorf("%s = %s, want %s", what, g, w)
	}
}

// wireTime reads an RFC 3339 time from a wire event.
func wireTime(t *testing.T, e map[string]any, field string) time.Time {
	t.Helper()
	s := str(e, field)
	if s == "" {
		return time.Time{}
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Errorf("wire %s %q: %v", field, s, err)
	}
	return ts
}

// checkRudderDelivery checks that the collector delivered exactly the calls
// made, each as asked and as the SDK sent it, and returns the delivered
// events in the order of calls.
//
// A call with a messageId is found by it; one without is the only event of
// its type whose messageId the caller did not choose, and must carry a UUID
// the SDK generated.
//
// It is not a test helper, so that a failure names the check that failed.
func checkRudderDelivery(t *testing.T, sdk rudderSDK, calls []rudderCall, got map[string]received, wire map[string]map[string]any) []received {
	if len(got) != len(calls) {
		t.Errorf("integration received %d events, want %d", len(got), len(calls))
	}
	if len(wire) != len(calls) {
		t.Errorf("%s put %d events on the wire, want %d", sdk.name, len(wire), len(calls))
	}
	chosen := map[string]bool{}
	for _, c := range calls {
		if c.MessageID != "" {
			chosen[c.MessageID] = true
		}
	}
	generated := map[string]received{} // by type
	for _, id := range slices.Sorted(maps.Keys(got)) {
		e := got[id]
		if _, ok := wire[id]; !ok {
			t.Errorf("integration received %s %s, which %s did not send", e.Type, id, sdk.name)
		}
		if chosen[id] {
			continue
		}
		if prev, dup := generated[string(e.Type)]; dup {
			t.Errorf("two %s events with generated messageIds: %s and %s", e.Type, prev.MessageID, id)
		}
		generated[string(e.Type)] = e
	}

	out := make([]received, 0, len(calls))
	for _, c := range calls {
		what := sdk.name + " " + c.Call
		var e received
		var ok bool
		if c.MessageID != "" {
			what += " " + c.MessageID
			e, ok = got[c.MessageID]
		} else {
			e, ok = generated[c.Call]
			if ok && !uuidPattern.MatchString(e.MessageID) {
				t.Errorf("%s: messageId %q is not a UUID generated by the SDK", what, e.MessageID)
			}
		}
		if !ok {
			t.Errorf("%s: not delivered", what)
			out = append(out, received{})
			continue
		}
		out = append(out, e)
		sent := wire[e.MessageID]

		// Ids and names, as asked.
		wantEqual(t, what+" type", string(e.Type), c.Call)
		wantEqual(t, what+" userId", e.UserID, c.UserID)
		if c.AnonymousID != "" {
			wantEqual(t, what+" anonymousId", e.AnonymousID, c.AnonymousID)
		}
		// An SDK may fill in an anonymousId (analytics-go does); it must
		// arrive as sent.
		wantEqual(t, what+" anonymousId as sent", e.AnonymousID, str(sent, "anonymousId"))
		wantEqual(t, what+" event", e.Event, c.Event)
		wantEqual(t, what+" name", e.Name, c.Name)
		wantEqual(t, what+" groupId", e.GroupID, c.GroupID)
		wantEqual(t, what+" previousId", e.PreviousID, c.PreviousID)

		// Properties and traits, value for value.
		if c.Properties != nil {
			wantJSON(t, what+" properties", e.Properties, c.Properties)
		} else if len(e.Properties) != 0 {
			t.Errorf("%s properties = %v, want none", what, e.Properties)
		}
		if c.Traits != nil {
			wantJSON(t, what+" traits", e.Traits, c.Traits)
		} else if len(e.Traits) != 0 {
			t.Errorf("%s traits = %v, want none", what, e.Traits)
		}

		// Context: the SDK's library, everything the SDK sent in it, and
		// the client's address added.
		wantJSON(t, what+" context.library", lookup(e.Context, "library"), map[string]any{"name": sdk.libraryName, "version": sdk.libraryVersion})
		wantEqual(t, what+" context.ip", str(e.Context, "ip"), "127.0.0.1")
		sentContext, _ := sent["context"].(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(sentContext)) {
			wantJSON(t, what+" context."+k, e.Context[k], sentContext[k])
		}
		// RudderStack's own top-level fields are kept.
		wantEqual(t, what+" channel", str(e.All, "channel"), "server")
		wantEqual(t, what+" writeKey", e.WriteKey, "")

		// Times. originalTimestamp is whatever the SDK sent.
		sentOrig := wireTime(t, sent, "originalTimestamp")
		if sentOrig.IsZero() {
			t.Errorf("%s: the SDK sent no originalTimestamp", what)
		}
		if !e.OriginalTimestamp.Equal(sentOrig) {
			t.Errorf("%s originalTimestamp = %s, want %s as sent", what, e.OriginalTimestamp.Format(time.RFC3339Nano), sentOrig.Format(time.RFC3339Nano))
		}
		if e.SentAt.IsZero() || e.ReceivedAt.IsZero() {
			t.Errorf("%s: sentAt %s, receivedAt %s; want both set", what, e.SentAt, e.ReceivedAt)
		}
		if c.Timestamp != "" {
			// The explicit time stands, to the nanosecond.
			if !e.Timestamp.Equal(rudderPast) {
				t.Errorf("%s timestamp = %s, want exactly the given %s", what, e.Timestamp.Format(time.RFC3339Nano), rudderPast.Format(time.RFC3339))
			}
			continue
		}
		// No time given: the SDK stamped the call time, and the collector
		// corrected it for the device's clock with sentAt, as Segment's
		// servers do. With one clock on both sides, the result lies between
		// the call and the arrival.
		if sentTS := str(sent, "timestamp"); sentTS != "" {
			t.Errorf("%s: the SDK sent timestamp %q for a call without one", what, sentTS)
		}
		wantNear(t, what+" originalTimestamp", e.OriginalTimestamp, e.ReceivedAt, time.Minute)
		if want := e.ReceivedAt.Add(-e.SentAt.Sub(e.OriginalTimestamp)); !e.Timestamp.Equal(want) {
			t.Errorf("%s timestamp = %s, want receivedAt - (sentAt - originalTimestamp) = %s", what, e.Timestamp.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
		}
		if e.Timestamp.Before(e.OriginalTimestamp) || e.Timestamp.After(e.ReceivedAt) {
			t.Errorf("%s timestamp = %s, want between the call (%s) and its arrival (%s)", what, e.Timestamp.Format(time.RFC3339Nano), e.OriginalTimestamp.Format(time.RFC3339Nano), e.ReceivedAt.Format(time.RFC3339Nano))
		}
	}
	for _, typ := range []spec.Type{spec.TypeTrack, spec.TypeIdentify, spec.TypePage, spec.TypeScreen, spec.TypeGroup, spec.TypeAlias} {
		if _, ok := generated[string(typ)]; !ok {
			t.Errorf("%s: no %s event without an explicit time was delivered", sdk.name, typ)
		}
	}
	return out
}
