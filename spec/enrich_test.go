package spec

import (
	"regexp"
	"testing"
	"time"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestEnrichGeneratesMessageIDs checks the ids Enrich generates: canonical
// version 4 UUIDs, never repeated.
func TestEnrichGeneratesMessageIDs(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		e := &Track{Common: Common{Type: TypeTrack, UserID: "u"}, Event: "E"}
		Enrich(e, time.Now(), "")
		id := e.MessageID
		if !uuidV4.MatchString(id) {
			t.Fatalf("generated messageId %q is not a canonical version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("generated messageId %q repeated", id)
		}
		seen[id] = true
	}
}

func TestEnrichMessageID(t *testing.T) {
	received := mustTime("2024-01-02T03:04:05Z")

	e := mustDecode(t, `{"type":"identify","userId":"u"}`, "")
	Enrich(e, received, "")
	if id := e.Fields().MessageID; !uuidV4.MatchString(id) {
		t.Errorf("generated messageId = %q, want a version 4 UUID", id)
	}
	if err := e.Validate(); err != nil {
		t.Errorf("Validate after Enrich: %v", err)
	}

	e = mustDecode(t, `{"type":"identify","userId":"u","messageId":"node-next-1-abc"}`, "")
	Enrich(e, received, "")
	if id := e.Fields().MessageID; id != "node-next-1-abc" {
		t.Errorf("messageId = %q, want the sender's kept", id)
	}

	e = mustDecode(t, `{"type":"identify","userId":"u","messageId":12345}`, "")
	Enrich(e, received, "")
	if id := e.Fields().MessageID; id != "12345" {
		t.Errorf("numeric messageId = %q, want 12345 kept", id)
	}

	// Enriching twice does not replace the id the first call generated.
	e = mustDecode(t, `{"type":"identify","userId":"u"}`, "")
	Enrich(e, received, "")
	first := e.Fields().MessageID
	Enrich(e, received, "")
	if e.Fields().MessageID != first {
		t.Errorf("second Enrich replaced messageId %q with %q", first, e.Fields().MessageID)
	}
}

func TestEnrichTimestamps(t *testing.T) {
	received := mustTime("2024-01-02T12:00:10Z")
	tests := []struct {
		name                  string
		body                  string
		wantTimestamp         string
		wantOriginalTimestamp string // "" for zero
	}{
		{
			// The device clock is 2h behind: it sent 5s after the event.
			name:                  "originalTimestamp and sentAt: skew corrected",
			body:                  `{"originalTimestamp":"2024-01-02T10:00:00Z","sentAt":"2024-01-02T10:00:05Z"}`,
			wantTimestamp:         "2024-01-02T12:00:05Z",
			wantOriginalTimestamp: "2024-01-02T10:00:00Z",
		},
		{
			name:                  "timestamp taken as originalTimestamp",
			body:                  `{"timestamp":"2024-01-02T10:00:00Z","sentAt":"2024-01-02T10:00:05Z"}`,
			wantTimestamp:         "2024-01-02T12:00:05Z",
			wantOriginalTimestamp: "2024-01-02T10:00:00Z",
		},
		{
			name:                  "device clock ahead",
			body:                  `{"timestamp":"2024-01-02T14:00:00.250Z","sentAt":"2024-01-02T14:00:01Z"}`,
			wantTimestamp:         "2024-01-02T12:00:09.250Z",
			wantOriginalTimestamp: "2024-01-02T14:00:00.250Z",
		},
		{
			name:                  "offsets do not matter, instants do",
			body:                  `{"timestamp":"2024-01-02T15:30:00+05:30","sentAt":"2024-01-02T05:00:30-05:00"}`,
			wantTimestamp:         "2024-01-02T11:59:40Z",
			wantOriginalTimestamp: "2024-01-02T15:30:00+05:30",
		},
		{
			// RudderStack's SDKs send originalTimestamp (the call) beside
			// a caller's explicit timestamp (an import of history).
			name:                  "timestamp and originalTimestamp: both kept as given",
			body:                  `{"originalTimestamp":"2024-01-02T10:00:00Z","timestamp":"2023-01-01T00:00:00Z","sentAt":"2024-01-02T10:00:05Z"}`,
			wantTimestamp:         "2023-01-01T00:00:00Z",
			wantOriginalTimestamp: "2024-01-02T10:00:00Z",
		},
		{
			name:                  "no sentAt: timestamp is the sender's time",
			body:                  `{"timestamp":"2023-06-01T08:00:00+02:00"}`,
			wantTimestamp:         "2023-06-01T08:00:00+02:00",
			wantOriginalTimestamp: "2023-06-01T08:00:00+02:00",
		},
		{
			name:                  "originalTimestamp only",
			body:                  `{"originalTimestamp":"2023-06-01T08:00:00Z"}`,
			wantTimestamp:         "2023-06-01T08:00:00Z",
			wantOriginalTimestamp: "2023-06-01T08:00:00Z",
		},
		{
			name:          "nothing: receivedAt",
			body:          `{}`,
			wantTimestamp: "2024-01-02T12:00:10Z",
		},
		{
			name:          "sentAt only: receivedAt",
			body:          `{"sentAt":"2020-01-01T00:00:00Z"}`,
			wantTimestamp: "2024-01-02T12:00:10Z",
		},
		{
			name:                  "sentAt before the event: no correction",
			body:                  `{"timestamp":"2024-01-02T10:00:05Z","sentAt":"2024-01-02T10:00:00Z"}`,
			wantTimestamp:         "2024-01-02T10:00:05Z",
			wantOriginalTimestamp: "2024-01-02T10:00:05Z",
		},
		{
			// Year 1 minus 2026 overflows a time.Duration; it must not
			// produce a timestamp centuries away.
			name:                  "sentAt in year 1: no correction, no overflow",
			body:                  `{"timestamp":"2026-01-02T10:00:00Z","sentAt":"0001-01-02T00:00:00+01:00"}`,
			wantTimestamp:         "2026-01-02T10:00:00Z",
			wantOriginalTimestamp: "2026-01-02T10:00:00Z",
		},
		{
			name:                  "sent more than MaxSendDelay after the event: no correction",
			body:                  `{"timestamp":"2023-01-02T10:00:00Z","sentAt":"2024-01-02T10:00:00Z"}`,
			wantTimestamp:         "2023-01-02T10:00:00Z",
			wantOriginalTimestamp: "2023-01-02T10:00:00Z",
		},
		{
			name:                  "sent 29 days after the event: corrected",
			body:                  `{"timestamp":"2023-12-04T12:00:00Z","sentAt":"2024-01-02T12:00:00Z"}`,
			wantTimestamp:         "2023-12-04T12:00:10Z",
			wantOriginalTimestamp: "2023-12-04T12:00:00Z",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"type":"identify","userId":"u",` + tt.body[1:]
			if tt.body == `{}` {
				body = `{"type":"identify","userId":"u"}`
			}
			e := mustDecode(t, body, "")
			sentAt := e.Fields().SentAt
			Enrich(e, received, "")
			c := e.Fields()
			assertSameTime(t, "receivedAt", c.ReceivedAt, received)
			assertSameTime(t, "timestamp", c.Timestamp, mustTime(tt.wantTimestamp))
			if tt.wantOriginalTimestamp == "" {
				if !c.OriginalTimestamp.IsZero() {
					t.Errorf("originalTimestamp = %v, want zero", c.OriginalTimestamp)
				}
			} else {
				assertSameTime(t, "originalTimestamp", c.OriginalTimestamp, mustTime(tt.wantOriginalTimestamp))
			}
			assertSameTime(t, "sentAt", c.SentAt, sentAt)
		})
	}
}

// TestEnrichSkewFormula checks timestamp = receivedAt - (sentAt - originalTimestamp)
// over a range of skews.
func TestEnrichSkewFormula(t *testing.T) {
	received := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, skew := range []time.Duration{0, time.Millisecond, -time.Hour, 36 * time.Hour, -400 * 24 * time.Hour} {
		for _, delay := range []time.Duration{0, 1500 * time.Millisecond, 10 * time.Minute} {
			original := received.Add(skew).Add(-delay)
			sent := received.Add(skew)
			e := &Track{Common: Common{Type: TypeTrack, UserID: "u", OriginalTimestamp: original, SentAt: sent}, Event: "E"}
			Enrich(e, received, "")
			if want := received.Add(-delay); !e.Timestamp.Equal(want) {
				t.Errorf("skew %v delay %v: timestamp = %v, want %v", skew, delay, e.Timestamp, want)
			}
		}
	}
}

func TestEnrichIP(t *testing.T) {
	received := time.Now()
	tests := []struct {
		name string
		body string
		ip   string
		want any // context.ip after Enrich; nil for absent
		keys int // number of context keys after Enrich
	}{
		{"no context: created", `{"type":"identify","userId":"u"}`, "203.0.113.7", "203.0.113.7", 1},
		{"null context: created", `{"type":"identify","userId":"u","context":null}`, "2001:db8::1", "2001:db8::1", 1},
		{"context without ip: added", `{"type":"identify","userId":"u","context":{"locale":"en-US"}}`, "203.0.113.7", "203.0.113.7", 2},
		{"context with ip: kept", `{"type":"identify","userId":"u","context":{"ip":"1.2.3.4"}}`, "203.0.113.7", "1.2.3.4", 1},
		{"context with empty ip: kept", `{"type":"identify","userId":"u","context":{"ip":""}}`, "203.0.113.7", "", 1},
		{"no ip given, no context", `{"type":"identify","userId":"u"}`, "", nil, 0},
		{"no ip given, context", `{"type":"identify","userId":"u","context":{"locale":"en-US"}}`, "", nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustDecode(t, tt.body, "")
			Enrich(e, received, tt.ip)
			c := e.Fields()
			if got := c.Context["ip"]; got != tt.want {
				t.Errorf("context.ip = %#v, want %#v", got, tt.want)
			}
			if len(c.Context) != tt.keys {
				t.Errorf("context = %v, want %d keys", c.Context, tt.keys)
			}
			if tt.ip == "" && tt.keys == 0 && c.Context != nil {
				t.Errorf("context = %#v, want nil when there is nothing to add", c.Context)
			}
		})
	}
}
