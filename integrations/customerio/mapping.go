package customerio

import (
	"crypto/sha256"
	"encoding/json"
	"net/mail"
	"regexp"
	"strings"
	"time"

	cio "github.com/customerio/go-customerio/v3"
	"github.com/oklog/ulid/v2"

	"github.com/opentrackhq/opentrack/spec"
)

// convertTimes returns a copy of m in which strings holding an ISO 8601 date
// or date-time (and time.Time values) are unix seconds, in nested objects
// too; arrays are kept as they are. It is Segment's "Convert Timestamps".
// The event's own maps are never changed. A nil m gives nil.
func convertTimes(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = convertValue(v)
	}
	return out
}

func convertValue(v any) any {
	switch v := v.(type) {
	case string:
		if t, ok := parseISO(v); ok {
			return t.Unix()
		}
	case time.Time:
		return v.Unix()
	case map[string]any:
		return convertTimes(v)
	}
	return v
}

// isoDate is the shape Segment's destination accepts as a date: YYYY-MM-DD,
// optionally with THH:mm[:ss][.fraction] and an offset (Z, ±hh:mm or ±hhmm).
var isoDate = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$`)

var isoLayouts = []string{
	"2006-01-02",
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04Z0700",
	"2006-01-02T15:04",
}

// parseISO reads s as an ISO 8601 date or date-time; without an offset the
// time is UTC.
func parseISO(s string) (time.Time, bool) {
	if len(s) < 10 || s[4] != '-' || !isoDate.MatchString(s) {
		return time.Time{}, false
	}
	for _, layout := range isoLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// withCreatedAt moves createdAt to created_at, as Customer.io names the
// attribute; created_at wins when both are present. A null is dropped. attrs
// is changed in place and returned.
func withCreatedAt(attrs map[string]any) map[string]any {
	if attrs == nil {
		return nil
	}
	v, ok := attrs["created_at"]
	if !ok {
		v = attrs["createdAt"]
	}
	delete(attrs, "createdAt")
	if v == nil {
		delete(attrs, "created_at")
	} else {
		attrs["created_at"] = v
	}
	return attrs
}

func unixSeconds(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// firstString returns the first of vs that is a non-empty string.
func firstString(vs ...any) string {
	for _, v := range vs {
		if s, ok := v.(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// pageURL returns context.page.url, or nil.
func pageURL(ctx map[string]any) any {
	page, _ := ctx["page"].(map[string]any)
	return page["url"]
}

// idString reads an id given as a JSON string or number.
func idString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// identifier reads a person reference as Segment's destination does: a
// "cio_" prefix names a cio_id, an email address an email, anything else an
// id.
func identifier(s string) cio.Identifier {
	if rest, ok := strings.CutPrefix(s, "cio_"); ok && rest != "" {
		return cio.Identifier{Type: cio.IdentifierTypeCioID, Value: rest}
	}
	if isEmail(s) {
		return cio.Identifier{Type: cio.IdentifierTypeEmail, Value: s}
	}
	return cio.Identifier{Type: cio.IdentifierTypeID, Value: s}
}

// personIdentifiers is identifier as a Track API v2 identifiers object.
func personIdentifiers(s string) map[string]string {
	id := identifier(s)
	return map[string]string{string(id.Type): id.Value}
}

func isEmail(s string) bool {
	if !strings.Contains(s, "@") {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s
}

// eventID returns the Customer.io event id for the event: Customer.io ignores
// an event whose id, a ULID, it has already received. A messageId that is a
// ULID is used as is, in its canonical upper-case form. Any other messageId
// gives a ULID whose time is the sender's original timestamp (else the
// timestamp; 0 before 1970 or past the ULID range) and whose 80-bit entropy
// is the start of a SHA-256 of the messageId: the same event always gets
// the same id, so a delivery retried after a lost answer is not counted
// twice. No messageId, no id.
func eventID(c *spec.Common) string {
	if c.MessageID == "" {
		return ""
	}
	if id, err := ulid.ParseStrict(c.MessageID); err == nil {
		return id.String()
	}
	t := c.OriginalTimestamp
	if t.IsZero() {
		t = c.Timestamp
	}
	var ms uint64
	if m := t.UnixMilli(); !t.IsZero() && m > 0 && uint64(m) <= ulid.MaxTime() {
		ms = uint64(m)
	}
	h := sha256.Sum256([]byte(c.MessageID))
	var id ulid.ULID
	if id.SetTime(ms) != nil || id.SetEntropy(h[:10]) != nil {
		return "" // cannot happen: ms is in range and the entropy is 10 bytes
	}
	return id.String()
}
