package compat

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	rudder "github.com/rudderlabs/analytics-go/v4"

	"github.com/opentrackhq/opentrack"
)

// RudderStack's Go SDK, github.com/rudderlabs/analytics-go/v4 v4.2.3, as its
// source reads (analytics.go, config.go, message.go):
//   - it posts every batch to <DataPlaneUrl>/v1/batch, gzipped
//     (Content-Encoding: gzip) unless Config.DisableGzip, with
//     Content-Type: application/json, User-Agent "analytics-go (version:
//     4.2.3)" and RS-targetNode/RS-nodeCount/RS-userAgent headers for
//     RudderStack's proxy; only a 451 makes it GET /cluster-info;
//   - the write key is the Basic-auth username, with an empty password;
//   - the body is {"batch": [...]}: each message carries its own
//     context.library {"name": "analytics-go", "version": "4.2.3"},
//     channel "server", messageId (a UUID unless given), originalTimestamp
//     (the Enqueue time unless given) and sentAt; there is no timestamp field,
//     so a caller's explicit time travels as originalTimestamp. Track, Page,
//     Screen and Group get a random anonymousId when none is given;
//   - Close sends what is queued and returns once every request is done;
//   - it reports each message through Config.Callback (Success, or Failure
//     with an error such as "401 401 Unauthorized") and logs the answer's
//     body through Config.Logger. It tries a batch ten times on any status
//     >= 300 but 451, 401 included, with jittered backoff from 100 ms
//     doubling up to 30 s; Close cuts the retries short and reports the
//     messages failed.

const rudderGoVersion = "4.2.3"

var rudderGo = rudderSDK{name: "analytics-go/v4", libraryName: "analytics-go", libraryVersion: rudderGoVersion}

// rudderGoCallback collects the SDK's delivery reports by messageId.
type rudderGoCallback struct {
	mu     sync.Mutex
	ok     []string
	failed map[string]error
}

func (c *rudderGoCallback) Success(m rudder.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ok = append(c.ok, rudderGoMessageID(m))
}

func (c *rudderGoCallback) Failure(m rudder.Message, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed == nil {
		c.failed = map[string]error{}
	}
	c.failed[rudderGoMessageID(m)] = err
}

func (c *rudderGoCallback) results() (ok []string, failed map[string]error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	failed = make(map[string]error, len(c.failed))
	for k, v := range c.failed {
		failed[k] = v
	}
	return slices.Clone(c.ok), failed
}

func rudderGoMessageID(m rudder.Message) string {
	switch m := m.(type) {
	case rudder.Track:
		return m.MessageId
	case rudder.Identify:
		return m.MessageId
	case rudder.Page:
		return m.MessageId
	case rudder.Screen:
		return m.MessageId
	case rudder.Group:
		return m.MessageId
	case rudder.Alias:
		return m.MessageId
	}
	return fmt.Sprintf("<%T>", m)
}

// rudderGoLogger sends the SDK's log to the test log and keeps it.
type rudderGoLogger struct {
	t *testing.T

	mu    sync.Mutex
	lines []string
}

func (l *rudderGoLogger) Logf(format string, args ...any) { l.add("analytics-go/v4: "+format, args) }
func (l *rudderGoLogger) Errorf(format string, args ...any) {
	l.add("analytics-go/v4 error: "+format, args)
}

