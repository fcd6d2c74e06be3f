package customerio

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cio "github.com/customerio/go-customerio/v3"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
	"github.com/opentrackhq/opentrack/spec"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current output")

// Test credentials whose URL-safe base64 form holds '_' and '-', which
// r.BasicAuth and the standard alphabet reject.
const (
	testSite = "site>?"
	testKey  = "key~~"
)

// newTestIntegration returns an Integration wired to a fresh stand-in.
func newTestIntegration(t *testing.T, opts *Options) (*Integration, *fakecustomerio.Server) {
	t.Helper()
	srv := fakecustomerio.New(testSite, testKey)
	t.Cleanup(srv.Close)
	o := Options{}
	if opts != nil {
		o = *opts
	}
	o.TrackURL = srv.URL()
	in, err := NewWithCredentials(testSite, testKey, &o)
	if err != nil {
		t.Fatal(err)
	}
	return in, srv
}

// decodeEvent reads a Segment event as the collector's decoder does.
func decodeEvent(t *testing.T, data []byte) spec.Event {
	t.Helper()
	e, err := spec.Decode(data, "")
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return e
}

// wireCall is a recorded call in golden form.
type wireCall struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Body   any    `json:"body"`
}

// goldenJSON renders calls as indented JSON, numbers kept digit for digit.
func goldenJSON(t *testing.T, calls []fakecustomerio.Call) []byte {
	t.Helper()
	out := make([]wireCall, 0, len(calls))
	for _, c := range calls {
		dec := json.NewDecoder(bytes.NewReader(c.Body))
		dec.UseNumber()
		var body any
		if err := dec.Decode(&body); err != nil {
			t.Fatalf("call body %q: %v", c.Body, err)
		}
		out = append(out, wireCall{Method: c.Method, Path: c.Path, Body: body})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestMappingGolden delivers each event of testdata/events to the stand-in
// and compares the Track API calls that arrived with testdata/golden.
func TestMappingGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/events/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test events: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			in, srv := newTestIntegration(t, nil)
			if err := opentrack.Deliver(context.Background(), in, decodeEvent(t, data)); err != nil {
				t.Fatalf("deliver: %v", err)
			}
			calls := srv.Calls()
			if len(calls) != 1 || srv.Attempts() != 1 {
				t.Fatalf("got %d calls in %d requests, want exactly 1", len(calls), srv.Attempts())
			}
			for _, c := range calls {
				if c.UserAgent != cio.DefaultUserAgent {
					t.Errorf("User-Agent %q, want go-customerio's %q", c.UserAgent, cio.DefaultUserAgent)
				}
			}
			got := goldenJSON(t, calls)
			golden := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("calls differ from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

// TestMappingDoesNotChangeEvent checks that delivering leaves the shared
// event as it was: the same event goes to every integration.
func TestMappingDoesNotChangeEvent(t *testing.T) {
	for _, name := range []string{"identify_user", "group_user", "track_user"} {
		data, err := os.ReadFile(filepath.Join("testdata", "events", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		e := decodeEvent(t, data)
		before, _ := json.Marshal(e)
		in, _ := newTestIntegration(t, nil)
		if err := opentrack.Deliver(context.Background(), in, e); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		after, _ := json.Marshal(e)
		if !bytes.Equal(before, after) {
			t.Errorf("%s: event changed by delivery\nbefore %s\nafter  %s", name, before, after)
		}
	}
}

func TestObjectTypeIDOption(t *testing.T) {
	in, srv := newTestIntegration(t, &Options{ObjectTypeID: "companies"})
	e := &spec.Group{Common: spec.Common{Type: spec.TypeGroup, UserID: "u1"}, GroupID: "g1"}
	if err := in.Group(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Identifiers map[string]string `json:"identifiers"`
	}
	calls := srv.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls", len(calls))
	}
	if err := json.Unmarshal(calls[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Identifiers["object_type_id"] != "companies" || body.Identifiers["object_id"] != "g1" {
		t.Errorf("identifiers %v, want object_type_id companies, object_id g1", body.Identifiers)
	}
}

func TestConvertTimes(t *testing.T) {
	utc := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.Unix()
	}
	cases := []struct {
		in   any
		want any
	}{
		{"2024-05-01T12:00:00Z", utc("2024-05-01T12:00:00Z")},
		{"2024-05-01T12:00:00.123456789+02:00", utc("2024-05-01T10:00:00Z")},
		{"2024-05-01T12:00:00-0700", utc("2024-05-01T19:00:00Z")},
		{"2024-05-01T12:00", utc("2024-05-01T12:00:00Z")},
		{"2024-05-01T12:00Z", utc("2024-05-01T12:00:00Z")},
		{"2024-05-01", utc("2024-05-01T00:00:00Z")},
		{time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC), utc("2024-05-01T00:00:00Z")},
		// Not dates: kept as they are.
		{"2024-13-01", "2024-13-01"},
		{"2024-05-01T25:00:00Z", "2024-05-01T25:00:00Z"},
		{"2024-5-1", "2024-5-1"},
		{"1714564800", "1714564800"},
		{"May 1, 2024", "May 1, 2024"},
		{"2024-05-01 12:00:00", "2024-05-01 12:00:00"},
		{"2024-05-01T12:00:00+2", "2024-05-01T12:00:00+2"},
		{json.Number("1714564800"), json.Number("1714564800")},
		{true, true},
		{nil, nil},
	}
	for _, c := range cases {
		got := convertValue(c.in)
		if got != c.want {
			t.Errorf("convertValue(%#v) = %#v, want %#v", c.in, got, c.want)
		}
	}
	nested := map[string]any{"a": map[string]any{"b": "2024-05-01"}, "list": []any{"2024-05-01"}}
	out := convertTimes(nested)
	if out["a"].(map[string]any)["b"] != utc("2024-05-01T00:00:00Z") {
		t.Errorf("nested date not converted: %v", out)
	}
	if out["list"].([]any)[0] != "2024-05-01" {
		t.Errorf("array element converted: %v", out)
	}
	if nested["a"].(map[string]any)["b"] != "2024-05-01" {
		t.Errorf("input map changed: %v", nested)
	}
}

func TestIdentifier(t *testing.T) {
	cases := []struct {
		in   string
		typ  cio.IdentifierType
		want string
	}{
		{"user-1", cio.IdentifierTypeID, "user-1"},
		{"ada@example.com", cio.IdentifierTypeEmail, "ada@example.com"},
		{"cio_03000001", cio.IdentifierTypeCioID, "03000001"},
		{"cio_", cio.IdentifierTypeID, "cio_"},
		{"Ada <ada@example.com>", cio.IdentifierTypeID, "Ada <ada@example.com>"},
		{"not an @email", cio.IdentifierTypeID, "not an @email"},
		{"12345", cio.IdentifierTypeID, "12345"},
	}
	for _, c := range cases {
		got := identifier(c.in)
		if got.Type != c.typ || got.Value != c.want {
			t.Errorf("identifier(%q) = %v %q, want %v %q", c.in, got.Type, got.Value, c.typ, c.want)
		}
	}
}
