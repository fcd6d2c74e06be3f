// Package spec defines the Segment event types that OpenTrack accepts, how they
// are decoded from the JSON that real Segment SDKs send, and how they are
// validated.
//
// There is one type per Segment call: [Track], [Identify], [Page], [Screen],
// [Group] and [Alias]. Each embeds [Common], the fields every call shares, and
// all of them satisfy [Event]. [Decode] turns one JSON object into an Event,
// [DecodeBatch] reads the envelope of a /v1/batch request, and each event's
// Validate method checks it with github.com/invopop/validation.
//
// Decoding is lenient where real SDKs differ and strict where a value could be
// misread:
//   - timestamps are RFC 3339 strings with any offset;
//   - ids (userId, anonymousId, groupId, previousId, messageId) may be JSON
//     strings or numbers; numbers are kept as strings, digit for digit;
//   - fields this package does not know are kept in [Common.Extra] and written
//     back out by MarshalJSON, so nothing a sender adds is stripped;
//   - a known field with the wrong JSON type (a string for properties, an
//     object for userId, ...) is a [*ValidationError] that names the field.
package spec

import (
	"time"
)

// Type is the Segment call an event belongs to, as it appears in the "type" field.
type Type string

// The Segment call types.
const (
	TypeTrack    Type = "track"
	TypeIdentify Type = "identify"
	TypePage     Type = "page"
	TypeScreen   Type = "screen"
	TypeGroup    Type = "group"
	TypeAlias    Type = "alias"
)

// Valid reports whether t is one of the six Segment call types.
func (t Type) Valid() bool {
	switch t {
	case TypeTrack, TypeIdentify, TypePage, TypeScreen, TypeGroup, TypeAlias:
		return true
	}
	return false
}

// Limits from the Segment HTTP Tracking API.
const (
	// MaxIDLength is the longest userId, anonymousId, groupId, previousId or
	// messageId accepted, in characters.
	MaxIDLength = 255
	// MaxEventNameLength is the longest track event name accepted, in characters.
	MaxEventNameLength = 200
)

// Event is one Segment call: a *Track, *Identify, *Page, *Screen, *Group or *Alias.
//
// Events handed to integrations are shared between them and must be treated
// as read-only.
type Event interface {
	// Fields returns the fields every Segment call shares. The pointer refers
	// into the event itself, so changes through it change the event.
	Fields() *Common
	// Validate checks the event against the rules of its call. It returns
	// nil or a *ValidationError.
	Validate() error
	// MarshalJSON writes the event as Segment JSON, unknown fields included.
	MarshalJSON() ([]byte, error)
}

// Common holds the fields that every Segment call carries.
type Common struct {
	// Type is the Segment call. Decode sets it from the route or the body.
	Type Type `json:"type"`
	// MessageID identifies the event; it is the idempotency key. The
	// collector generates one when the sender sent none.
	MessageID string `json:"messageId,omitempty"`
	// UserID is the sender's id for a known user.
	UserID string `json:"userId,omitempty"`
	// AnonymousID is the sender's id for a visitor not yet identified.
	AnonymousID string `json:"anonymousId,omitempty"`
	// Timestamp is when the event happened, corrected for the device's clock
	// skew when the sender gave sentAt.
	Timestamp time.Time `json:"timestamp,omitzero"`
	// OriginalTimestamp is the time the sender gave for the event, uncorrected.
	OriginalTimestamp time.Time `json:"originalTimestamp,omitzero"`
	// SentAt is when the sender sent the event, by its own clock.
	SentAt time.Time `json:"sentAt,omitzero"`
	// ReceivedAt is when the collector received the event, by its clock.
	ReceivedAt time.Time `json:"receivedAt,omitzero"`
	// Context holds the context object (ip, library, page, userAgent, ...).
	Context map[string]any `json:"context,omitempty"`
	// Integrations selects destinations: {"All": false, "BigQuery": true}.
	Integrations map[string]any `json:"integrations,omitempty"`
	// Channel is the source kind the sender names ("server", "browser", ...).
	Channel string `json:"channel,omitempty"`
	// Version is the spec version the sender names, kept as sent.
	Version any `json:"version,omitempty"`
	// WriteKey is the write key the sender put in the body. The HTTP handler
	// clears it once it has checked it, so integrations see it empty.
	WriteKey string `json:"writeKey,omitempty"`
	// Extra holds the top-level fields this package does not know, as raw
	// JSON, keyed by field name. MarshalJSON writes them back out.
	Extra map[string][]byte `json:"-"`

	size int
}

// Fields returns c. It lets every event type satisfy [Event].
func (c *Common) Fields() *Common { return c }

// Size returns the length in bytes of the JSON the event was decoded from, or
// 0 for an event built in Go.
func (c *Common) Size() int { return c.size }

// Track records an action a user performed.
type Track struct {
	Common
	// Event is the name of the action, such as "Order Completed".
	Event string `json:"event"`
	// Properties describe the action.
	Properties map[string]any `json:"properties,omitempty"`
}

// Identify ties a user to their traits.
type Identify struct {
	Common
	// Traits describe the user (email, name, plan, ...).
	Traits map[string]any `json:"traits,omitempty"`
}

// Page records a web page view.
type Page struct {
	Common
	// Name is the page's name.
	Name string `json:"name,omitempty"`
	// Category is the page's category.
	Category string `json:"category,omitempty"`
	// Properties describe the page (url, path, title, referrer, ...).
	Properties map[string]any `json:"properties,omitempty"`
}

// Screen records a mobile app screen view.
type Screen struct {
	Common
	// Name is the screen's name.
	Name string `json:"name,omitempty"`
	// Category is the screen's category.
	Category string `json:"category,omitempty"`
	// Properties describe the screen.
	Properties map[string]any `json:"properties,omitempty"`
}

// Group ties a user to a group such as a company or account.
type Group struct {
	Common
	// GroupID identifies the group.
	GroupID string `json:"groupId"`
	// Traits describe the group.
	Traits map[string]any `json:"traits,omitempty"`
}

// Alias merges two identities of one user.
type Alias struct {
	Common
	// PreviousID is the identity being merged into UserID.
	PreviousID string `json:"previousId"`
}

// New returns an empty event of type t with its Type set, or nil if t is not
// a Segment call type.
func New(t Type) Event {
	var e Event
	switch t {
	case TypeTrack:
		e = &Track{}
	case TypeIdentify:
		e = &Identify{}
	case TypePage:
		e = &Page{}
	case TypeScreen:
		e = &Screen{}
	case TypeGroup:
		e = &Group{}
	case TypeAlias:
		e = &Alias{}
	default:
		return nil
	}
	e.Fields().Type = t
	return e
}
