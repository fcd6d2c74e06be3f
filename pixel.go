package opentrack

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/opentrackhq/opentrack/spec"
)

// transparentGIF is a 1x1 transparent GIF, the answer to every pixel request.
var transparentGIF = []byte{
	'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, // header, 1x1, a two-colour table
	0, 0, 0, 0xff, 0xff, 0xff, // the colour table
	0x21, 0xf9, 4, 1, 0, 0, 0, 0, // graphic control: colour 0 is transparent
	0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, // the image descriptor
	2, 2, 0x44, 1, 0, // the image data
	0x3b, // trailer
}

// Header values of the pixel's answer; net/http only reads them.
var (
	gifType         = []string{"image/gif"}
	gifLength       = []string{strconv.Itoa(len(transparentGIF))}
	gifCacheControl = []string{"no-store, no-cache, must-revalidate, max-age=0"}
	gifPragma       = []string{"no-cache"}
	gifExpires      = []string{"0"}
)

// maxPixelNesting bounds the depth of a dotted key in the pixel's unencoded
// form (properties.a.b.c).
const maxPixelNesting = 32

// PixelStats counts the calls the tracking pixel received, by outcome.
//
// The pixel is Segment's Tracking Pixel API, for email opens and pages that
// can only show an image: GET .../pixel/{track,page,screen,identify,group,alias}
// with the call as base64 JSON in ?data= (standard or URL-safe alphabet,
// padded or not), or unencoded as query parameters whose dotted keys nest
// (?writeKey=k&userId=u1&event=Opened&properties.subject=Hi, every value a
// string). The write key is the payload's writeKey, or the Basic-auth
// username. Calls are checked, limited (MaxEventBytes) and enriched as POST
// calls are, plus context.userAgent from the request when absent.
//
// It answers every GET, good or bad, with 200 and a 1x1 transparent GIF
// that must not be cached, as Segment's does; HEAD gets the same headers
// and records nothing. So these counters are where its errors show; they
// are also logged at debug level (refused enqueues at warn level), at most
// one line a second, without the payload or the key.
type PixelStats struct {
	// Accepted counts events enqueued.
	Accepted uint64
	// Invalid counts requests refused for their content: a query over the
	// size limit, bad base64 or JSON, a payload over MaxEventBytes, or an
	// event that breaks the call's rules.
	Invalid uint64
	// Unauthorized counts requests without a valid write key, when write
	// keys are configured.
	Unauthorized uint64
	// Dropped counts valid events the Enqueuer refused: a full queue
	// ([ErrQueueFull]), a Manager shutting down ([ErrClosed]) or any other
	// enqueue error. The POST routes answer these with 503 and SDKs retry;
	// a pixel cannot ask for that, so these events are lost.
	Dropped uint64
}

type pixelCounters struct {
	accepted, invalid, unauthorized, dropped atomic.Uint64
}

// PixelStats returns the counts of the tracking pixel's calls since the
// handler was made. It is safe to call concurrently with requests.
func (h *Handler) PixelStats() PixelStats {
	c := &h.get.pixel
	return PixelStats{
		Accepted:     c.accepted.Load(),
		Invalid:      c.invalid.Load(),
		Unauthorized: c.unauthorized.Load(),
		Dropped:      c.dropped.Load(),
	}
}

// maxUserAgent bounds the User-Agent the pixel records as
// context.userAgent: request headers may be far larger than an event may
// be, and real user agents are a few hundred bytes.
const maxUserAgent = 1 << 10

// truncateUTF8 cuts s to at most n bytes, on a character boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// servePixel answers Segment's tracking pixel (see [PixelStats]): always 200
// with the GIF, since an image cannot show an error; errors are counted
// and logged instead.
func (h *Handler) servePixel(w http.ResponseWriter, r *http.Request, typ spec.Type) {
	if r.Method == http.MethodGet {
		h.pixelCall(r, typ)
	}
	writePixel(w)
}

// writePixel answers with the transparent GIF, not to be cached.
func writePixel(w http.ResponseWriter) {
	hdr := w.Header()
	hdr["Content-Type"] = gifType
	hdr["Content-Length"] = gifLength
	hdr["Cache-Control"] = gifCacheControl
	hdr["Pragma"] = gifPragma
	hdr["Expires"] = gifExpires
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(transparentGIF)
}

