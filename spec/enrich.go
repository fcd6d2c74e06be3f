package spec

import (
	"crypto/rand"
	"encoding/hex"
	"time"
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
//     not empty.
func Enrich(e Event, receivedAt time.Time, ip string) {
	c := e.Fields()
	if c.MessageID == "" {
		c.MessageID = NewMessageID()
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
			if c.Context == nil {
				c.Context = make(map[string]any, 1)
			}
			c.Context["ip"] = ip
		}
	}
}

// NewMessageID returns a random (version 4) UUID in its canonical text form.
func NewMessageID() string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}
