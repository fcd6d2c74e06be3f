// Package customerio is the OpenTrack integration for Customer.io. It maps
// each Segment call the way Segment's Customer.io (Actions) destination does
// by default, and sends it to Customer.io's Track API with
// github.com/customerio/go-customerio/v3.
//
// # Set-up
//
// Build it from a go-customerio client, from credentials, or from the
// environment:
//
//	client := cio.NewTrackClient(siteID, apiKey, cio.WithRegion(cio.RegionEU))
//	in, err := customerio.New(client, nil)
//
//	in, err := customerio.NewWithCredentials(siteID, apiKey, &customerio.Options{Region: customerio.RegionEU})
//
//	in, err := customerio.FromEnv(ctx, os.Getenv)
//	if errors.Is(err, opentrack.ErrNotConfigured) { ... leave Customer.io out ... }
//
// and pass it to [opentrack.New] with the other integrations. A nil
// *[Options] means the defaults; an invalid option, an empty credential or a
// half configuration in the environment is a [*opentrack.ConfigError] naming
// it ("customerio.Options.Region", "CUSTOMERIO_API_KEY"). [FromEnv] returns
// [opentrack.ErrNotConfigured] when none of its variables is set.
//
// To try it without a workspace, run the Track API stand-in, which shows
// what it received at /fakecustomerio/dump:
//
//	go run ./internal/fakecustomerio/cmd/fakecustomerio -addr 127.0.0.1:9060
//	CUSTOMERIO_SITE_ID=local CUSTOMERIO_API_KEY=local CUSTOMERIO_TRACK_URL=http://127.0.0.1:9060 go run ./examples/server
//
// # Mapping
//
// go-customerio sends every call it can express; the calls it cannot (an
// event with its timestamp, type and id, and the Track API v2 entity call) are
// sent by the integration itself with the same credentials, base URL, User-Agent
// and HTTP client.
//
//	Segment call   Customer.io request                       Body
//	identify       PUT  /api/v1/customers/{userId}           traits as attributes, created_at, anonymous_id
//	               (no userId: {traits.email}; neither: not deliverable)
//	track          POST /api/v1/customers/{userId}/events    {name: event, data: properties, timestamp, id}
//	               POST /api/v1/events (no userId)           the same plus anonymous_id
//	page           POST /api/v1/customers/{userId}/events    {type: "page", name: URL, data, timestamp, id}
//	               POST /api/v1/events (no userId)           the same plus anonymous_id
//	screen         as page, with type "screen" and name = the screen name
//	group          POST /api/v2/entity                       {type: "object", action: "identify",
//	                                                          identifiers: {object_type_id, object_id: groupId},
//	                                                          attributes: traits, timestamp,
//	                                                          cio_relationships: [{identifiers: person}]}
//	               (no userId: action "identify_anonymous", relationship {anonymous_id})
//	alias          POST /api/v1/merge_customers              {primary: userId, secondary: previousId}
//
// Details:
//   - Timestamps: an event's timestamp is its Timestamp (corrected for the
//     sender's clock by the collector) in unix seconds. In traits and
//     properties, strings holding an ISO 8601 date or date-time become unix
//     seconds, in nested objects too, as Segment's "Convert Timestamps" does;
//     a date-time without an offset is read as UTC. traits.createdAt or
//     traits.created_at becomes the created_at of the person (or group
//     object); nothing else sets it.
//   - Event ids: Customer.io drops an event whose "id", a ULID, it has seen
//     before. The integration sends the messageId when it is a ULID and
//     otherwise a ULID derived from the messageId and the sender's original
//     timestamp, so a retried delivery of the same event is not counted twice.
//   - Page names: properties.url, else context.page.url, else the page name.
//     Screen names: the screen name, else properties.name.
//   - People: a userId starting with "cio_" refers to a Customer.io cio_id and
//     one that looks like an email address to an email, as in Segment; in
//     paths the id is passed as is, which Customer.io resolves the same way.
//   - Groups: the object type is [Options.ObjectTypeID] (default "1"), or the
//     group's traits.object_type_id or traits.objectTypeId; the group's
//     traits.relationshipAttributes become the relationship's attributes.
//     Neither is copied into the object's attributes.
//   - An event that cannot be mapped (identify without userId or email, a page
//     without a URL or name, ...) is not deliverable: the error wraps
//     [ErrNotDeliverable] and is marked permanent, so the Manager reports it
//     to the failure hook without retrying.
//
// # Regions
//
// Customer.io keeps each workspace in one region; use the one the workspace
// was created in:
//
//	RegionUS  https://track.customer.io     (the default)
//	RegionEU  https://track-eu.customer.io
//
// The zero [Options.Region] is RegionUS for both constructors; [New] keeps
// the URL of a client built for another region unless Region says
// otherwise. [Options.TrackURL] replaces the base URL, for a proxy or a
// local stand-in.
//
// # Errors and retries
//
// go-customerio does not retry and has no timeout; the integration gives its
// HTTP client a timeout ([Options.Timeout], default 10s) and classifies each
// answer for the Manager, which retries, by the rule every built-in HTTP
// destination shares:
//   - any 2xx is delivered;
//   - a network error, 408, 429 and 5xx are retryable, honouring Retry-After;
//   - any other 4xx (bad request, bad credentials) is [opentrack.Permanent]:
//     the event goes to the failure hook at once;
//   - every status error is a [*StatusError] (found with errors.As), with
//     Op "customerio: <call>", the status code and the start of
//     Customer.io's answer.
//
// After [Integration.Close] every call fails with [opentrack.ErrClosed],
// marked [opentrack.Permanent].
package customerio
