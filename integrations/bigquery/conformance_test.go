package bigquery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/bigquery"
	"github.com/opentrackhq/opentrack/integrationtest"
	"github.com/opentrackhq/opentrack/internal/fakebigquery"
	"github.com/opentrackhq/opentrack/spec"
)

type conformanceHarness struct{ srv *fakebigquery.Server }

func (h *conformanceHarness) New(t *testing.T) opentrack.Integration {
	h.srv = fakebigquery.New(nil)
	t.Cleanup(h.srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	client, err := h.srv.NewClient(ctx, "proj")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	in, err := bigquery.New(client, "segment", &bigquery.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// perCall are the tables that hold one row per call, and the call.
var perCall = map[string]spec.Type{
	"tracks": spec.TypeTrack, "identifies": spec.TypeIdentify, "pages": spec.TypePage,
	"screens": spec.TypeScreen, "groups": spec.TypeGroup, "aliases": spec.TypeAlias,
}

// fixedPaths name the layout's columns in Segment's terms. uuid_ts and
// loaded_at are the loader's; event is the event's table name (event_text
// holds the event).
var fixedPaths = map[string]string{
	"id": "messageId", "user_id": "userId", "anonymous_id": "anonymousId",
	"received_at": "receivedAt", "sent_at": "sentAt", "original_timestamp": "originalTimestamp",
	"timestamp": "timestamp", "event_text": "event", "name": "name", "category": "category",
	"group_id": "groupId", "previous_id": "previousId",
	"uuid_ts": "", "loaded_at": "", "event": "",
}

// contextPaths name the context columns the suite's events have; context_*
// names cannot be read back in general (context_user_agent is
// context.userAgent, context_library_name context.library.name).
var contextPaths = map[string]string{"context_ip": "context.ip", "context_library_name": "context.library.name"}

// Received reads back the rows of the per-call tables, with a track's
// properties from its event's table, as Segment field paths.
func (h *conformanceHarness) Received(t *testing.T) []integrationtest.Record {
	var out []integrationtest.Record
	for table, typ := range perCall {
		// The columns that are properties or traits, for this call.
		user := "properties."
		if typ == spec.TypeIdentify || typ == spec.TypeGroup {
			user = "traits."
		}
		for _, r := range h.srv.Rows("proj", "segment", table) {
			vals := r.Values
			if typ == spec.TypeTrack {
				// The properties are in the event's table, in a row of
				// the same id.
				vals = h.eventRow(t, vals)
			}
			rec := integrationtest.Record{Type: typ, Fields: map[string]string{}}
			for col, v := range vals {
				path, fixed := fixedPaths[col]
				switch {
				case fixed && (typ == spec.TypePage || typ == spec.TypeScreen || col != "name" && col != "category"):
					// name and category are columns of pages and screens
					// only; elsewhere they are properties or traits.
				case strings.HasPrefix(col, "context_"):
					if path = contextPaths[col]; path == "" {
						t.Errorf("%s row %v: column %s has no path the harness knows", table, vals["id"], col)
						continue
					}
				default:
					path = user + col
				}
				if path != "" {
					rec.Fields[path] = text(v)
				}
			}
			rec.MessageID = rec.Fields["messageId"]
			out = append(out, rec)
		}
	}
	return out
}

// eventRow returns a tracks row's values joined with those of its row in
// the event's table, which holds the properties.
func (h *conformanceHarness) eventRow(t *testing.T, tracks map[string]any) map[string]any {
	table, _ := tracks["event"].(string)
	for _, r := range h.srv.Rows("proj", "segment", table) {
		if r.Values["id"] == tracks["id"] {
			for k, v := range tracks {
				if r.Values[k] != v {
					t.Errorf("track %v: %s is %v in tracks, %v in %s", tracks["id"], k, v, r.Values[k], table)
				}
			}
			return r.Values
		}
	}
	t.Errorf("track %v: no row in its event's table %q", tracks["id"], table)
	return tracks
}

// text is a stored value as the suite compares it: strings as they are,
// numbers in their JSON form, booleans true or false.
func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return fmt.Sprint(v)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (h *conformanceHarness) FailNext(t *testing.T, n int, permanent bool) bool {
	status := http.StatusServiceUnavailable
	if permanent {
		// A track writes two rows (tracks and its event table) in two
		// requests: fail both, or one of them lands.
		status, n = http.StatusBadRequest, 2*n
	}
	h.srv.AddFault(fakebigquery.Fault{Op: fakebigquery.InsertAll, Status: status, Times: n})
	return true
}

func (h *conformanceHarness) Types() []spec.Type {
	return []spec.Type{spec.TypeTrack, spec.TypeIdentify, spec.TypePage, spec.TypeScreen, spec.TypeGroup, spec.TypeAlias}
}

func TestConformance(t *testing.T) {
	integrationtest.Run(t, &conformanceHarness{})
}
