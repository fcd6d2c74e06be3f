package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/httpx"
	"github.com/opentrackhq/opentrack/spec"
)

// Name is the integration's default name in Segment's "integrations"
// object; [Options.Name] replaces it.
const Name = "Webhook"

// Defaults for the zero fields of [Options].
const (
	// DefaultTimeout bounds each request, answer included.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxBatchBytes bounds the body of a batch request: Segment's
	// own limit for a batch, so a receiver that takes Segment's batches
	// takes these.
	DefaultMaxBatchBytes = 500 << 10
)

// The headers the integration sets on every request, besides Content-Type
// and User-Agent.
const (
	// HeaderIdempotencyKey carries the messageId of the event, or the id of
	// the batch, the same on every attempt: a receiver that has already
	// processed it can drop the redelivery.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderSignature carries Segment's signature: the hex HMAC-SHA1 of the
	// body, keyed with [Options.Secret].
	HeaderSignature = "X-Signature"
	// HeaderWebhookID, HeaderWebhookTimestamp and HeaderWebhookSignature
	// are the Standard Webhooks headers, sent with [SigningStandard].
	HeaderWebhookID        = "Webhook-Id"
	HeaderWebhookTimestamp = "Webhook-Timestamp"
	HeaderWebhookSignature = "Webhook-Signature"
)

// StatusError is an answer other than 2xx.
// Find it with errors.As; it carries the status and the start of the
// answer's body. Whether it is retried is marked separately: 408, 429 and
// 5xx are retryable, other statuses [opentrack.Permanent].
type StatusError = httpx.StatusError

// Signing is a way of signing requests with [Options.Secret].
type Signing string

// The signing schemes.
const (
	// SigningSegment is Segment's: the X-Signature header holds the hex
	// HMAC-SHA1 of the exact body bytes, keyed with the secret as is. It
	// is the default; with no secret, requests are not signed.
	SigningSegment Signing = "segment"
	// SigningStandard is Standard Webhooks' (https://www.standardwebhooks.com):
	// webhook-id, webhook-timestamp (unix seconds) and webhook-signature
	// ("v1," and the base64 HMAC-SHA256 of "id.timestamp.body"), keyed with
	// the base64-decoded part of the secret after its "whsec_" prefix.
	SigningStandard Signing = "standard"
)

// ParseSigning reads a signing scheme name, "segment" or "standard", in any
// case. An empty or blank string is SigningSegment.
func ParseSigning(s string) (Signing, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", string(SigningSegment):
		return SigningSegment, nil
	case string(SigningStandard):
		return SigningStandard, nil
	}
	return "", fmt.Errorf("webhook: unknown signing %q: want segment or standard", s)
}

// Options configures an [Integration]. The zero value, like a nil *Options,
// means the defaults: one event per POST request, unsigned, 10s timeout.
type Options struct {
	// Name is the integration's name, its key in Segment's "integrations"
	// object. Default [Name], "Webhook". Give each webhook integration of
	// one Manager its own name.
	Name string

	// Method is POST (the default), PUT or PATCH, in any case.
	Method string

	// Headers are sent with every request, an Authorization header for
	// instance. They may replace the User-Agent, but not the headers the
	// integration sets itself: Content-Type, Content-Length, Host,
	// Transfer-Encoding, Idempotency-Key, X-Signature and the webhook-*
	// headers. They are never sent to another host: see [New] on redirects.
	Headers http.Header

	// Secret signs every request as Signing says. Empty means unsigned
	// requests with SigningSegment; SigningStandard needs a secret.
	Secret string

	// Signing is the signing scheme. Default SigningSegment.
	Signing Signing

	// BatchSize is the most events one request carries. 1 (the default)
	// sends each event alone, as a JSON object; more sends JSON arrays of
	// up to BatchSize events, even when a batch holds one event.
	BatchSize int

	// MaxBatchBytes bounds the body of a batch request. An event larger
	// than it on its own is sent alone, in an array of one. It is not used
	// when BatchSize is 1. Default [DefaultMaxBatchBytes].
	MaxBatchBytes int

	// Timeout bounds each request, from sending to the end of the answer.
	// Default [DefaultTimeout]. The Manager's Delivery.CallTimeout bounds
	// each call as well.
	Timeout time.Duration

	// HTTPClient sends the requests; nil means a client of the
	// integration's own. The integration uses a copy whose CheckRedirect
	// is replaced (see [New]); its Transport, Jar and Timeout are kept.
	HTTPClient *http.Client
}

