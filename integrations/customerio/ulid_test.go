package customerio

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
	"github.com/opentrackhq/opentrack/spec"
)

func TestEventID(t *testing.T) {
	orig := time.Date(2024, 5, 1, 11, 59, 58, 500e6, time.UTC)
	c := &spec.Common{MessageID: "ajs-next-1", OriginalTimestamp: orig, Timestamp: orig.Add(time.Second)}
	id := eventID(c)
	if !fakecustomerio.IsULID(id) {
		t.Fatalf("eventID = %q, not a ULID", id)
	}
	if id != eventID(c) {
		t.Error("eventID is not deterministic")
	}
	parsed, err := ulid.ParseStrict(id)
	if err != nil {
		t.Fatal(err)
	}
	// The time part is the original timestamp in milliseconds; the entropy
	// is the start of the messageId's SHA-256.
	if got := parsed.Time(); got != uint64(orig.UnixMilli()) {
		t.Errorf("time part %d, want %d", got, orig.UnixMilli())
	}
	if h := sha256.Sum256([]byte(c.MessageID)); string(parsed.Entropy()) != string(h[:10]) {
		t.Errorf("entropy %x, want %x", parsed.Entropy(), h[:10])
	}
	// The ids sent before the library built them: Customer.io must see the
	// same id for an event retried across an upgrade.
	if id != "01HWT0D614F8P7F5263Z4725W1" {
		t.Errorf("eventID = %s, want 01HWT0D614F8P7F5263Z4725W1 as before", id)
	}
	// A later delivery of the same event, with a different corrected
	// timestamp, keeps the id.
	c2 := *c
	c2.Timestamp = c.Timestamp.Add(3 * time.Second)
	if eventID(&c2) != id {
		t.Error("id depends on the corrected timestamp")
	}
	// Another messageId gives another id.
	c3 := *c
	c3.MessageID = "ajs-next-2"
	if eventID(&c3) == id {
		t.Error("different messageIds share an id")
	}
	// Without an original timestamp the timestamp is used.
	c4 := spec.Common{MessageID: "m", Timestamp: orig}
	if got := eventID(&c4); got[:10] != id[:10] {
		t.Errorf("time part without originalTimestamp: %s, want %s", got[:10], id[:10])
	}
	// A ULID messageId is kept, in canonical upper case.
	c5 := spec.Common{MessageID: "01hwqz3v9k8m2n4p6r8t0v2x4y"}
	if got := eventID(&c5); got != "01HWQZ3V9K8M2N4P6R8T0V2X4Y" {
		t.Errorf("ULID messageId became %s", got)
	}
	// Not ULIDs: a first digit past 7 overflows, and I, L, O, U are not
	// in the alphabet. They are hashed like any other messageId.
	for _, m := range []string{"81HWQZ3V9K8M2N4P6R8T0V2X4Y", "01HWQZ3V9K8M2N4P6R8T0V2X4O", "01HWQZ3V9K8M2N4P6R8T0V2X4"} {
		if got := eventID(&spec.Common{MessageID: m, Timestamp: orig}); got == m || !fakecustomerio.IsULID(got) || got[:10] != id[:10] {
			t.Errorf("eventID(%q) = %q, want a ULID derived from it", m, got)
		}
	}
	// No messageId, no id; no time, or one before 1970 or past the ULID
	// range (year 10889), time zero.
	if got := eventID(&spec.Common{}); got != "" {
		t.Errorf("eventID without messageId = %q", got)
	}
	for _, ts := range []time.Time{{}, time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(10900, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if got := eventID(&spec.Common{MessageID: "m", Timestamp: ts}); got[:10] != "0000000000" || !fakecustomerio.IsULID(got) {
			t.Errorf("eventID with time %v = %q", ts, got)
		}
	}
}
