package customerio

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	cio "github.com/customerio/go-customerio/v3"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/httpx"
	"github.com/opentrackhq/opentrack/spec"
)

// Name is the integration's name in Segment's "integrations" object.
const Name = "Customer.io"

// Defaults for the zero fields of [Options].
const (
	DefaultObjectTypeID = "1"
	DefaultTimeout      = 10 * time.Second
)

// Region is the Customer.io data center a workspace lives in.
type Region string

// The Customer.io regions.
const (
	RegionUS Region = "US" // https://track.customer.io
	RegionEU Region = "EU" // https://track-eu.customer.io
)

// ParseRegion reads a region name, "US" or "EU", in any case. An empty or
// blank string is RegionUS.
func ParseRegion(s string) (Region, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "", "US":
		return RegionUS, nil
	case "EU":
		return RegionEU, nil
	}
	return "", fmt.Errorf("customerio: unknown region %q: want US or EU", s)
}

// TrackURL returns the base URL of the region's Track API, or "" for an
// unknown region.
func (r Region) TrackURL() string {
	switch r {
	case RegionUS:
		return cio.RegionUS.TrackURL
	case RegionEU:
		return cio.RegionEU.TrackURL
	}
	return ""
}

// Options configures an [Integration]. The zero value, like a nil *Options,
// means the defaults. [New] and [NewWithCredentials] return a
// [*opentrack.ConfigError] naming the field ("customerio.Options.Region")
// for an invalid one.
type Options struct {
	// Region selects the Track API host when TrackURL is empty: RegionUS
	// or RegionEU; any other value is an error. The zero Region means
	// RegionUS in both constructors: NewWithCredentials builds its client
	// on the US host, and New keeps the URL of the client it is given,
	// which is the US host unless the client was built for another one
	// (cio.WithRegion(cio.RegionEU)); a client without a URL gets the US
	// host too. New never moves a client to another region unless Region
	// or TrackURL says so.
	Region Region

	// TrackURL, when set, replaces the Track API base URL (an absolute
	// http or https URL without query or fragment, as in
	// "https://cio-proxy.internal" or "http://127.0.0.1:9060"), for
	// go-customerio's calls and the integration's own alike. It wins over
	// Region.
	TrackURL string

	// ObjectTypeID is the Customer.io object type that Segment groups
	// become. A group's traits.object_type_id (or objectTypeId) overrides
	// it. Default DefaultObjectTypeID ("1"); a blank one is an error.
	ObjectTypeID string

	// Timeout bounds each HTTP request, answer included. Zero means the
	// Timeout of the client's http.Client if it has one, else
	// DefaultTimeout (10s); a negative one is an error. The Manager's
	// Delivery.CallTimeout bounds each call as well.
	Timeout time.Duration
}

// Integration delivers Segment calls to Customer.io's Track API. It is safe
// for concurrent use and keeps no state between calls. After
// [Integration.Close] every call fails with [opentrack.ErrClosed].
type Integration struct {
	client     *cio.CustomerIO // a copy of the caller's, on our HTTP client and base URL
	http       *http.Client
	base       string // Track API base URL, no trailing slash
	auth       string // Authorization header, exactly as go-customerio sends it
	userAgent  string
	objectType string
	closed     atomic.Bool
}

var (
	_ opentrack.Integration = (*Integration)(nil)
	_ opentrack.Closer      = (*Integration)(nil)
)

