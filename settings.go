package opentrack

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// settingsCacheControl lets browsers and a CDN in front keep the settings
// for five minutes: analytics.js fetches them on every page load, and a
// change (a new Settings result) reaches every page within that time.
const settingsCacheControl = "public, max-age=300"

// publicBase is where browsers reach the handler: the scheme, and the host
// followed by the mount path, as analytics.js's apiHost wants it
// ("collector.example.com/v1").
type publicBase struct {
	scheme  string
	apiHost string
}

// parsePublicURL reads HandlerOptions.PublicURL.
func parsePublicURL(s string) (*publicBase, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("opentrack: HandlerOptions.PublicURL: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return nil, fmt.Errorf("opentrack: HandlerOptions.PublicURL %q: the scheme must be http or https", s)
	case u.Host == "" || !validHost(u.Host):
		return nil, fmt.Errorf("opentrack: HandlerOptions.PublicURL %q: no valid host", s)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("opentrack: HandlerOptions.PublicURL %q: must be a scheme, host and path only", s)
	}
	return &publicBase{scheme: scheme, apiHost: u.Host + strings.TrimRight(u.EscapedPath(), "/")}, nil
}

// serveSettings answers analytics.js's GET {cdnURL}/v1/projects/{writeKey}/settings.
func (h *Handler) serveSettings(w http.ResponseWriter, r *http.Request, writeKey string) {
	if writeKey == "" || !h.keyValid(writeKey) {
		w.Header().Set("Cache-Control", "no-store")
		writeError(w, http.StatusNotFound, "Unknown write key")
		return
	}
	base, err := h.get.base(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "HandlerOptions.PublicURL is invalid")
		return
	}
	s := defaultSettings(writeKey, base)
	if h.get.settings != nil {
		mergeSettings(s, h.get.settings(writeKey))
	}
	body, err := json.Marshal(s)
	if err != nil {
		h.log.Error("opentrack: the analytics.js settings cannot be written as JSON; check HandlerOptions.Settings", slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, "Settings cannot be written as JSON")
		return
	}
	sum := sha256.Sum256(body)
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", settingsCacheControl)
	if h.get.public == nil {
		// apiHost comes from the request: a shared cache must keep one
		// copy per host (and per forwarded address, when trusted).
		vary := "Origin, Host"
		if h.get.trustFwd {
			vary += ", Forwarded, X-Forwarded-Host, X-Forwarded-Proto, X-Forwarded-Prefix"
		}
		hdr.Set("Vary", vary)
	}
	hdr.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	// ServeContent answers If-None-Match with 304 (and HEAD, and ranges).
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// defaultSettings are the settings analytics.js fetches from Segment's CDN,
// in the shape analytics-next (1.84) reads, pointing it at this collector
// and turning off what needs Segment: device-mode integrations, remote
// plugins and middleware, and its own metrics. Segment serves
// unbundledIntegrations, addBundledMetadata and maybeBundledConfigIds the
// same way; with them analytics.js adds the _metadata Segment's API expects.
func defaultSettings(writeKey string, base *publicBase) map[string]any {
	return map[string]any{
		"integrations": map[string]any{
			"Segment.io": map[string]any{
				"apiKey":                writeKey,
				"apiHost":               base.apiHost,
				"protocol":              base.scheme,
				"unbundledIntegrations": []any{},
				"addBundledMetadata":    true,
				"maybeBundledConfigIds": map[string]any{},
			},
		},
		"plan": map[string]any{
			"track":    map[string]any{"__default": map[string]any{"enabled": true, "integrations": map[string]any{}}},
			"identify": map[string]any{"__default": map[string]any{"enabled": true}},
			"group":    map[string]any{"__default": map[string]any{"enabled": true}},
		},
		// analytics.js's own metrics: none are sent at sampleRate 0; should
		// a host turn them on, they go to this collector's /m, which drops
		// them.
		"metrics":                   map[string]any{"sampleRate": 0, "host": base.apiHost},
		"edgeFunction":              map[string]any{},
		"analyticsNextEnabled":      true,
		"middlewareSettings":        map[string]any{},
		"enabledMiddleware":         map[string]any{},
		"legacyVideoPluginsEnabled": false,
		"remotePlugins":             []any{},
	}
}

