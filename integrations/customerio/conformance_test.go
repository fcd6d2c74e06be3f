package customerio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/customerio"
	"github.com/opentrackhq/opentrack/integrationtest"
	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
	"github.com/opentrackhq/opentrack/spec"
)

// conformanceHarness runs the conformance suite against the Track API
// stand-in. Received reads each call the stand-in accepted back as the
// Segment event that maps to it, in Segment's field paths, by the inverse of
// the mapping:
//
//	PUT  /api/v1/customers/{id}         identify: userId = id, traits.<k> = attributes,
//	                                    anonymousId = attributes.anonymous_id
//	POST /api/v1/customers/{id}/events  track (event = name), page or screen (by type):
//	POST /api/v1/events                 userId = id or anonymousId = anonymous_id,
//	                                    properties.<k> = data, timestamp = timestamp
//	POST /api/v2/entity                 group: groupId = object_id, traits.<k> = attributes,
//	                                    userId or anonymousId = the related person
//	POST /api/v1/merge_customers        alias: userId = primary, previousId = secondary
//
// A page's name on the wire is its properties.url and a screen's its name;
// a created_at attribute (a converted createdAt) is not read back. The
// suite's events have a userId and whole-second timestamps, as the inverse
// assumes.
//
// Pairing with messageIds: track, page and screen calls carry an "id", the
// ULID the integration derives from the messageId, which is one-way.
// Identify, group and alias calls carry no messageId at all. So the harness
// hands the integration to the suite wrapped in a pass-through that notes,
// for each event it is handed, the messageId under the key the wire will
// carry: the derived event id, the identified person, the group and its
// person, the two merged people. Received pairs each accepted call with a
// messageId noted under its key; events of the suite that differ only in
// their messageId share a key, and are paired in the order they were handed
// over. A call the integration sent that no handed event explains (a
// duplicate, or an event kept and sent after its call returned) gets no
// messageId, and the suite reports it.
type conformanceHarness struct {
	srv *fakecustomerio.Server

	mu     sync.Mutex
	handed map[string][]string // wire key → messageIds, first handed first
	noted  map[[2]string]bool  // {key, messageId} already in handed
}