// New returns an Integration that sends through client. A nil opts means
// the defaults.
//
// The integration works on a copy of client and leaves the original as it
// was. The copy keeps client's credentials, User-Agent and http.Client
// (its Transport, proxy and TLS settings), with a timeout added as
// [Options.Timeout] says and a base URL as [Options.Region] and
// [Options.TrackURL] say (by default the client's own URL). The requests
// go-customerio cannot express are sent with the same base URL, HTTP
// client, User-Agent and Authorization header; New reads that header by
// passing one request of the client through an in-memory transport
// (nothing goes on the network).
//
// A nil client or an invalid option is a [*opentrack.ConfigError].
func New(client *cio.CustomerIO, opts *Options) (*Integration, error) {
	if client == nil {
		return nil, &opentrack.ConfigError{Field: "customerio.New client", Reason: "is nil"}
	}
	if opts == nil {
		opts = &Options{}
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	base := client.URL
	switch {
	case opts.TrackURL != "":
		base = opts.TrackURL
	case opts.Region != "":
		base = opts.Region.TrackURL()
	case base == "":
		base = RegionUS.TrackURL()
	}
	base = strings.TrimRight(base, "/")
	if err := checkBaseURL(base); err != nil {
		return nil, &opentrack.ConfigError{Field: "customerio.New client.URL", Reason: err.Error() + "; set Options.Region or Options.TrackURL"}
	}

	hc := &http.Client{}
	if client.Client != nil {
		*hc = *client.Client
	}
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	hc.Transport = &recorder{next: next}
	switch {
	case opts.Timeout > 0:
		hc.Timeout = opts.Timeout
	case hc.Timeout == 0:
		hc.Timeout = DefaultTimeout
	}

	c := *client
	c.URL = base
	c.Client = hc
	objectType := opts.ObjectTypeID
	if objectType == "" {
		objectType = DefaultObjectTypeID
	}
	return &Integration{
		client:     &c,
		http:       hc,
		base:       base,
		auth:       authorization(client),
		userAgent:  client.UserAgent,
		objectType: objectType,
	}, nil
}

// validate checks o's fields; it returns a *opentrack.ConfigError.
func (o *Options) validate() error {
	bad := func(field, reason string) error {
		return &opentrack.ConfigError{Field: "customerio.Options." + field, Reason: reason}
	}
	if o.Region != "" && o.Region.TrackURL() == "" {
		return bad("Region", fmt.Sprintf("unknown region %q: want customerio.RegionUS or customerio.RegionEU (ParseRegion reads a name in any case)", string(o.Region)))
	}
	if o.TrackURL != "" {
		if err := checkBaseURL(strings.TrimRight(o.TrackURL, "/")); err != nil {
			return bad("TrackURL", err.Error())
		}
	}
	if o.ObjectTypeID != "" && strings.TrimSpace(o.ObjectTypeID) == "" {
		return bad("ObjectTypeID", "is blank")
	}
	if o.Timeout < 0 {
		return bad("Timeout", fmt.Sprintf("%v is negative", o.Timeout))
	}
	return nil
}

// NewWithCredentials returns an Integration for the workspace with the given
// Track API site ID and API key, on a go-customerio client of its own whose
// transport honours the HTTPS_PROXY family of environment variables. A nil
// opts means the defaults; the zero [Options.Region] is RegionUS. An empty
// siteID or apiKey, or an invalid option, is a [*opentrack.ConfigError].
func NewWithCredentials(siteID, apiKey string, opts *Options) (*Integration, error) {
	if strings.TrimSpace(siteID) == "" {
		return nil, &opentrack.ConfigError{Field: "customerio.NewWithCredentials siteID", Reason: "is empty"}
	}
	if strings.TrimSpace(apiKey) == "" {
		return nil, &opentrack.ConfigError{Field: "customerio.NewWithCredentials apiKey", Reason: "is empty"}
	}
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment}
	}
	t.MaxIdleConnsPerHost = 100 // as go-customerio's own transport
	client := cio.NewTrackClient(siteID, apiKey, cio.WithRegion(cio.RegionUS), cio.WithHTTPClient(&http.Client{Transport: t}))
	return New(client, opts)
}

// The environment variables FromEnv reads.
const (
	envSiteID   = "CUSTOMERIO_SITE_ID"
	envAPIKey   = "CUSTOMERIO_API_KEY"
	envRegion   = "CUSTOMERIO_REGION"
	envTrackURL = "CUSTOMERIO_TRACK_URL"
)

