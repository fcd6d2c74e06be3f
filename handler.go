package opentrack

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"

	"github.com/opentrackhq/opentrack/spec"
)

// Limits of the Segment HTTP Tracking API, the defaults of [HandlerOptions].
const (
	DefaultMaxEventBytes  = 32 << 10  // one event, and the body of a single-event call
	DefaultMaxBatchBytes  = 500 << 10 // the body of a batch call, after decompression
	DefaultMaxBatchEvents = 2500
)

// HandlerOptions configures a [Handler]. The zero value is an open handler
// (no write key) that accepts browsers from any origin, with Segment's limits.
type HandlerOptions struct {
	// WriteKeys are the accepted write keys. A request names its key as the
	// Basic-auth username (password empty or absent) or, without an
	// Authorization header, as the body's "writeKey". When WriteKeys is nil
	// or empty every request is accepted. Empty strings in it are ignored,
	// and a list of only empty strings accepts nothing (so an unset
	// environment variable does not open the collector).
	WriteKeys []string

	// AllowedOrigins lists the browser origins ("https://app.example.com")
	// allowed to send events, for CORS. Empty, or holding "*", allows every
	// origin. A request from an origin not on the list is answered 403.
	AllowedOrigins []string

	// MaxEventBytes bounds one event, and the body of a single-event call.
	// Default DefaultMaxEventBytes (32 KB). For this and the two limits
	// below, zero or a negative value means the default.
	MaxEventBytes int
	// MaxBatchBytes bounds the body of a batch call after decompression.
	// Default DefaultMaxBatchBytes (500 KB).
	MaxBatchBytes int
	// MaxBatchEvents bounds the events of one batch call. Default
	// DefaultMaxBatchEvents (2500).
	MaxBatchEvents int

	// ClientIP returns the address recorded as context.ip when an event
	// has none. Nil means the host part of the request's RemoteAddr; set it
	// to read X-Forwarded-For when the handler runs behind a trusted proxy.
	ClientIP func(*http.Request) string

	// Logger receives server-side errors. Nil means slog.Default().
	Logger *slog.Logger

	// PublicURL is the public address of the handler's mount point, where
	// Segment's /v1 would be ("https://collector.example.com/v1"). The
	// analytics.js settings the handler serves name it as the address to
	// send events to. Empty means each request's own address: its Host, the
	// path the handler is mounted under, and https when the connection is
	// TLS (else http); see TrustProxyHeaders.
	PublicURL string

	// TrustProxyHeaders makes the analytics.js settings read the public
	// host, scheme and path prefix from the Forwarded, X-Forwarded-Host,
	// X-Forwarded-Proto and X-Forwarded-Prefix headers when PublicURL is
	// empty. Set it only behind a proxy that sets or strips them: a client
	// could otherwise name any host. It does not change ClientIP.
	TrustProxyHeaders bool

	// Settings, if set, returns analytics.js settings of the host's own for
	// a write key, merged over the defaults the handler serves at
	// GET /projects/{writeKey}/settings: the Segment.io integration sending
	// to this collector, no other integration, no remote plugin or
	// middleware, and analytics.js's own metrics off (sampleRate 0).
	// Objects are merged key by key, other values replace the default, and
	// a nil value removes it. It is called on every settings request,
	// concurrently, and may return nil; the handler reads the map and does
	// not keep it.
	Settings func(writeKey string) map[string]any
	// MeterProvider gives the meter of the Handler's metrics (see
	// [MetricHTTPRequests]). Nil means otel.GetMeterProvider(). The
	// Handler's instruments stay registered for as long as the provider
	// lives.
	MeterProvider metric.MeterProvider
	// Propagator reads the trace context a request carries when it runs in
	// no span of the host's (such as otelhttp's), so that the delivery
	// spans of its events link to it. Nil means propagation.TraceContext{}
	// (the W3C traceparent header).
	Propagator propagation.TextMapPropagator
}