// Integration sends events to a webhook URL. It is safe for concurrent use.
// After [Integration.Close] every call fails with [opentrack.ErrClosed].
type Integration struct {
	name      string
	url       string
	origin    string
	method    string
	header    http.Header // custom headers and User-Agent
	signing   Signing
	secret    []byte // Segment's key, or Standard Webhooks' decoded key; nil: unsigned
	batchSize int
	maxBytes  int
	timeout   time.Duration
	client    *http.Client
	own       bool // the client and its transport are the integration's own
	closed    atomic.Bool
}

var (
	_ opentrack.Integration   = (*Integration)(nil)
	_ opentrack.Batcher       = (*Integration)(nil)
	_ opentrack.DeliveryTuner = (*Integration)(nil)
	_ opentrack.Closer        = (*Integration)(nil)
)

// modulePath is the module whose version the User-Agent names.
const modulePath = "github.com/opentrackhq/opentrack"

// reserved are the headers Options.Headers may not set.
var reserved = []string{"Content-Type", "Content-Length", "Host", "Transfer-Encoding",
	HeaderIdempotencyKey, HeaderSignature, HeaderWebhookID, HeaderWebhookTimestamp, HeaderWebhookSignature}

// New returns an Integration that sends events to rawURL, an absolute http
// or https URL. opts may be nil. Invalid arguments are reported as a
// [*opentrack.ConfigError] naming the field ("webhook.URL",
// "webhook.Options.Method", ...).
//
// Redirects are followed only to the same scheme, host and port, and only
// when they keep the method and body (307 and 308; a 301, 302 or 303 would
// turn the request into a GET without its body): a redirect elsewhere is
// not followed, so neither the signature nor the custom headers ever reach
// another host, and the event is reported as a permanent failure.
func New(rawURL string, opts *Options) (*Integration, error) {
	if opts == nil {
		opts = &Options{}
	}
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		// url.Parse's error quotes the URL, credentials included: say
		// what is wrong without it.
		reason := "does not parse as a URL"
		var ue *url.Error
		if errors.As(err, &ue) {
			reason += ": " + ue.Err.Error()
		}
		return nil, &opentrack.ConfigError{Field: "webhook.URL", Reason: reason}
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &opentrack.ConfigError{Field: "webhook.URL", Reason: fmt.Sprintf("%q is not an absolute http or https URL", u.Redacted())}
	}
	in := &Integration{
		name:      opts.Name,
		url:       u.String(),
		origin:    origin(u),
		batchSize: opts.BatchSize,
		maxBytes:  opts.MaxBatchBytes,
		timeout:   opts.Timeout,
		signing:   opts.Signing,
	}
	if strings.TrimSpace(in.name) == "" {
		in.name = Name
	}
	switch m := strings.ToUpper(strings.TrimSpace(opts.Method)); m {
	case "":
		in.method = http.MethodPost
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		in.method = m
	default:
		return nil, &opentrack.ConfigError{Field: "webhook.Options.Method", Reason: fmt.Sprintf("%q: want POST, PUT or PATCH", opts.Method)}
	}
	switch {
	case opts.BatchSize < 0:
		return nil, &opentrack.ConfigError{Field: "webhook.Options.BatchSize", Reason: "must not be negative"}
	case opts.BatchSize == 0:
		in.batchSize = 1
	}
	switch {
	case opts.MaxBatchBytes < 0:
		return nil, &opentrack.ConfigError{Field: "webhook.Options.MaxBatchBytes", Reason: "must not be negative"}
	case opts.MaxBatchBytes == 0:
		in.maxBytes = DefaultMaxBatchBytes
	}
	switch {
	case opts.Timeout < 0:
		return nil, &opentrack.ConfigError{Field: "webhook.Options.Timeout", Reason: "must not be negative"}
	case opts.Timeout == 0:
		in.timeout = DefaultTimeout
	}

	switch in.signing {
	case "":
		in.signing = SigningSegment
		fallthrough
	case SigningSegment:
		if opts.Secret != "" {
			in.secret = []byte(opts.Secret)
		}
	case SigningStandard:
		key, ok := strings.CutPrefix(opts.Secret, "whsec_")
		if !ok {
			return nil, &opentrack.ConfigError{Field: "webhook.Options.Secret", Reason: `Standard Webhooks signing needs a secret starting with "whsec_"`}
		}
		b, err := base64.StdEncoding.DecodeString(key)
		if err != nil || len(b) == 0 {
			return nil, &opentrack.ConfigError{Field: "webhook.Options.Secret", Reason: `the part after "whsec_" must be base64 (standard alphabet, padded) of a non-empty key`}
		}
		in.secret = b
	default:
		return nil, &opentrack.ConfigError{Field: "webhook.Options.Signing", Reason: fmt.Sprintf("%q: want %q or %q", opts.Signing, SigningSegment, SigningStandard)}
	}

	in.header = http.Header{"User-Agent": {userAgent()}}
	for k, vs := range opts.Headers {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, &opentrack.ConfigError{Field: "webhook.Options.Headers", Reason: fmt.Sprintf("%q is not a valid header name", k)}
		}
		ck := http.CanonicalHeaderKey(k)
		for _, r := range reserved {
			if ck == http.CanonicalHeaderKey(r) {
				return nil, &opentrack.ConfigError{Field: "webhook.Options.Headers", Reason: ck + " is set by the integration"}
			}
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				// The value may be a credential: name the header only.
				return nil, &opentrack.ConfigError{Field: "webhook.Options.Headers", Reason: "the value of " + ck + " holds a control character"}
			}
		}
		if ck == "User-Agent" {
			in.header.Del(ck)
		}
		for _, v := range vs {
			in.header.Add(ck, v)
		}
	}

	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		in.client = &c
	} else {
		in.client, in.own = &http.Client{Transport: newTransport()}, true
	}
	in.client.CheckRedirect = in.checkRedirect
	return in, nil
}

