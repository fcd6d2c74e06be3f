package spec

import (
	"maps"
	"time"

	"github.com/google/uuid"
)

// MaxSendDelay is the longest time between an event and its sending (sentAt
// minus the sender's time) for which [Enrich] corrects the device's clock.
// SDKs that queue events offline send them within days; a pair further apart
// comes from a broken clock or a hostile sender.
const MaxSendDelay = 30 * 24 * time.Hour

// Enrich completes an accepted event as Segment's servers do:
//   - MessageID is generated (a random UUID) when the sender sent none;
//   - ReceivedAt is set to receivedAt;
//   - when the sender gave both timestamp and originalTimestamp, both are
//     kept as given: the caller chose the event's time (server libraries and
//     direct HTTP callers may, to import history; RudderStack's SDKs always
//     send originalTimestamp, the time of the call, beside it);
//   - otherwise OriginalTimestamp is the time the sender gave (its
//     originalTimestamp, else its timestamp, which Segment's SDKs fill with
//     the device's time), and Timestamp is that time corrected for the
//     device's clock skew when the sender gave sentAt:
//     receivedAt - (sentAt - originalTimestamp). Without sentAt it is the
//     sender's time, and without that, receivedAt;
//   - the correction is skipped (Timestamp is the sender's time) when sentAt
//     is before the sender's time or more than [MaxSendDelay] after it: such
//     a pair says nothing reliable about the clock, and arithmetic on
//     arbitrary years must not overflow;
//   - context.ip is set to ip when the context has none (or null) and ip is
//     not empty. A context shared with a batch ([Batch.Merge]) is never
//     written: the event is given its own copy first.
//
// Enrich writes only into e and maps e alone holds.
func Enrich(e Event, receivedAt time.Time, ip string) {
	c := e.Fields()
	mem := 0
	if c.MessageID == "" {
		c.MessageID = uuid.NewString() // random, version 4
		mem += costBytes(len(c.MessageID))
	}
	c.ReceivedAt = receivedAt
	explicit := !c.Timestamp.IsZero() && !c.OriginalTimestamp.IsZero()
	if c.OriginalTimestamp.IsZero() {
		c.OriginalTimestamp = c.Timestamp
	}
	switch {
	case explicit:
		// The caller's timestamp stands.
	case c.OriginalTimestamp.IsZero():
		c.Timestamp = receivedAt
	default:
		c.Timestamp = c.OriginalTimestamp
		if !c.SentAt.IsZero() {
			if delay := c.SentAt.Sub(c.OriginalTimestamp); delay >= 0 && delay <= MaxSendDelay {
				c.Timestamp = receivedAt.Add(-delay)
			}
		}
	}
	if ip != "" {
		if v, ok := c.Context["ip"]; !ok || v == nil {
			n := len(c.Context)
			switch {
			case c.Context == nil:
				c.Context = make(map[string]any, 1)
				mem += costObject(1)
			case c.shared&sharedContext != 0:
				own := make(map[string]any, n+1)
				maps.Copy(own, c.Context)
				c.Context = own
				c.shared &^= sharedContext
				mem += costObject(n + 1)
			default: // the event's own map may grow
				mem += max(0, costObject(n+1)-costObject(n))
			}
			c.Context["ip"] = ip
			mem += costBytes(len("ip")) + costString(len(ip))
		}
	}
	if c.mem > 0 {
		c.mem += mem
	}
}