// mergeSettings merges src over dst: objects key by key, other values
// replacing dst's, nil removing the key. It changes dst only, never src;
// values of src are placed into dst, not copied.
func mergeSettings(dst, src map[string]any) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				mergeSettings(dv, sv)
				continue
			}
			// A fresh object, so that a nil inside it is left out too and
			// src's own map is never changed.
			nv := make(map[string]any, len(sv))
			mergeSettings(nv, sv)
			dst[k] = nv
			continue
		}
		dst[k] = v
	}
}

var errNoPublicURL = errors.New("opentrack: HandlerOptions.PublicURL is invalid")

// base returns where browsers reach the handler: HandlerOptions.PublicURL,
// else the request's own address, read from the forwarded headers when
// they are trusted.
func (g *getRoutes) base(r *http.Request) (*publicBase, error) {
	if g.publicErr != nil {
		return nil, errNoPublicURL
	}
	if g.public != nil {
		return g.public, nil
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	prefix := ""
	if g.trustFwd {
		fwdHost, fwdProto := forwarded(r.Header.Get("Forwarded"))
		if fwdHost == "" {
			fwdHost = firstItem(r.Header.Get("X-Forwarded-Host"))
		}
		if fwdProto == "" {
			fwdProto = firstItem(r.Header.Get("X-Forwarded-Proto"))
		}
		if validHost(fwdHost) {
			host = fwdHost
		}
		if p := strings.ToLower(fwdProto); p == "http" || p == "https" {
			scheme = p
		}
		if p := firstItem(r.Header.Get("X-Forwarded-Prefix")); validPrefix(p) {
			prefix = strings.TrimRight(p, "/")
		}
	}
	return &publicBase{scheme: scheme, apiHost: host + prefix + mountPath(r)}, nil
}

// mountPath returns the path the handler is mounted under, as the client
// sent it: the request's path without its last three segments
// (/projects/{writeKey}/settings). It reads the request line, which routers
// that strip the mount prefix (http.StripPrefix, chi's Mount) leave as it
// was, and falls back on the URL's path when there is none.
func mountPath(r *http.Request) string {
	path := r.URL.EscapedPath()
	if r.RequestURI != "" {
		if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
			path = u.EscapedPath()
		}
	}
	path = strings.TrimSuffix(path, "/")
	for range 3 {
		i := strings.LastIndexByte(path, '/')
		if i < 0 {
			return ""
		}
		path = path[:i]
	}
	return path
}

// forwarded returns the host and proto parameters of the first element of
// a Forwarded header (RFC 7239), the one the proxy nearest the client added.
func forwarded(v string) (host, proto string) {
	first, _, _ := strings.Cut(v, ",")
	for _, pair := range strings.Split(first, ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = strings.ReplaceAll(val[1:len(val)-1], `\`, "")
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "host":
			host = val
		case "proto":
			proto = val
		}
	}
	return host, proto
}

// firstItem returns the first item of a comma-separated header value.
func firstItem(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}

// validHost reports whether s is a plausible host[:port]: a name, an IPv4
// or a bracketed IPv6 address, so that a header cannot put a path, a
// scheme or spaces into the settings.
func validHost(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-_:[]", c)) {
			return false
		}
	}
	return true
}

// validPrefix reports whether s is a path prefix that may be put before the
// mount path: it starts with a slash and holds only path characters.
func validPrefix(s string) bool {
	if s == "" || s[0] != '/' || len(s) > 1024 || strings.Contains(s, "//") {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/-._~%!$&'()*+,;=:@", c)) {
			return false
		}
	}
	return true
}