// newTransport returns a transport like http.DefaultTransport (proxy from
// the environment, HTTP/2, its timeouts) that keeps enough idle
// connections for the Manager's workers to reuse them on one host.
func newTransport() http.RoundTripper {
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t := dt.Clone()
		t.MaxIdleConnsPerHost = 64
		return t
	}
	return http.DefaultTransport
}

// origin returns u's scheme, host and port, with the port made explicit.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// redirectError is why a redirect was not followed.
type redirectError struct {
	to, reason string
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("redirect to %s not followed: %s", e.to, e.reason)
}

// checkRedirect lets the client follow a redirect to the webhook's own
// origin that keeps the method (and so the body and its signature).
func (in *Integration) checkRedirect(req *http.Request, via []*http.Request) error {
	switch {
	case origin(req.URL) != in.origin:
		return &redirectError{to: req.URL.Redacted(), reason: "not the webhook's scheme, host and port"}
	case req.Method != via[0].Method:
		status := 0
		if req.Response != nil {
			status = req.Response.StatusCode
		}
		return &redirectError{to: req.URL.Redacted(), reason: fmt.Sprintf("a %d would turn the %s into a %s without its body", status, via[0].Method, req.Method)}
	case len(via) >= 10:
		return &redirectError{to: req.URL.Redacted(), reason: "stopped after 10 redirects"}
	}
	return nil
}