// Handler serves the Segment HTTP Tracking API. Mount it where Segment's /v1
// is, on any router: it routes by the last segment of the path, so it works
// whether the router strips the mount prefix or not:
//
//	mux.Handle("/v1/", http.StripPrefix("/v1", opentrack.NewHandler(m, nil))) // net/http
//	mux.Handle("/v1/", opentrack.NewHandler(m, nil))                           // net/http, prefix kept
//	r.Mount("/v1", opentrack.NewHandler(m, nil))                               // chi
//
// It serves GET /projects/{writeKey}/settings (analytics.js's settings,
// naming this collector) and GET /pixel/{track,page,screen,identify,group,alias}
// (Segment's tracking pixel, which always answers a transparent GIF; see
// [Handler.PixelStats]), beside the POST routes.
//
// It serves POST /track /identify /page /screen /group /alias /batch /import
// and analytics.js's short forms /t /i /p /s /g /a /b, and OPTIONS for CORS
// preflights. POST /m, where analytics.js reports its own metrics, is
// answered 200 and dropped. Each request is read, checked and answered at once; accepted
// events are handed to the Manager, which delivers them in the background.
//
// Answers:
//   - 200 {"success":true}: accepted. A batch with some invalid events
//     accepts the valid ones and lists the others by index under "errors".
//   - 400: invalid JSON, or an invalid event (or a batch with no valid
//     event); the body names each field and the rule it broke.
//   - 401 {"error":"Invalid write key"}; 403 for an origin not allowed;
//     404 and 405 as JSON; 413 for a body over the limits, or a batch larger
//     than an integration's whole queue; 415 for a Content-Encoding other
//     than gzip or none.
//   - 503 with Retry-After: a target queue is full or the Manager is shutting
//     down; nothing of the request was accepted.
//
// The body is read as JSON whatever Content-Type the request declares, or
// none: analytics.js sends text/plain, and RudderStack's Node SDK declares
// application/x-www-form-urlencoded for its gzipped JSON. A body that is not
// JSON is answered 400.
type Handler struct {
	q              Enqueuer
	keyed          bool // write keys were configured
	keys           [][sha256.Size]byte
	anyOrigin      bool
	origins        map[string]bool
	maxEventBytes  int
	maxBatchBytes  int
	maxBatchEvents int
	clientIP       func(*http.Request) string
	log            *slog.Logger
	now            func() time.Time
	get            *getRoutes // the GET routes: analytics.js settings and the pixel
	tel            *handlerTelemetry
}

// Enqueuer takes accepted events; [*Manager] is one. Enqueue returns once the
// events are accepted, or [ErrQueueFull], [ErrClosed] or [ErrTooLarge],
// which the Handler answers with 503 or 413.
type Enqueuer interface {
	Enqueue(ctx context.Context, events ...spec.Event) error
}

// NewHandler returns a Handler that hands accepted events to q, usually a
// [*Manager]. opts may be nil.
func NewHandler(q Enqueuer, opts *HandlerOptions) *Handler {
	if opts == nil {
		opts = &HandlerOptions{}
	}
	h := &Handler{
		q:              q,
		maxEventBytes:  orDefault(opts.MaxEventBytes, DefaultMaxEventBytes),
		maxBatchBytes:  orDefault(opts.MaxBatchBytes, DefaultMaxBatchBytes),
		maxBatchEvents: orDefault(opts.MaxBatchEvents, DefaultMaxBatchEvents),
		clientIP:       opts.ClientIP,
		log:            opts.Logger,
		now:            time.Now,
		anyOrigin:      len(opts.AllowedOrigins) == 0,
		origins:        map[string]bool{},
	}
	if h.clientIP == nil {
		h.clientIP = remoteHost
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.tel = newHandlerTelemetry(opts, h.log)
	h.keyed = len(opts.WriteKeys) > 0
	for _, k := range opts.WriteKeys {
		if k != "" {
			h.keys = append(h.keys, sha256.Sum256([]byte(k)))
		}
	}
	if h.keyed && len(h.keys) == 0 {
		h.log.Error("opentrack: HandlerOptions.WriteKeys holds only empty keys; every request will be refused")
	}
	for _, o := range opts.AllowedOrigins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" {
			h.anyOrigin = true
		} else if o != "" {
			h.origins[strings.ToLower(o)] = true
		}
	}
	h.get = newGetRoutes(opts, h.log)
	return h
}