// pixelCall reads, checks, enriches and enqueues the pixel's call, counting
// and logging the outcome.
func (h *Handler) pixelCall(r *http.Request, typ spec.Type) {
	c := &h.get.pixel
	headerKey, hasHeaderKey := basicUser(r.Header.Get("Authorization"))
	if hasHeaderKey && !h.keyValid(headerKey) {
		c.unauthorized.Add(1)
		h.pixelLog(r.Context(), slog.LevelDebug, "invalid write key", nil)
		return
	}
	// Unlike a POST, which is answered 401 before 400, a payload that cannot
	// be read counts as invalid: the answer is the same image either way,
	// and the counters are clearer for it.
	payload, err := pixelPayload(r.URL.RawQuery, h.maxEventBytes)
	var e spec.Event
	if err == nil {
		e, err = spec.Decode(payload, typ)
	}
	if e != nil && !hasHeaderKey && !h.keyValid(e.Fields().WriteKey) {
		c.unauthorized.Add(1)
		h.pixelLog(r.Context(), slog.LevelDebug, "invalid write key", nil)
		return
	}
	if err == nil {
		err = e.Validate()
	}
	if err != nil {
		c.invalid.Add(1)
		h.pixelLog(r.Context(), slog.LevelDebug, "invalid call", err)
		return
	}
	f := e.Fields()
	f.WriteKey = ""
	spec.Enrich(e, h.now().UTC(), h.clientIP(r))
	if ua := r.Header.Get("User-Agent"); ua != "" {
		ua = truncateUTF8(ua, maxUserAgent)
		if f.Context == nil {
			f.Context = make(map[string]any, 1)
		}
		if v, ok := f.Context["userAgent"]; !ok || v == nil {
			f.Context["userAgent"] = ua
		}
	}
	if err := h.q.Enqueue(r.Context(), e); err != nil {
		c.dropped.Add(1)
		h.pixelLog(r.Context(), slog.LevelWarn, "event dropped: the queue refused it", err)
		return
	}
	c.accepted.Add(1)
}

// pixelLog logs a refused pixel call, at most one line a second. It names
// the reason only: never the payload nor the write key.
func (h *Handler) pixelLog(ctx context.Context, level slog.Level, msg string, err error) {
	if !h.log.Enabled(ctx, level) {
		return
	}
	ok, suppressed := h.get.logs.allow(h.now().UnixNano())
	if !ok {
		return
	}
	attrs := []slog.Attr{}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	h.log.LogAttrs(ctx, level, "opentrack: pixel: "+msg, attrs...)
}

// Errors of the pixel's query.
var (
	errPixelQueryTooLarge = errors.New("query too large")
	errPixelTooLarge      = errors.New("payload too large")
)

// pixelPayload returns the JSON of a pixel call from its raw query: the
// base64 of its data parameter, or the other parameters as an object. The
// JSON is at most maxBytes long; a query longer than four times that (room
// for base64 and percent-encoding) is refused unread.
func pixelPayload(rawQuery string, maxBytes int) ([]byte, error) {
	if len(rawQuery) > 4*maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", errPixelQueryTooLarge, len(rawQuery), 4*maxBytes)
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	if data, ok := q["data"]; ok {
		return decodePixelData(data[0], maxBytes)
	}
	obj, err := pixelObject(q)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	if len(b) > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", errPixelTooLarge, len(b), maxBytes)
	}
	return b, nil
}

// decodePixelData decodes base64 in either alphabet, padded or not. A '+'
// that the query's decoding turned into a space is read back as '+'.
func decodePixelData(s string, maxBytes int) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if base64.RawStdEncoding.DecodedLen(len(s)) > maxBytes {
		return nil, fmt.Errorf("%w: over %d bytes", errPixelTooLarge, maxBytes)
	}
	s = strings.Map(func(c rune) rune {
		switch c {
		case '-', ' ':
			return '+'
		case '_':
			return '/'
		}
		return c
	}, s)
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return b, nil
}

// pixelObject builds the call from unencoded query parameters: a dotted key
// nests (properties.subject=Hi gives {"properties":{"subject":"Hi"}}), every
// value is a string, and a repeated key takes its first value. A key that is
// both a value and an object (a=1&a.b=2), or has an empty part, is an error.
func pixelObject(q url.Values) (map[string]any, error) {
	obj := map[string]any{}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	// In order, so that the outcome (and the error named) never depends on
	// map order.
	slices.Sort(keys)
	for _, k := range keys {
		parts := strings.Split(k, ".")
		if len(parts) > maxPixelNesting {
			return nil, fmt.Errorf("query key %.64q: nested deeper than %d", k, maxPixelNesting)
		}
		m := obj
		for i, p := range parts {
			if p == "" {
				return nil, fmt.Errorf("query key %.64q: empty part", k)
			}
			if i == len(parts)-1 {
				if _, ok := m[p]; ok {
					return nil, fmt.Errorf("query key %.64q: both a value and an object", k)
				}
				m[p] = q[k][0]
				break
			}
			switch next := m[p].(type) {
			case nil:
				nm := map[string]any{}
				m[p] = nm
				m = nm
			case map[string]any:
				m = next
			default:
				return nil, fmt.Errorf("query key %.64q: both a value and an object", k)
			}
		}
	}
	return obj, nil
}