// userAgent names OpenTrack and the version of its module in the binary.
func userAgent() string {
	v := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == modulePath {
			v = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == modulePath {
				v = d.Version
				if d.Replace != nil && d.Replace.Version != "" {
					v = d.Replace.Version
				}
			}
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	return "OpenTrack/" + v + " (+https://github.com/opentrackhq/opentrack)"
}

// Name returns [Options.Name], by default [Name].
func (in *Integration) Name() string { return in.name }

// Delivery asks the Manager for batches of [Options.BatchSize] events and
// [Options.MaxBatchBytes]: with BatchSize 1, each event is handed over on
// its own, at once.
func (in *Integration) Delivery() opentrack.Delivery {
	if in.batchSize == 1 {
		return opentrack.Delivery{Batch: opentrack.BatchOptions{MaxEvents: 1}}
	}
	return opentrack.Delivery{Batch: opentrack.BatchOptions{MaxEvents: in.batchSize, MaxBytes: in.maxBytes}}
}

// Close closes the idle connections of the integration's own HTTP client
// (not of one given in [Options.HTTPClient]). Later calls fail with
// [opentrack.ErrClosed], marked [opentrack.Permanent]; calls in progress are
// not waited for. Close may be called more than once; it returns nil.
func (in *Integration) Close(ctx context.Context) error {
	in.closed.Store(true)
	if in.own {
		in.client.CloseIdleConnections()
	}
	return nil
}

func (in *Integration) errIfClosed() error {
	if in.closed.Load() {
		return opentrack.Permanent(fmt.Errorf("webhook: %w", opentrack.ErrClosed))
	}
	return nil
}

// Track sends e alone, as [Integration.Batch] would.
func (in *Integration) Track(ctx context.Context, e *spec.Track) error { return in.one(ctx, e) }

// Identify sends e alone, as [Integration.Batch] would.
func (in *Integration) Identify(ctx context.Context, e *spec.Identify) error { return in.one(ctx, e) }

// Page sends e alone, as [Integration.Batch] would.
func (in *Integration) Page(ctx context.Context, e *spec.Page) error { return in.one(ctx, e) }

// Screen sends e alone, as [Integration.Batch] would.
func (in *Integration) Screen(ctx context.Context, e *spec.Screen) error { return in.one(ctx, e) }

// Group sends e alone, as [Integration.Batch] would.
func (in *Integration) Group(ctx context.Context, e *spec.Group) error { return in.one(ctx, e) }

// Alias sends e alone, as [Integration.Batch] would.
func (in *Integration) Alias(ctx context.Context, e *spec.Alias) error { return in.one(ctx, e) }

func (in *Integration) one(ctx context.Context, e spec.Event) error {
	return in.Batch(ctx, []spec.Event{e})
}

// Batch sends events in as few requests as [Options.BatchSize] and
// [Options.MaxBatchBytes] allow, one after the other: with BatchSize 1, one
// JSON object per request; otherwise JSON arrays. Each request's outcome
// applies to all of its events. When every event failed alike (one request,
// or an error before any), that error is returned; otherwise a
// [*opentrack.BatchError] says which events failed. An event that cannot be
// encoded fails alone, permanently. Once ctx ends, the events not yet sent
// fail with its error, which the Manager retries.
func (in *Integration) Batch(ctx context.Context, events []spec.Event) error {
	if err := in.errIfClosed(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	var (
		be      opentrack.BatchError
		outcome error // the error of the events failed so far, if they all failed alike
		alike   = true
		body    []byte // the request being built
		idx     []int  // its events' indexes
		ids     []byte // its events' messageIds, length-prefixed, for the batch id
		stop    error  // ctx's error, once it ended
	)
	fail := func(err error, idx ...int) {
		if len(be.Failed) > 0 {
			alike = false
		}
		outcome = err
		for _, i := range idx {
			be.Fail(i, err)
		}
	}
	flush := func() {
		if len(idx) == 0 {
			return
		}
		err := stop
		if err == nil {
			if in.batchSize == 1 {
				err = in.send(ctx, eventID(events[idx[0]], body), body)
			} else {
				err = in.send(ctx, batchID(ids), append(body, ']'))
			}
			if ctx.Err() != nil {
				stop = fmt.Errorf("webhook: %w", ctx.Err())
			}
		}
		if err != nil {
			fail(err, idx...)
		}
		body, idx, ids = nil, idx[:0], ids[:0]
	}
	for i, e := range events {
		raw, err := e.MarshalJSON()
		if err != nil {
			fail(opentrack.Permanent(fmt.Errorf("webhook: encoding event %q: %w", e.Fields().MessageID, err)), i)
			continue
		}
		if in.batchSize == 1 {
			body, idx = raw, append(idx, i)
			flush()
			continue
		}
		if len(idx) > 0 && (len(idx) >= in.batchSize || len(body)+1+len(raw)+1 > in.maxBytes) {
			flush()
		}
		if len(idx) == 0 {
			n := min(in.batchSize, len(events)-i)
			body = make([]byte, 0, min(in.maxBytes, n*(len(raw)+1))+1)
			body = append(body, '[')
		} else {
			body = append(body, ',')
		}
		body = append(body, raw...)
		idx = append(idx, i)
		ids = binary.AppendUvarint(ids, uint64(len(e.Fields().MessageID)))
		ids = append(ids, e.Fields().MessageID...)
	}
	flush()
	switch {
	case len(be.Failed) == 0:
		return nil
	case alike && len(be.Failed) == len(events):
		return outcome
	}
	return &be
}

// eventID is the webhook id of one event: its messageId, or for an event
// without one (built in Go, not received) a hash of its body.
func eventID(e spec.Event, body []byte) string {
	if id := e.Fields().MessageID; id != "" {
		return id
	}
	sum := sha256.Sum256(body)
	return "body_" + hex.EncodeToString(sum[:16])
}

// batchID is the webhook id of a batch: derived from its events'
// messageIds, so a batch of the same events, in the same order, has the same
// id on every attempt.
func batchID(ids []byte) string {
	sum := sha256.Sum256(ids)
	return "batch_" + hex.EncodeToString(sum[:16])
}

// maxDrain bounds how much of an answer is read to let its connection be
// reused.
const maxDrain = 64 << 10

// send makes one request with body and classifies its outcome.
func (in *Integration) send(ctx context.Context, id string, body []byte) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, in.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, in.method, in.url, bytes.NewReader(body))
	if err != nil {
		return opentrack.Permanent(fmt.Errorf("webhook: %w", err))
	}
	maps.Copy(req.Header, in.header)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderIdempotencyKey, id)
	in.sign(req.Header, id, body)

	resp, err := in.client.Do(req)
	if err != nil {
		var re *redirectError
		switch {
		case errors.As(err, &re):
			return opentrack.Permanent(fmt.Errorf("webhook: %w", err))
		case errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil:
			return fmt.Errorf("webhook: no answer within %v: %w", in.timeout, err)
		}
		return fmt.Errorf("webhook: %w", err) // a network error: retried
	}
	defer resp.Body.Close()
	var head []byte
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		head, _ = io.ReadAll(io.LimitReader(resp.Body, httpx.MaxErrorBody))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	return httpx.Classify("webhook", resp.StatusCode, resp.Header, head)
}

// sign sets the signature headers of a request with id and body.
func (in *Integration) sign(h http.Header, id string, body []byte) {
	if in.secret == nil {
		return
	}
	switch in.signing {
	case SigningStandard:
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		mac := hmac.New(sha256.New, in.secret)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(ts))
		mac.Write([]byte{'.'})
		mac.Write(body)
		h.Set(HeaderWebhookID, id)
		h.Set(HeaderWebhookTimestamp, ts)
		h.Set(HeaderWebhookSignature, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	default:
		mac := hmac.New(sha1.New, in.secret)
		mac.Write(body)
		h.Set(HeaderSignature, hex.EncodeToString(mac.Sum(nil)))
	}
}