func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// routes maps the last segment of a path to the call type; "" marks a batch.
var routes = map[string]spec.Type{
	"track": spec.TypeTrack, "t": spec.TypeTrack,
	"identify": spec.TypeIdentify, "i": spec.TypeIdentify,
	"page": spec.TypePage, "p": spec.TypePage,
	"screen": spec.TypeScreen, "s": spec.TypeScreen,
	"group": spec.TypeGroup, "g": spec.TypeGroup,
	"alias": spec.TypeAlias, "a": spec.TypeAlias,
	"batch": "", "b": "", "import": "",
}

// metricsRoute is where analytics.js posts its client-side metrics.
const metricsRoute = "m"

// lastSegment returns the last segment of a URL path, ignoring one trailing
// slash. The handler routes by it, so it serves the same whether the host's
// router strips its mount prefix (http.StripPrefix) or not (chi's Mount,
// gorilla/mux, echo and gin adapters).
func lastSegment(path string) string {
	path = strings.TrimSuffix(path, "/")
	return path[strings.LastIndexByte(path, '/')+1:]
}

// Headers a browser may send; analytics.js sends Authorization and, on
// retries, X-Retry-Count, so a preflight must name them.
const allowHeaders = "Authorization, Content-Type, Content-Encoding, X-Retry-Count"

// allowedHeaders answers a preflight: the headers analytics.js sends, plus
// any other well-formed header names the page asks for (analytics.js lets a
// page add its own).
func allowedHeaders(requested []string) string {
	out := allowHeaders
	seen := map[string]bool{"authorization": true, "content-type": true, "content-encoding": true, "x-retry-count": true}
	for _, line := range requested {
		for _, name := range strings.Split(line, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" || seen[name] || !isToken(name) {
				continue
			}
			seen[name] = true
			out += ", " + name
		}
	}
	return out
}