// FromEnv returns an Integration configured by environment variables, read
// with getenv (nil means os.Getenv):
//
//	CUSTOMERIO_SITE_ID    Track API site ID (required)
//	CUSTOMERIO_API_KEY    Track API key (required)
//	CUSTOMERIO_REGION     US or EU, in any case (default US)
//	CUSTOMERIO_TRACK_URL  replaces the Track API base URL (a proxy, a local stand-in)
//
// A blank value counts as unset. It returns [opentrack.ErrNotConfigured]
// when none of these variables is set: the host leaves the integration out.
// A half configuration (a variable set without CUSTOMERIO_SITE_ID or
// CUSTOMERIO_API_KEY), an unknown region or a CUSTOMERIO_TRACK_URL that is
// not an absolute http(s) URL is a [*opentrack.ConfigError] naming the
// variable. FromEnv makes no request; ctx is not used yet.
func FromEnv(ctx context.Context, getenv func(string) string) (*Integration, error) {
	_ = ctx
	if getenv == nil {
		getenv = os.Getenv
	}
	site := strings.TrimSpace(getenv(envSiteID))
	key := strings.TrimSpace(getenv(envAPIKey))
	regionName := strings.TrimSpace(getenv(envRegion))
	trackURL := strings.TrimRight(strings.TrimSpace(getenv(envTrackURL)), "/")
	var set []string
	for _, v := range []struct{ name, value string }{{envSiteID, site}, {envAPIKey, key}, {envRegion, regionName}, {envTrackURL, trackURL}} {
		if v.value != "" {
			set = append(set, v.name)
		}
	}
	if len(set) == 0 {
		return nil, opentrack.ErrNotConfigured
	}
	for _, v := range []struct{ name, value string }{{envSiteID, site}, {envAPIKey, key}} {
		if v.value == "" {
			verb := " is"
			if len(set) > 1 {
				verb = " are"
			}
			return nil, &opentrack.ConfigError{Field: v.name, Reason: "is not set, but " + strings.Join(set, " and ") + verb + "; set both " + envSiteID + " and " + envAPIKey}
		}
	}
	region, err := ParseRegion(regionName)
	if err != nil {
		return nil, &opentrack.ConfigError{Field: envRegion, Reason: fmt.Sprintf("unknown region %q: want US or EU", regionName)}
	}
	if trackURL != "" {
		if err := checkBaseURL(trackURL); err != nil {
			return nil, &opentrack.ConfigError{Field: envTrackURL, Reason: err.Error()}
		}
	}
	return NewWithCredentials(site, key, &Options{Region: region, TrackURL: trackURL})
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http or https URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return fmt.Errorf("%q has a query or fragment; the Track API paths are appended to it", s)
	}
	return nil
}

// authorization returns the Authorization header client sends. go-customerio
// keeps the credentials unexported, so the header is read from one request
// sent to a RoundTripper that answers it in memory.
func authorization(client *cio.CustomerIO) string {
	probe := *client
	probe.URL = "http://customerio.invalid"
	var h string
	probe.Client = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		h = r.Header.Get("Authorization")
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})}
	_ = probe.TrackAnonymousCtx(context.Background(), "", "probe", nil)
	return h
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Name returns [Name], "Customer.io".
func (in *Integration) Name() string { return Name }

// Close closes the idle connections of the integration's HTTP client. The
// Manager calls it once, from Shutdown, after the last delivery. Later calls
// fail with [opentrack.ErrClosed], marked [opentrack.Permanent]; calls already in
// progress are not waited for. Close may be called more than once; it
// always returns nil.
func (in *Integration) Close(ctx context.Context) error {
	in.closed.Store(true)
	in.http.CloseIdleConnections()
	return nil
}

// errIfClosed returns a permanent [opentrack.ErrClosed] after Close, and
// nil before.
func (in *Integration) errIfClosed() error {
	if in.closed.Load() {
		return opentrack.Permanent(fmt.Errorf("customerio: %w", opentrack.ErrClosed))
	}
	return nil
}