func (l *rudderGoLogger) add(format string, args []any) {
	line := fmt.Sprintf(format, args...)
	l.t.Log(line)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

func (l *rudderGoLogger) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// rudderGoMessage builds the SDK's message for c.
func rudderGoMessage(t *testing.T, c rudderCall) rudder.Message {
	t.Helper()
	var ts time.Time
	if c.Timestamp != "" {
		var err error
		if ts, err = time.Parse(time.RFC3339, c.Timestamp); err != nil {
			t.Fatal(err)
		}
	}
	switch c.Call {
	case "track":
		return rudder.Track{MessageId: c.MessageID, UserId: c.UserID, AnonymousId: c.AnonymousID, Event: c.Event, Properties: c.Properties, OriginalTimestamp: ts}
	case "identify":
		return rudder.Identify{MessageId: c.MessageID, UserId: c.UserID, AnonymousId: c.AnonymousID, Traits: c.Traits, OriginalTimestamp: ts}
	case "page":
		return rudder.Page{MessageId: c.MessageID, UserId: c.UserID, AnonymousId: c.AnonymousID, Name: c.Name, Properties: c.Properties, OriginalTimestamp: ts}
	case "screen":
		return rudder.Screen{MessageId: c.MessageID, UserId: c.UserID, AnonymousId: c.AnonymousID, Name: c.Name, Properties: c.Properties, OriginalTimestamp: ts}
	case "group":
		return rudder.Group{MessageId: c.MessageID, UserId: c.UserID, AnonymousId: c.AnonymousID, GroupId: c.GroupID, Traits: c.Traits, OriginalTimestamp: ts}
	case "alias":
		return rudder.Alias{MessageId: c.MessageID, UserId: c.UserID, PreviousId: c.PreviousID, OriginalTimestamp: ts}
	}
	t.Fatalf("unknown call %q", c.Call)
	return nil
}

// TestRudderStackGo sends the six calls, without and with an explicit past
// time, through RudderStack's Go SDK with its default options (gzip on),
// then with gzip off, and checks each event field by field where it is
// stored.
//
// The SDK has no timestamp field: the explicit time is its
// originalTimestamp, and sentAt is the time of sending. The collector's
// clock correction, receivedAt - (sentAt - originalTimestamp), is skipped
// when sentAt is more than spec.MaxSendDelay after the sender's time, so
// rudderPast (years back) is stored exactly as given.
func TestRudderStackGo(t *testing.T) {
	for _, tc := range []struct {
		name        string
		disableGzip bool
	}{
		{"default options", false},
		{"gzip off", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "wk-rudder-go"
			c := newCollector(t, opentrack.HandlerOptions{WriteKeys: []string{key}})
			calls := rudderCalls("rs-go")
			cb, logger := sendRudderGo(t, c.URL, key, tc.disableGzip, calls)
			ok, failed := cb.results()
			if len(failed) != 0 || len(ok) != len(calls) {
				t.Fatalf("the SDK reported %d delivered, %d failed (%v); want %d delivered\nlog:\n%s", len(ok), len(failed), failed, len(calls), logger.text())
			}

			// On the wire.
			wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
			wantEncoding := "gzip"
			if tc.disableGzip {
				wantEncoding = ""
			}
			reqs := c.wire.requests()
			if len(reqs) == 0 {
				t.Fatal("the collector saw no request")
			}
			for i, r := range reqs {
				what := fmt.Sprintf("request %d", i+1)
				wantEqual(t, what+" method", r.Method, http.MethodPost)
				wantEqual(t, what+" path", r.Path, "/v1/batch")
				wantEqual(t, what+" status", r.Status, http.StatusOK)
				wantEqual(t, what+" Authorization", r.Header.Get("Authorization"), wantAuth)
				wantEqual(t, what+" Content-Encoding", r.Header.Get("Content-Encoding"), wantEncoding)
				wantEqual(t, what+" Content-Type", r.Header.Get("Content-Type"), "application/json")
				wantEqual(t, what+" User-Agent", r.Header.Get("User-Agent"), "analytics-go (version: "+rudderGoVersion+")")
			}
			wire := wireEvents(t, reqs)

			// At the sink.
			got := c.delivered(t)
			events := checkRudderDelivery(t, rudderGo, calls, got, wire)
			for _, id := range ok {
				if _, found := got[id]; !found {
					t.Errorf("message %s, reported delivered by the SDK, was not stored", id)
				}
			}
			st := c.m.Stats()[0]
			wantEqual(t, "Stats.Accepted", st.Accepted, uint64(len(calls)))
			wantEqual(t, "Stats.Delivered", st.Delivered, uint64(len(calls)))

			// The SDK fills in an anonymousId for a screen without one.
			for i, call := range calls {
				if call.Call == "screen" && !uuidPattern.MatchString(events[i].AnonymousID) {
					t.Errorf("screen %s anonymousId = %q, want the UUID analytics-go generates", events[i].MessageID, events[i].AnonymousID)
				}
			}
		})
	}
}

// sendRudderGo sends calls through RudderStack's Go SDK to the collector at
// url with write key key, and closes the client: Close sends what is queued
// and returns when the SDK has heard back. It returns what the SDK reported
// and logged.
func sendRudderGo(t *testing.T, url, key string, disableGzip bool, calls []rudderCall) (*rudderGoCallback, *rudderGoLogger) {
	t.Helper()
	cb := &rudderGoCallback{}
	logger := &rudderGoLogger{t: t}
	client, err := rudder.NewWithConfig(key, rudder.Config{
		DataPlaneUrl: url,
		DisableGzip:  disableGzip,
		Callback:     cb,
		Logger:       logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range calls {
		if err := client.Enqueue(rudderGoMessage(t, call)); err != nil {
			t.Fatalf("Enqueue %s: %v", call.Call, err)
		}
	}
	if err := client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return cb, logger
}

// TestRudderStackGoWrongKey sends with a write key the collector does not
// accept, with the SDK's default options: the SDK must report every message
// failed with the 401, log the collector's answer, and nothing may be
// stored.
func TestRudderStackGoWrongKey(t *testing.T) {
	c := newCollector(t, opentrack.HandlerOptions{WriteKeys: []string{"wk-rudder-go"}})
	calls := rudderCalls("rs-go-bad")
	// When the batch is refused, Close ends the SDK's retries at once and
	// reports the messages failed.
	cb, logger := sendRudderGo(t, c.URL, "not-the-key", false, calls)
	ok, failed := cb.results()
	if len(ok) != 0 {
		t.Errorf("the SDK reported %v delivered with a wrong key", ok)
	}
	if len(failed) != len(calls) {
		t.Errorf("the SDK reported %d messages failed, want %d", len(failed), len(calls))
	}
	for id, err := range failed {
		if !strings.Contains(err.Error(), "401") {
			t.Errorf("Failure for %s: %v, want a 401", id, err)
		}
	}
	if log := logger.text(); !strings.Contains(log, "401") || !strings.Contains(log, "Invalid write key") {
		t.Errorf("the SDK's log does not show the collector's 401 answer:\n%s", log)
	}

	posts := c.posts()
	if len(posts) != 1 {
		t.Errorf("collector saw %d POSTs, want 1 (Close ends the SDK's retries)", len(posts))
	}
	for i, p := range posts {
		if user, _ := p.basicUser(); user != "not-the-key" {
			t.Errorf("attempt %d: Basic-auth user %q, want not-the-key", i+1, user)
		}
		if p.Status != http.StatusUnauthorized || !strings.Contains(string(p.RespBody), "Invalid write key") {
			t.Errorf("attempt %d answered %d %s, want 401 Invalid write key", i+1, p.Status, p.RespBody)
		}
	}
	if got := c.delivered(t); len(got) != 0 {
		t.Errorf("integration received %d events sent with a wrong key", len(got))
	}
	wantEqual(t, "Stats.Accepted", c.m.Stats()[0].Accepted, uint64(0))
}