// isToken reports whether s is a valid HTTP header name.
func isToken(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return len(s) <= 64
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ServeHTTP implements http.Handler. A request goes through its stages in
// order, and the first that refuses it answers: CORS, route, auth, body,
// decode, enrich, accept.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w = h.tel.begin(w, r)
	defer h.tel.end(w, r)
	seg := lastSegment(r.URL.Path)
	typ, post := routes[seg]
	get := isGetRoute(r.URL.EscapedPath())
	if !h.cors(w, r) {
		if pixelType(r.URL.EscapedPath()) != "" && r.Method == http.MethodGet {
			// An image cannot show an error: the pixel answers its GIF,
			// and the call is counted as refused, not taken.
			h.get.pixel.unauthorized.Add(1)
			writePixel(w)
			return
		}
		writeError(w, http.StatusForbidden, "Origin not allowed")
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		h.serveGet(w, r)
		return
	}
	if !post && !get && seg != metricsRoute {
		writeError(w, http.StatusNotFound, "Not found")
		return
	}
	switch r.Method {
	case http.MethodPost:
		if get {
			w.Header().Set("Allow", "GET, HEAD, OPTIONS")
			writeError(w, http.StatusMethodNotAllowed, "Method not allowed")
			return
		}
	case http.MethodOptions:
		hdr := w.Header()
		if get {
			hdr.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		} else {
			hdr.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		}
		hdr.Set("Access-Control-Allow-Headers", allowedHeaders(r.Header.Values("Access-Control-Request-Headers")))
		hdr.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "Method not allowed")
		return
	}
	if seg == metricsRoute {
		// analytics.js reports its own delivery metrics here; they are
		// not events, so they are read and dropped.
		_, _ = io.Copy(io.Discard, http.MaxBytesReader(unwrapWriter(w), r.Body, int64(h.maxEventBytes)))
		writeSuccess(w)
		return
	}

	// Auth, first part: a key in the Authorization header decides; without
	// one, the body's key does, once the body is read.
	headerKey, hasHeaderKey := basicUser(r.Header.Get("Authorization"))
	if hasHeaderKey && !h.keyValid(headerKey) {
		writeError(w, http.StatusUnauthorized, "Invalid write key")
		return
	}

	limit := h.maxEventBytes
	if typ == "" {
		limit = h.maxBatchBytes
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 2*DefaultMaxBatchBytes {
			buf.Reset()
			bufPool.Put(buf)
		}
	}()
	buf.Reset()
	if status, msg := h.readBody(w, r, buf, limit); status != 0 {
		writeError(w, status, msg)
		return
	}
	receivedAt := h.now().UTC()

	c, status, answer := h.decode(buf.Bytes(), typ, hasHeaderKey)
	noteRequest(w, buf.Len(), c)
	if !hasHeaderKey && h.keyed && (c == nil || !h.keyValid(c.bodyKey)) {
		writeError(w, http.StatusUnauthorized, "Invalid write key")
		return
	}
	if status != 0 {
		writeJSON(w, status, answer)
		return
	}
	ip := h.clientIP(r)
	for _, e := range c.events {
		e.Fields().WriteKey = ""
		spec.Enrich(e, receivedAt, ip)
	}
	if !h.accept(w, h.tel.traceContext(r), c.events) {
		return
	}
	if len(c.rejected) == 0 {
		writeSuccess(w)
		return
	}
	writeJSON(w, http.StatusOK, batchBody{Success: true, Accepted: len(c.events), Rejected: len(c.rejected), Errors: capErrors(c.rejected)})
}

// cors checks the request's Origin, if any, and sets the CORS headers of
// the answer. It returns false for an origin not allowed.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	hdr := w.Header()
	hdr["Vary"] = varyOrigin
	if origin := r.Header.Get("Origin"); origin != "" {
		if !h.originAllowed(origin) {
			return false
		}
		hdr.Set("Access-Control-Allow-Origin", origin)
	}
	return true
}

// call is a decoded request: the valid events, the items refused, and the
// write key the body named.
type call struct {
	events   []spec.Event
	rejected []itemError
	bodyKey  string
	refused  int // a single call's event, read and refused with the request
}