// Identify creates or updates the person: PUT /api/v1/customers/{userId}
// with the traits as attributes, or {traits.email} without a userId. Dates
// in traits become unix seconds, createdAt becomes created_at, and the
// anonymousId is set as the anonymous_id attribute so that Customer.io
// merges the visitor's anonymous events into the person. Without a userId
// or traits.email the event is not deliverable.
func (in *Integration) Identify(ctx context.Context, e *spec.Identify) error {
	if err := in.errIfClosed(); err != nil {
		return err
	}
	id := e.UserID
	if id == "" {
		id, _ = e.Traits["email"].(string)
	}
	if id == "" {
		return notDeliverable("identify", "no userId and no traits.email")
	}
	attrs := withCreatedAt(convertTimes(e.Traits))
	if attrs == nil {
		attrs = map[string]any{}
	}
	if e.AnonymousID != "" {
		attrs["anonymous_id"] = e.AnonymousID
	}
	return in.viaSDK(ctx, "identify", func(ctx context.Context) error {
		return in.client.IdentifyCtx(ctx, id, attrs)
	})
}

// Track sends the event named e.Event with the properties as data and the
// event's time as its timestamp, for the person (userId) or, without one, as
// an anonymous event (anonymousId).
func (in *Integration) Track(ctx context.Context, e *spec.Track) error {
	if err := in.errIfClosed(); err != nil {
		return err
	}
	if e.Event == "" {
		return notDeliverable("track", "no event name")
	}
	return in.sendEvent(ctx, "track", &e.Common, eventBody{Name: e.Event, Data: convertTimes(e.Properties)})
}

// Page sends a page view (type "page") named after the page's URL
// (properties.url, else context.page.url), else its name, with the
// properties as data.
func (in *Integration) Page(ctx context.Context, e *spec.Page) error {
	if err := in.errIfClosed(); err != nil {
		return err
	}
	name := firstString(e.Properties["url"], pageURL(e.Context), e.Name)
	if name == "" {
		return notDeliverable("page", "no properties.url, context.page.url or name")
	}
	return in.sendEvent(ctx, "page", &e.Common, eventBody{Name: name, Type: "page", Data: convertTimes(e.Properties)})
}

// Screen sends a screen view (type "screen") named after the screen (its
// name, else properties.name), with the properties as data.
func (in *Integration) Screen(ctx context.Context, e *spec.Screen) error {
	if err := in.errIfClosed(); err != nil {
		return err
	}
	name := firstString(e.Name, e.Properties["name"])
	if name == "" {
		return notDeliverable("screen", "no name or properties.name")
	}
	return in.sendEvent(ctx, "screen", &e.Common, eventBody{Name: name, Type: "screen", Data: convertTimes(e.Properties)})
}

// Group creates or updates the group as a Customer.io object (type
// [Options.ObjectTypeID], id groupId, the traits as attributes) and relates
// the person to it, with one Track API v2 entity call. Without a userId the
// relation is to the anonymousId (action "identify_anonymous").
func (in *Integration) Group(ctx context.Context, e *spec.Group) error {
	if err := in.errIfClosed(); err != nil {
		return err
	}
	if e.GroupID == "" {
		return notDeliverable("group", "no groupId")
	}
	attrs := withCreatedAt(convertTimes(e.Traits))
	typeID := in.objectType
	for _, k := range []string{"objectTypeId", "object_type_id"} { // the latter wins, as in Segment
		if v := idString(attrs[k]); v != "" {
			typeID = v
		}
		delete(attrs, k)
	}
	relAttrs, _ := attrs["relationshipAttributes"].(map[string]any)
	delete(attrs, "relationshipAttributes")

	b := entityBody{
		Type:        "object",
		Action:      "identify",
		Identifiers: map[string]string{"object_type_id": typeID, "object_id": e.GroupID},
		Attributes:  attrs,
		Timestamp:   unixSeconds(e.Timestamp),
	}
	switch {
	case e.UserID != "":
		b.Relationships = []relationship{{Identifiers: personIdentifiers(e.UserID), Attributes: relAttrs}}
	case e.AnonymousID != "":
		b.Action = "identify_anonymous"
		b.Relationships = []relationship{{Identifiers: map[string]string{"anonymous_id": e.AnonymousID}, Attributes: relAttrs}}
	}
	return in.post(ctx, "group", "/api/v2/entity", b)
}

