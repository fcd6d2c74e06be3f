package customerio

import (
	"testing"
	"time"

	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
	"github.com/opentrackhq/opentrack/spec"
)

func TestEncodeULIDTime(t *testing.T) {
	// The ULID spec's example: time 1469918176385 encodes as 01ARYZ6S41.
	var b [16]byte
	ms := uint64(1469918176385)
	for i := range 6 {
		b[i] = byte(ms >> (8 * (5 - i)))
	}
	got := encodeULID(b)
	if got[:10] != "01ARYZ6S41" || got[10:] != "0000000000000000" {
		t.Errorf("encodeULID = %s, want 01ARYZ6S41 then 16 zeros", got)
	}
	var max [16]byte
	for i := range max {
		max[i] = 0xff
	}
	if got := encodeULID(max); got != "7ZZZZZZZZZZZZZZZZZZZZZZZZZ" {
		t.Errorf("largest ULID = %s", got)
	}
}

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
	// The time part is the original timestamp in milliseconds.
	prefix := encodeULID(timeOnly(orig.UnixMilli()))[:10]
	if id[:10] != prefix {
		t.Errorf("time part %s, want %s", id[:10], prefix)
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
	if got := eventID(&c4); got[:10] != prefix {
		t.Errorf("time part without originalTimestamp: %s, want %s", got[:10], prefix)
	}
	// A ULID messageId is kept, in canonical upper case.
	c5 := spec.Common{MessageID: "01hwqz3v9k8m2n4p6r8t0v2x4y"}
	if got := eventID(&c5); got != "01HWQZ3V9K8M2N4P6R8T0V2X4Y" {
		t.Errorf("ULID messageId became %s", got)
	}
	// No messageId, no id; no time, time zero.
	if got := eventID(&spec.Common{}); got != "" {
		t.Errorf("eventID without messageId = %q", got)
	}
	if got := eventID(&spec.Common{MessageID: "m"}); got[:10] != "0000000000" || !fakecustomerio.IsULID(got) {
		t.Errorf("eventID without time = %q", got)
	}
}

func timeOnly(ms int64) [16]byte {
	var b [16]byte
	for i := range 6 {
		b[i] = byte(uint64(ms) >> (8 * (5 - i)))
	}
	return b
}