// decode reads a single call (typ set) or a batch (typ empty) and validates
// its events. It returns the call, or a status and answer when the request
// is refused as a whole: invalid JSON, an invalid single event, a batch
// with no valid event. c is returned whenever the body key could be read,
// even when the request is refused, so that auth is checked first.
func (h *Handler) decode(body []byte, typ spec.Type, keyChecked bool) (c *call, status int, answer any) {
	if typ != "" {
		e, err := spec.Decode(body, typ)
		if e != nil {
			c = &call{bodyKey: e.Fields().WriteKey}
		}
		if err == nil {
			err = e.Validate()
		}
		if err != nil {
			if c != nil {
				c.refused = 1
			}
			return c, http.StatusBadRequest, h.invalid(err, "Invalid event")
		}
		c.events = []spec.Event{e}
		return c, 0, nil
	}
	b, err := spec.DecodeBatch(body)
	if b != nil {
		c = &call{bodyKey: b.WriteKey}
		if !keyChecked && h.keyed && !h.keyValid(b.WriteKey) {
			return c, 0, nil // refused by the caller before any item is decoded
		}
	}
	if err != nil { // invalid JSON, or a field of the envelope, not of an event
		return c, http.StatusBadRequest, h.invalid(err, "Invalid batch")
	}
	switch {
	case len(b.Items) == 0:
		return c, http.StatusBadRequest, errorBody{Error: "Invalid batch", Fields: []spec.FieldError{{Field: "batch", Rule: "required", Message: "must hold at least one event"}}}
	case len(b.Items) > h.maxBatchEvents:
		return c, http.StatusBadRequest, errorBody{Error: "Invalid batch", Fields: []spec.FieldError{{Field: "batch", Rule: "length", Message: fmt.Sprintf("holds %d events; the limit is %d", len(b.Items), h.maxBatchEvents)}}}
	}
	// The batch-level context and integrations count in each event they
	// are merged into: an item is refused when it is too large with them,
	// and the whole batch when its events together are.
	maxMerged := max(spec.MaxMergedBatchBytes, 4*h.maxBatchBytes)
	merged := 0
	// What the decoded events hold in memory is bounded too: each by
	// spec.MaxEventMemory, all of them by a multiple of the body's limit.
	maxHeld, held := 16*h.maxBatchBytes, 0
	c.events = make([]spec.Event, 0, len(b.Items))
	for i, raw := range b.Items {
		if len(raw) > h.maxEventBytes {
			c.rejected = append(c.rejected, itemError{Index: i, Error: "Event too large", Fields: []spec.FieldError{{Rule: "size", Message: fmt.Sprintf("is %d bytes; the limit is %d", len(raw), h.maxEventBytes)}}})
			continue
		}
		e, err := spec.Decode(raw, "")
		if err == nil {
			n := b.MergedSize(e)
			if n > h.maxEventBytes {
				c.rejected = append(c.rejected, itemError{Index: i, Error: "Event too large", Fields: []spec.FieldError{{Rule: "size", Message: fmt.Sprintf("is %d bytes with the batch-level context and integrations; the limit is %d", n, h.maxEventBytes)}}})
				continue
			}
			if merged += n; merged > maxMerged {
				return c, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("Batch too large: its events hold over %d bytes with the batch-level context and integrations applied to each; send fewer events at a time", maxMerged)}
			}
			if held += e.Fields().Size(); held > maxHeld {
				return c, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("Batch too large: its events would hold over %d bytes of memory once decoded; send fewer events at a time", maxHeld)}
			}
			b.Merge(e)
			// Merged, the event holds the batch-level objects too; it
			// must stay within what one event may hold, so that a
			// durable queue can read it back.
			if m := e.Fields().Size(); m > spec.MaxEventMemory {
				c.rejected = append(c.rejected, itemError{Index: i, Error: "Event too large", Fields: []spec.FieldError{{Rule: "size", Message: fmt.Sprintf("would hold about %d bytes of memory with the batch-level context and integrations; the limit is %d", m, spec.MaxEventMemory)}}})
				continue
			}
			err = e.Validate()
		}
		if err != nil {
			c.rejected = append(c.rejected, h.itemError(i, err))
			continue
		}
		c.events = append(c.events, e)
	}
	if len(c.events) == 0 {
		return c, http.StatusBadRequest, batchBody{Error: "No valid events", Rejected: len(c.rejected), Errors: capErrors(c.rejected)}
	}
	return c, 0, nil
}

// maxItemErrors bounds the item errors an answer lists, so that the answer
// to a batch of bad items stays small; the count of all of them is given.
const maxItemErrors = 10

func capErrors(errs []itemError) []itemError {
	return errs[:min(len(errs), maxItemErrors)]
}

// accept hands events to the Enqueuer and writes the error answer if that
// failed.
func (h *Handler) accept(w http.ResponseWriter, ctx context.Context, events []spec.Event) bool {
	err := h.q.Enqueue(ctx, events...)
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrQueueFull):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "Queue full, retry later")
	case errors.Is(err, ErrClosed):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "Shutting down, retry later")
	case errors.Is(err, ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "Batch holds more events than an integration's queue; send fewer at a time")
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// The client went away; nothing to answer.
		w.WriteHeader(http.StatusServiceUnavailable)
	default:
		h.log.Error("opentrack: enqueue failed", slog.Any("error", err))
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "Could not accept the events, retry later")
	}
	return false
}

