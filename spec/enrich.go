package spec

import (
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
//     written: the event is given a copy holding the ip instead, one copy
//     for all the events of the batch that are given the same ip.
//
// Enrich writes only into e and into maps e alone holds.
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
	if v, ok := c.Context["ip"]; ip != "" && (!ok || v == nil) {
		n := len(c.Context)
		mem += costBytes(len("ip")) + costString(len(ip))
		switch {
		case c.shared != nil:
			// Still shared, by the batch's events given this ip.
			c.Context = c.shared.with(ip)
			mem += costObject(n + 1)
		case c.Context == nil:
			c.Context = map[string]any{"ip": ip}
			mem += costObject(1)
		default: // the event's own map, which may grow
			c.Context["ip"] = ip
			mem += max(0, costObject(n+1)-costObject(n))
		}
	}
	if c.mem > 0 {
		c.mem += mem
	}
}
