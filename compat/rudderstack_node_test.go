package compat

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
)

// RudderStack's Node SDK, @rudderstack/rudder-sdk-node 3.0.13, as its source
// reads (node_modules/@rudderstack/rudder-sdk-node/cjs/index.js):
//   - it posts every batch with axios to dataPlaneUrl + path, path
//     "/v1/batch" by default, with User-Agent "analytics-node/3.0.13";
//   - gzip is on by default: the body is a gzipped Buffer sent with
//     Content-Encoding: gzip, for which axios declares Content-Type
//     application/x-www-form-urlencoded; with gzip: false it is JSON,
//     declared application/json;
//   - the write key is the Basic-auth username (axios's auth option), with
//     an empty password;
//   - the body is {"batch": [...], "timestamp", "sentAt"}; each message
//     carries context.library {"name": "analytics-node", "version":
//     "3.0.13"}, channel "server", _metadata.nodeVersion, messageId (a UUID
//     unless given), originalTimestamp (the call's time unless given), sentAt,
//     and the caller's timestamp when given; identify copies its traits to
//     context.traits;
//   - the first call of a client is sent at once, the next ones at flushAt
//     (20) calls or after flushInterval (10 s), or by flush(), which resolves
//     once the request is answered;
//   - it reports a refusal through each call's callback (an Error whose
//     message is the status text, "Unauthorized"), by rejecting the flush's
//     promise (a flush it started by itself rejects with nothing awaiting
//     it), and by logging "Error: Unauthorized"; it retries only network
//     errors, 5xx and 429, so a 401 is sent once.

const rudderNodeVersion = "3.0.13"

var rudderNode = rudderSDK{name: "rudder-sdk-node", libraryName: "analytics-node", libraryVersion: rudderNodeVersion}

// rudderNodePhase is what send.js reports of one client.
type rudderNodePhase struct {
	Calls []struct {
		Call  string  `json:"call"`
		Error *string `json:"error"`
	} `json:"calls"`
	FlushErrors []string `json:"flushErrors"`
	Unhandled   []string `json:"unhandled"`
}