func (h *conformanceHarness) New(t *testing.T) opentrack.Integration {
	h.srv = fakecustomerio.New("site", "key")
	t.Cleanup(h.srv.Close)
	h.mu.Lock()
	h.handed, h.noted = map[string][]string{}, map[[2]string]bool{}
	h.mu.Unlock()
	in, err := customerio.NewWithCredentials("site", "key", &customerio.Options{TrackURL: h.srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return noting{in, h}
}

// note records that the integration was handed the event messageID, which
// goes on the wire under key. Retries of one event are noted once.
func (h *conformanceHarness) note(key, messageID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.noted[[2]string{key, messageID}] {
		return
	}
	h.noted[[2]string{key, messageID}] = true
	h.handed[key] = append(h.handed[key], messageID)
}

// noting passes every call to the integration, noting the messageId first.
// Name and Close are the integration's own.
type noting struct {
	*customerio.Integration
	h *conformanceHarness
}

func (n noting) Track(ctx context.Context, e *spec.Track) error {
	n.h.note(eventKey(customerio.EventID(&e.Common)), e.MessageID)
	return n.Integration.Track(ctx, e)
}

func (n noting) Page(ctx context.Context, e *spec.Page) error {
	n.h.note(eventKey(customerio.EventID(&e.Common)), e.MessageID)
	return n.Integration.Page(ctx, e)
}

func (n noting) Screen(ctx context.Context, e *spec.Screen) error {
	n.h.note(eventKey(customerio.EventID(&e.Common)), e.MessageID)
	return n.Integration.Screen(ctx, e)
}

func (n noting) Identify(ctx context.Context, e *spec.Identify) error {
	id := e.UserID
	if id == "" {
		id, _ = e.Traits["email"].(string)
	}
	n.h.note(identifyKey(id), e.MessageID)
	return n.Integration.Identify(ctx, e)
}

func (n noting) Group(ctx context.Context, e *spec.Group) error {
	n.h.note(groupKey(e.GroupID, e.UserID, e.AnonymousID), e.MessageID)
	return n.Integration.Group(ctx, e)
}

func (n noting) Alias(ctx context.Context, e *spec.Alias) error {
	n.h.note(aliasKey(e.UserID, e.PreviousID), e.MessageID)
	return n.Integration.Alias(ctx, e)
}

func eventKey(id string) string        { return "event " + id }
func identifyKey(person string) string { return "identify " + person }
func aliasKey(primary, secondary string) string {
	return "alias " + primary + " " + secondary
}
func groupKey(groupID, userID, anonymousID string) string {
	if userID == "" {
		return "group " + groupID + " anonymous " + anonymousID
	}
	return "group " + groupID + " user " + userID
}

func (h *conformanceHarness) Received(t *testing.T) []integrationtest.Record {
	t.Helper()
	h.mu.Lock()
	next := map[string][]string{}
	for k, ids := range h.handed {
		next[k] = append([]string(nil), ids...)
	}
	h.mu.Unlock()

	var out []integrationtest.Record
	for _, c := range h.srv.Calls() {
		r, key := readBack(t, c)
		if ids := next[key]; len(ids) > 0 {
			r.MessageID, next[key] = ids[0], ids[1:]
		}
		out = append(out, r)
	}
	return out
}

// readBack reads one accepted call as the Segment event that maps to it,
// and returns the key its messageId was noted under.
func readBack(t *testing.T, c fakecustomerio.Call) (integrationtest.Record, string) {
	t.Helper()
	var body map[string]any
	dec := json.NewDecoder(bytes.NewReader(c.Body))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("%s %s: %v", c.Method, c.Path, err)
	}
	f := map[string]string{}
	r := integrationtest.Record{Fields: f}
	person, sub, _ := strings.Cut(strings.TrimPrefix(c.Path, "/api/v1/customers/"), "/")
	person, err := url.PathUnescape(person)
	if err != nil {
		t.Fatalf("%s: %v", c.Path, err)
	}
	switch {
	case c.Method == http.MethodPut && strings.HasPrefix(c.Path, "/api/v1/customers/") && sub == "":
		r.Type = spec.TypeIdentify
		f["userId"] = person
		for k, v := range body {
			switch k {
			case "anonymous_id":
				put(f, "anonymousId", v)
			case "created_at": // a converted createdAt
			default:
				put(f, "traits."+k, v)
			}
		}
		return r, identifyKey(person)

	case c.Method == http.MethodPost && (c.Path == "/api/v1/events" || strings.HasPrefix(c.Path, "/api/v1/customers/") && sub == "events"):
		if c.Path != "/api/v1/events" {
			f["userId"] = person
		}
		name, _ := body["name"].(string)
		data, _ := body["data"].(map[string]any)
		for k, v := range data {
			put(f, "properties."+k, v)
		}
		switch body["type"] {
		case "page":
			r.Type = spec.TypePage
			if f["properties.url"] != name { // else the name is properties.url, read back from data
				f["name"] = name
			}
		case "screen":
			r.Type = spec.TypeScreen
			f["name"] = name
		default:
			r.Type = spec.TypeTrack
			f["event"] = name
		}
		for k, v := range body {
			switch k {
			case "anonymous_id":
				put(f, "anonymousId", v)
			case "timestamp":
				f["timestamp"] = unixText(t, v)
			}
		}
		id, _ := body["id"].(string)
		return r, eventKey(id)

	case c.Method == http.MethodPost && c.Path == "/api/v2/entity":
		r.Type = spec.TypeGroup
		ids, _ := body["identifiers"].(map[string]any)
		groupID, _ := ids["object_id"].(string)
		f["groupId"] = groupID
		attrs, _ := body["attributes"].(map[string]any)
		for k, v := range attrs {
			if k != "created_at" {
				put(f, "traits."+k, v)
			}
		}
		if v, ok := body["timestamp"]; ok {
			f["timestamp"] = unixText(t, v)
		}
		rels, _ := body["cio_relationships"].([]any)
		if len(rels) != 1 {
			t.Errorf("group %s: %d relationships, want 1", groupID, len(rels))
			return r, ""
		}
		rel, _ := rels[0].(map[string]any)
		if a, ok := rel["relationship_attributes"]; ok {
			put(f, "traits.relationshipAttributes", a)
		}
		relIDs, _ := rel["identifiers"].(map[string]any)
		if anon, ok := relIDs["anonymous_id"].(string); ok {
			f["anonymousId"] = anon
			return r, groupKey(groupID, "", anon)
		}
		f["userId"] = personID(relIDs)
		return r, groupKey(groupID, f["userId"], "")

	case c.Method == http.MethodPost && c.Path == "/api/v1/merge_customers":
		r.Type = spec.TypeAlias
		primary, _ := body["primary"].(map[string]any)
		secondary, _ := body["secondary"].(map[string]any)
		f["userId"], f["previousId"] = personID(primary), personID(secondary)
		return r, aliasKey(f["userId"], f["previousId"])
	}
	t.Errorf("unexpected call %s %s", c.Method, c.Path)
	return r, ""
}

// personID reads a person's identifiers ({"id"}, {"email"} or {"cio_id"})
// back as the userId they were made from.
func personID(ids map[string]any) string {
	if v, ok := ids["cio_id"].(string); ok {
		return "cio_" + v
	}
	if v, ok := ids["email"].(string); ok {
		return v
	}
	v, _ := ids["id"].(string)
	return v
}

// unixText reads unix seconds back as the RFC 3339 text of a Segment
// timestamp.
func unixText(t *testing.T, v any) string {
	t.Helper()
	n, _ := v.(json.Number)
	sec, err := n.Int64()
	if err != nil {
		t.Errorf("timestamp %v is not unix seconds", v)
		return ""
	}
	return time.Unix(sec, 0).UTC().Format(time.RFC3339Nano)
}

// put writes v under path as [integrationtest.Record] says: strings as they
// are, numbers in their JSON form, objects as JSON and also field by field.
func put(f map[string]string, path string, v any) {
	switch v := v.(type) {
	case string:
		f[path] = v
	case json.Number:
		f[path] = v.String()
	case nil:
		f[path] = "null"
	case map[string]any:
		for k, x := range v {
			put(f, path+"."+k, x)
		}
		b, _ := json.Marshal(v)
		f[path] = string(b)
	default:
		b, _ := json.Marshal(v)
		f[path] = string(b)
	}
}

func (h *conformanceHarness) FailNext(t *testing.T, n int, permanent bool) bool {
	status := http.StatusServiceUnavailable
	if permanent {
		status = http.StatusBadRequest
	}
	h.srv.FailNext(n, fakecustomerio.Response{Status: status})
	return true
}

func (h *conformanceHarness) Types() []spec.Type {
	return []spec.Type{spec.TypeTrack, spec.TypeIdentify, spec.TypePage, spec.TypeScreen, spec.TypeGroup, spec.TypeAlias}
}

func TestConformance(t *testing.T) {
	integrationtest.Run(t, &conformanceHarness{})
}