// Alias merges the person previousId into the person userId
// (POST /api/v1/merge_customers): userId is the primary, kept; previousId the
// secondary, merged and deleted. Each is read as a cio_id ("cio_" prefix),
// an email address or an id.
func (in *Integration) Alias(ctx context.Context, e *spec.Alias) error {
	if err := in.errIfClosed(); err != nil {
		return err
	}
	if e.UserID == "" || e.PreviousID == "" {
		return notDeliverable("alias", "userId and previousId are both required")
	}
	return in.viaSDK(ctx, "alias", func(ctx context.Context) error {
		return in.client.MergeCustomersCtx(ctx, identifier(e.UserID), identifier(e.PreviousID))
	})
}

// eventBody is a Track API v1 event, page view or screen view.
type eventBody struct {
	Name        string         `json:"name"`
	Type        string         `json:"type,omitempty"` // "page" or "screen"; Customer.io's default is "event"
	ID          string         `json:"id,omitempty"`
	Timestamp   int64          `json:"timestamp,omitempty"`
	AnonymousID string         `json:"anonymous_id,omitempty"`
	Data        map[string]any `json:"data,omitempty"`
}

// entityBody is a Track API v2 entity call.
type entityBody struct {
	Type          string            `json:"type"`
	Action        string            `json:"action"`
	Identifiers   map[string]string `json:"identifiers"`
	Attributes    map[string]any    `json:"attributes,omitempty"`
	Relationships []relationship    `json:"cio_relationships,omitempty"`
	Timestamp     int64             `json:"timestamp,omitempty"`
}

type relationship struct {
	Identifiers map[string]string `json:"identifiers"`
	Attributes  map[string]any    `json:"relationship_attributes,omitempty"`
}

// sendEvent posts b for the event's person, or anonymously.
func (in *Integration) sendEvent(ctx context.Context, call string, c *spec.Common, b eventBody) error {
	b.Timestamp = unixSeconds(c.Timestamp)
	b.ID = eventID(c)
	path := "/api/v1/events"
	switch {
	case c.UserID != "":
		path = "/api/v1/customers/" + url.PathEscape(c.UserID) + "/events"
	case c.AnonymousID != "":
		b.AnonymousID = c.AnonymousID
	default:
		return notDeliverable(call, "no userId and no anonymousId")
	}
	return in.post(ctx, call, path, b)
}

// viaSDK runs a go-customerio call and classifies its outcome by the status
// the recorder saw.
func (in *Integration) viaSDK(ctx context.Context, call string, do func(context.Context) error) error {
	o := &outcome{}
	err := do(context.WithValue(ctx, outcomeKey{}, o))
	return classify(call, o.status, o.header, o.body, err)
}

// post sends body as JSON to the Track API path, with the client's
// credentials and User-Agent, and classifies the answer.
func (in *Integration) post(ctx context.Context, call, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return opentrack.Permanent(fmt.Errorf("customerio: %s: %w", call, err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.base+path, bytes.NewReader(b))
	if err != nil {
		return opentrack.Permanent(fmt.Errorf("customerio: %s: %w", call, err))
	}
	req.Header.Set("Authorization", in.auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", in.userAgent)
	resp, err := in.http.Do(req)
	if err != nil {
		return classify(call, 0, nil, nil, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(io.LimitReader(resp.Body, httpx.MaxErrorBody))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	return classify(call, resp.StatusCode, resp.Header, got, nil)
}