// TestRudderStackNode runs @rudderstack/rudder-sdk-node
// (testdata/rudder-node/send.js) against a collector that requires a write
// key, with the SDK's default options (gzip on) and with gzip off: the six
// calls without and with an explicit past timestamp with the right key, then
// the same with a wrong key.
func TestRudderStackNode(t *testing.T) {
	node := requireNode(t)
	dir := testdataDir(t, "rudder-node")
	npmInstall(t, dir)

	for _, tc := range []struct {
		name string
		gzip *bool // nil: the SDK's default
	}{
		{"default options", nil},
		{"gzip off", new(false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const key, badKey = "wk-rudder-node", "not-the-key"
			c := newCollector(t, opentrack.HandlerOptions{WriteKeys: []string{key}})
			calls := rudderCalls("rs-node")
			badCalls := rudderCalls("rs-node-bad")
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			out, err := runNode(t, ctx, node, dir, "send.js", map[string]any{
				"dataPlaneUrl": c.URL,
				"writeKey":     key,
				"badWriteKey":  badKey,
				"gzip":         tc.gzip,
				"calls":        calls,
				"badCalls":     badCalls,
			})
			if err != nil {
				t.Fatalf("%v\nstdout:\n%s", err, tail(out, 8000))
			}
			var report struct {
				NodeVersion string          `json:"nodeVersion"`
				Good        rudderNodePhase `json:"good"`
				Bad         rudderNodePhase `json:"bad"`
			}
			if err := json.Unmarshal(out, &report); err != nil {
				t.Fatalf("send.js output: %v\n%s", err, out)
			}

			// What the SDK reported.
			if len(report.Good.Calls) != len(calls) {
				t.Fatalf("send.js reported %d calls with the right key, want %d", len(report.Good.Calls), len(calls))
			}
			for i, r := range report.Good.Calls {
				wantEqual(t, fmt.Sprintf("call %d", i), r.Call, calls[i].Call)
				if r.Error != nil {
					t.Errorf("the SDK reported %s failed: %s", r.Call, *r.Error)
				}
			}
			if len(report.Good.FlushErrors) != 0 || len(report.Good.Unhandled) != 0 {
				t.Errorf("flushes with the right key failed: %v, %v", report.Good.FlushErrors, report.Good.Unhandled)
			}
			if len(report.Bad.Calls) != len(badCalls) {
				t.Fatalf("send.js reported %d calls with a wrong key, want %d", len(report.Bad.Calls), len(badCalls))
			}
			for _, r := range report.Bad.Calls {
				switch {
				case r.Error == nil:
					t.Errorf("%s with a wrong key: the SDK's callback reported it delivered, want the error Unauthorized", r.Call)
				case *r.Error != "Unauthorized":
					t.Errorf("%s with a wrong key: the SDK's callback got error %q, want Unauthorized", r.Call, *r.Error)
				}
			}
			// The SDK sends the first call at once, by itself, and its
			// rejection is not awaited; flush() rejects for the others.
			wantEqual(t, "rejections of the flush the SDK started", strings.Join(report.Bad.Unhandled, ","), "Unauthorized")
			if len(report.Bad.FlushErrors) == 0 {
				t.Error("flush() with a wrong key never rejected")
			}
			for _, e := range report.Bad.FlushErrors {
				wantEqual(t, "flush() rejection with a wrong key", e, "Unauthorized")
			}

			// On the wire: every request a POST of a batch, authenticated,
			// gzipped unless turned off; the right key accepted, the wrong
			// one refused and not retried.
			wantEncoding, wantType := "gzip", "application/x-www-form-urlencoded"
			if tc.gzip != nil && !*tc.gzip {
				wantEncoding, wantType = "", "application/json"
			}
			var good, bad []wireRequest
			for i, r := range c.wire.requests() {
				what := fmt.Sprintf("request %d", i+1)
				wantEqual(t, what+" method", r.Method, http.MethodPost)
				wantEqual(t, what+" path", r.Path, "/v1/batch")
				wantEqual(t, what+" Content-Encoding", r.Header.Get("Content-Encoding"), wantEncoding)
				wantEqual(t, what+" Content-Type", r.Header.Get("Content-Type"), wantType)
				wantEqual(t, what+" User-Agent", r.Header.Get("User-Agent"), "analytics-node/"+rudderNodeVersion)
				switch auth := r.Header.Get("Authorization"); auth {
				case "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":")):
					good = append(good, r)
					wantEqual(t, what+" status with the right key", r.Status, http.StatusOK)
				case "Basic " + base64.StdEncoding.EncodeToString([]byte(badKey+":")):
					bad = append(bad, r)
					if r.Status != http.StatusUnauthorized || !strings.Contains(string(r.RespBody), "Invalid write key") {
						t.Errorf("%s with a wrong key answered %d %s, want 401 Invalid write key", what, r.Status, r.RespBody)
					}
				default:
					t.Errorf("%s: Authorization %q", what, auth)
				}
			}
			if len(good) == 0 {
				t.Fatal("the collector saw no batch with the right key")
			}
			// The first call alone, then the rest: two requests, one each.
			if len(bad) != 2 {
				t.Errorf("the collector saw %d batches with a wrong key, want 2", len(bad))
			}
			wire := wireEvents(t, good)
			if sentBad := wireEvents(t, bad); len(sentBad) != len(badCalls) {
				t.Errorf("the SDK sent %d events with a wrong key, want %d", len(sentBad), len(badCalls))
			}

			// At the sink: only the calls with the right key, as made.
			got := c.delivered(t)
			events := checkRudderDelivery(t, rudderNode, calls, got, wire)
			st := c.m.Stats()[0]
			wantEqual(t, "Stats.Accepted", st.Accepted, uint64(len(calls)))
			wantEqual(t, "Stats.Delivered", st.Delivered, uint64(len(calls)))
			for i, e := range events {
				if e.MessageID == "" {
					continue
				}
				what := "rudder-sdk-node " + calls[i].Call + " " + e.MessageID
				// The SDK's own fields are kept, not stripped.
				wantEqual(t, what+" _metadata.nodeVersion", str(e.All, "_metadata.nodeVersion"), report.NodeVersion)
				if calls[i].Call == "identify" {
					wantJSON(t, what+" context.traits", e.Context["traits"], calls[i].Traits)
				}
			}
		})
	}
}