// readBody reads the request body into buf, decompressing gzip, and returns
// a status and message when it must be refused.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer, limit int) (int, string) {
	var body io.Reader = http.MaxBytesReader(unwrapWriter(w), r.Body, int64(limit))
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return http.StatusRequestEntityTooLarge, tooLarge(limit)
			}
			return http.StatusBadRequest, "Invalid gzip body"
		}
		defer zr.Close()
		// The limit applies after decompression, so a small bomb cannot
		// expand past it.
		body = io.LimitReader(zr, int64(limit)+1)
	default:
		return http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q is not supported; use gzip or none", enc)
	}
	n, err := buf.ReadFrom(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, tooLarge(limit)
		}
		// The error may name the server's sockets: log it, answer plainly.
		h.log.Debug("opentrack: reading a request body", slog.Any("error", err))
		return http.StatusBadRequest, "Could not read the body"
	}
	if n > int64(limit) {
		return http.StatusRequestEntityTooLarge, tooLarge(limit)
	}
	return 0, ""
}

func tooLarge(limit int) string {
	return fmt.Sprintf("Body too large: the limit is %d bytes", limit)
}

func (h *Handler) originAllowed(origin string) bool {
	return h.anyOrigin || h.origins[strings.ToLower(strings.TrimRight(origin, "/"))]
}

// keyValid compares key with every configured key in constant time.
func (h *Handler) keyValid(key string) bool {
	if !h.keyed {
		return true
	}
	sum := sha256.Sum256([]byte(key))
	ok := 0
	for i := range h.keys {
		ok |= subtle.ConstantTimeCompare(sum[:], h.keys[i][:])
	}
	return ok == 1 && key != ""
}

// basicUser returns the username of a Basic Authorization header. The colon
// and password are optional, as Segment allows.
func basicUser(v string) (string, bool) {
	const prefix = "basic "
	if len(v) < len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[len(prefix):]))
	if err != nil {
		return "", false
	}
	user, _, _ := strings.Cut(string(raw), ":")
	return user, true
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type errorBody struct {
	Error   string            `json:"error"`
	Message string            `json:"message,omitempty"`
	Fields  []spec.FieldError `json:"fields,omitempty"`
}

type itemError struct {
	Index  int               `json:"index"`
	Error  string            `json:"error"`
	Fields []spec.FieldError `json:"fields,omitempty"`
}

type batchBody struct {
	Success  bool        `json:"success,omitempty"`
	Error    string      `json:"error,omitempty"`
	Accepted int         `json:"accepted"`
	Rejected int         `json:"rejected,omitempty"`
	Errors   []itemError `json:"errors,omitempty"`
}

func (h *Handler) itemError(i int, err error) itemError {
	var ve *spec.ValidationError
	if errors.As(err, &ve) {
		return itemError{Index: i, Error: "Invalid event", Fields: ve.Fields}
	}
	return itemError{Index: i, Error: "Invalid JSON", Fields: []spec.FieldError{{Rule: "json", Message: err.Error()}}}
}

// invalid is the answer to a request refused as a whole for its content:
// invalid JSON, or the fields of what (an event, a batch) that broke rules.
func (h *Handler) invalid(err error, what string) errorBody {
	var ve *spec.ValidationError
	if errors.As(err, &ve) {
		return errorBody{Error: what, Fields: ve.Fields}
	}
	return errorBody{Error: "Invalid JSON", Message: err.Error()}
}

var successBody = []byte(`{"success":true}` + "\n")

// Header values shared by every answer; net/http only reads them.
var (
	varyOrigin    = []string{"Origin"}
	jsonType      = []string{"application/json"}
	successLength = []string{strconv.Itoa(len(successBody))}
)

func writeSuccess(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = jsonType
	h["Content-Length"] = successLength
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(successBody)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"Internal error"}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
