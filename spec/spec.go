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
//   - fields this package does not know are kept in [Common.Extra], as the
//     sender wrote them, and written back out by MarshalJSON, so nothing a
//     sender adds is stripped;
//   - a known field with the wrong JSON type (a string for properties, an
//     object for userId, ...) is a [*ValidationError] that names the field.
//
// # Text
//
// JSON must be UTF-8 (RFC 8259), and every Segment SDK sends it so. Decode
// refuses a string or key holding bytes that are not UTF-8, wherever it is
// (rule "utf8", naming the field), rather than replace them with U+FFFD as
// encoding/json does: two different values must not silently become one.
// An escaped lone surrogate ("\ud800", which JavaScript produces when it
// cuts a string inside an emoji) is well-formed JSON; outside ids it is
// decoded as U+FFFD, as every JSON decoder does. An id is the identity of a
// user, group or message, so Validate holds ids to more: an id holding
// U+FFFD (whether sent as such, as a lone surrogate or as an invalid byte) is
// refused (rule "utf8"), and so is an id holding a control character,
// U+0000 to U+001F or U+007F (rule "control"). Other strings may hold control
// characters, escaped as JSON requires.
//
// # Limits
//
// An event may nest objects and arrays [MaxDepth] levels deep; Decode refuses
// more (rule "depth"), and MarshalJSON writes no more. An event has two
// sizes: [Batch.MergedSize] is the length of its JSON once the batch-level
// fields are applied, which the request limits bound (one event, and
// [MaxMergedBatchBytes] for a batch), and [Common.Size] is the memory it
// holds once decoded, which the queues bound.
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

// MaxDepth is the deepest nesting of JSON objects and arrays an event may
// hold, the event's own object being the first level: in
// {"properties":{"items":[1]}} the array is at level 3. Decode refuses an
// event nested deeper (rule "depth") and MarshalJSON refuses to write one, so
// an event accepted is an event that can be written out.
//
// Segment SDK payloads nest a handful of levels (context.page.url,
// properties.products[0].price); 64 leaves ten times that for the sender's
// own properties, while keeping small what a hostile event can cost: the
// decoder's and encoder's recursion, and the field path named in an error.
const MaxDepth = 64

// MaxMergedBatchBytes bounds the events of one batch together, each counted
// by its [Batch.MergedSize]: 2,048,000 bytes, four times Segment's 500 KB
// limit on a batch request. A batch-level context or integrations object
// counts once for each event that inherits it, as if each event carried its
// own copy, which is what each costs downstream (every integration writes
// the merged event); the bound stops a small request from becoming
// gigabytes. Real SDKs stay far below it: analytics-go's batch-level context
// is its library's name and version, 60 bytes.
const MaxMergedBatchBytes = 4 * 500 << 10

// Event is one Segment call: a *Track, *Identify, *Page, *Screen, *Group or *Alias.
//
// Events handed to integrations are shared between them and must be treated
// as read-only.
type Event interface {
	// Fields returns the fields every Segment call shares. The pointer refers
	// into the event itself, so changes through it change the event.
	Fields() *Common
	// Validate checks the event against the rules of its call, and every
	// id present against the rules of ids' text (see the package doc). It
	// returns nil or a *ValidationError.
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
	// JSON, keyed by field name; Decode keeps them as the sender wrote them,
	// without insignificant spaces. MarshalJSON writes them back out.
	Extra map[string][]byte `json:"-"`

	size   int            // bytes of the JSON decoded, merged with the batch's fields
	mem    int            // estimate of the heap held; see Size
	shared *sharedContext // set while Context is shared with a batch's other events
	merged bool           // Batch.Merge was applied
	json   []byte         // the JSON kept (WithJSON, AppendWithJSON, DecodeStored), valid while jsonOf is c
	jsonOf *Common        // the Common json was written for, not a copy of it
}

// Fields returns c. It lets every event type satisfy [Event].
func (c *Common) Fields() *Common { return c }

// Size returns an upper bound of the bytes of memory a decoded event holds,
// as the Manager's queues count them: a queue bounded in bytes holds no more
// events than fit in its memory budget, whatever their shape. It is not the
// length of the JSON: 30 KB of JSON holding thousands of empty objects
// decodes into hundreds of kilobytes of maps. A context or integrations
// object shared with a batch ([Batch.Merge]) counts in full for each event
// that holds it.
//
// A decoded event that keeps its JSON ([WithJSON], [AppendWithJSON],
// [DecodeStored]) counts its length too, not that of a larger buffer the
// JSON may be part of (see AppendWithJSON).
// Size returns 0 for an event built in Go rather than decoded; the caller
// then chooses its own estimate.
func (c *Common) Size() int {
	if c.mem > 0 && c.jsonOf == c {
		return c.mem + len(c.json) // the JSON it keeps, see AppendWithJSON
	}
	return c.mem
}

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

// newEvent returns an empty event of type t with its Type set, or nil if t
// is not a Segment call type.
func newEvent(t Type) Event {
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
