package opentrack

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/opentrackhq/opentrack/spec"
)

// getRoutes holds what the GET routes need beyond the Handler's own fields:
// the configuration of the analytics.js settings, and the pixel's counters.
type getRoutes struct {
	// public is HandlerOptions.PublicURL parsed: its scheme and its host
	// followed by its path; nil when none is configured. publicErr says
	// why a configured one is unusable.
	public    *publicBase
	publicErr error
	trustFwd  bool
	settings  func(writeKey string) map[string]any

	pixel pixelCounters
	logs  logLimiter
}

func newGetRoutes(opts *HandlerOptions, log *slog.Logger) *getRoutes {
	g := &getRoutes{trustFwd: opts.TrustProxyHeaders, settings: opts.Settings}
	if opts.PublicURL != "" {
		g.public, g.publicErr = parsePublicURL(opts.PublicURL)
		if g.publicErr != nil {
			log.Error("opentrack: HandlerOptions.PublicURL is invalid; the analytics.js settings route will answer 500", slog.Any("error", g.publicErr))
		}
	}
	return g
}

// pixelRoutes maps the last segment of a pixel path (.../pixel/track) to its
// call type. Segment's pixel API takes the full names only.
var pixelRoutes = map[string]spec.Type{
	"track": spec.TypeTrack, "page": spec.TypePage, "screen": spec.TypeScreen,
	"identify": spec.TypeIdentify, "group": spec.TypeGroup, "alias": spec.TypeAlias,
}

// serveGet answers GET and HEAD requests: analytics.js's settings at
// .../projects/{writeKey}/settings and the tracking pixel at
// .../pixel/{track,page,screen,identify,group,alias}. Like the POST routes
// they are found by the last segments of the path, so they work however a
// router mounts the handler. The Tracking API's other routes take POST only.
func (h *Handler) serveGet(w http.ResponseWriter, r *http.Request) {
	segs := lastSegments(r.URL.EscapedPath())
	switch {
	case segs[2] == "settings" && segs[0] == "projects":
		key, err := url.PathUnescape(segs[1])
		if err != nil {
			key = ""
		}
		h.serveSettings(w, r, key)
		return
	case segs[1] == "pixel" && pixelRoutes[segs[2]] != "":
		h.servePixel(w, r, pixelRoutes[segs[2]])
		return
	}
	seg := segs[2]
	if _, ok := routes[seg]; !ok && seg != metricsRoute {
		writeError(w, http.StatusNotFound, "Not found")
		return
	}
	w.Header().Set("Allow", "POST, OPTIONS")
	writeError(w, http.StatusMethodNotAllowed, "Method not allowed")
}

// isGetRoute reports whether an escaped path is one of the GET routes: the
// settings or the pixel.
func isGetRoute(path string) bool {
	segs := lastSegments(path)
	return segs[2] == "settings" && segs[0] == "projects" || pixelType(path) != ""
}

// pixelType returns the call type of a pixel path, or "".
func pixelType(path string) spec.Type {
	segs := lastSegments(path)
	if segs[1] != "pixel" {
		return ""
	}
	return pixelRoutes[segs[2]]
}

// lastSegments returns the last three segments of an escaped URL path,
// ignoring one trailing slash, the last one at index 2; missing ones are
// empty. An array, so that routing a request allocates nothing.
func lastSegments(path string) [3]string {
	path = strings.TrimSuffix(path, "/")
	var out [3]string
	for i := len(out) - 1; i >= 0; i-- {
		j := strings.LastIndexByte(path, '/')
		out[i] = path[j+1:]
		if j < 0 {
			break
		}
		path = path[:j]
	}
	return out
}

// logLimiter lets at most one log line a second through, so that a flood of
// bad requests cannot flood the log. It counts the lines it held back.
type logLimiter struct {
	last       atomic.Int64 // unix nanoseconds of the last line let through
	suppressed atomic.Int64
}

// allow reports whether a line may be logged at now (unix nanoseconds), and
// how many were held back since the last one.
func (l *logLimiter) allow(now int64) (bool, int64) {
	last := l.last.Load()
	if now-last < int64(1e9) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
