// Package fakecustomerio is a stand-in for the Customer.io Track API, for
// tests. It serves the endpoints the customerio integration uses on an
// httptest server, checks the Basic auth of every request and the shape of
// every body, and records each accepted call so tests can compare what
// arrived with what they expect.
//
// Endpoints served, as Customer.io does:
//
//	PUT  /api/v1/customers/{identifier}         identify a person (any JSON object)
//	POST /api/v1/customers/{identifier}/events  an event, page or screen view for a person
//	POST /api/v1/events                         an anonymous event, page or screen view
//	POST /api/v1/merge_customers                merge two people
//	POST /api/v2/entity                         one Track API v2 entity operation
//
// A request with wrong credentials is answered 401, a body that breaks the
// API's rules 400 with {"meta":{"errors":[...]}}, an unknown path 404 and a
// wrong method 405; none of these is recorded as a call. [Server.FailNext]
// scripts failures.
//
// GET /fakecustomerio/dump answers, without credentials, what the server
// received: {"attempts": n, "calls": [{"method", "path", "body",
// "userAgent"}, ...]}. The command fakecustomerio (cmd/fakecustomerio)
// serves a stand-in on a local port, to try the collector without a
// Customer.io workspace.
package fakecustomerio

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Call is one request the server accepted (answered 200).
type Call struct {
	// Method is the HTTP method.
	Method string `json:"method"`
	// Path is the request path as sent, still escaped
	// ("/api/v1/customers/user%201/events").
	Path string `json:"path"`
	// Body is the request body, a JSON object.
	Body json.RawMessage `json:"body"`
	// UserAgent is the User-Agent header.
	UserAgent string `json:"userAgent"`
}

// DumpPath is the path of the dump endpoint: GET it for a [Dump].
const DumpPath = "/fakecustomerio/dump"

// Dump is what GET /fakecustomerio/dump answers: what the server received.
type Dump struct {
	// Attempts counts the requests to the Track API, whatever their answer.
	Attempts int `json:"attempts"`
	// Calls are the accepted calls, in the order they arrived.
	Calls []Call `json:"calls"`
}

// Response is a scripted answer for [Server.FailNext].
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Header holds extra headers, such as Retry-After.
	Header http.Header
	// Body is the response body; empty means {"meta":{"error":"<status text>"}}.
	Body string
	// Delay is how long to wait before answering, to test timeouts. The
	// wait ends early if the client goes away.
	Delay time.Duration
}

// Server is a Customer.io Track API stand-in. It is safe for concurrent use.
type Server struct {
	srv    *httptest.Server
	siteID string
	apiKey string

	mu       sync.Mutex
	calls    []Call
	attempts int
	script   []Response
}

// New starts a Server on a local port that accepts the credentials siteID
// and apiKey. Call Close when done.
func New(siteID, apiKey string) *Server {
	s := NewHandler(siteID, apiKey)
	s.srv = httptest.NewServer(s)
	return s
}

// NewHandler returns a Server that accepts the credentials siteID and apiKey
// and is not listening, to be served by the caller: it is an http.Handler.
// [Server.URL] is empty and [Server.Close] does nothing for it.
func NewHandler(siteID, apiKey string) *Server {
	return &Server{siteID: siteID, apiKey: apiKey}
}

// URL is the base URL of a server started by [New]
// ("http://127.0.0.1:port"), to use as the Track API base URL.
func (s *Server) URL() string {
	if s.srv == nil {
		return ""
	}
	return s.srv.URL
}

// Close shuts down a server started by [New].
func (s *Server) Close() {
	if s.srv != nil {
		s.srv.Close()
	}
}

// Dump returns what the server received, as GET /fakecustomerio/dump
// answers it.
func (s *Server) Dump() Dump {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Dump{Attempts: s.attempts, Calls: append([]Call{}, s.calls...)}
}

// Calls returns the calls accepted so far, in the order they arrived.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Attempts returns how many requests arrived, whatever their answer.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Reset forgets the calls, attempts and scripted failures.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls, s.attempts, s.script = nil, 0, nil
}

// FailNext makes the next n requests with valid credentials answer r instead
// of being served. Scripts queue up: a later FailNext applies after the
// earlier ones are used.
func (s *Server) FailNext(n int, r Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.script = append(s.script, r)
	}
}

// ServeHTTP serves the Track API and the dump endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == DumpPath && r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Dump())
		return
	}
	body, err := io.ReadAll(r.Body)
	s.mu.Lock()
	s.attempts++
	s.mu.Unlock()
	if err != nil {
		writeErrors(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	if !s.authorized(r.Header.Get("Authorization")) {
		writeErrors(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	if resp, ok := s.next(); ok {
		if resp.Delay > 0 {
			select {
			case <-time.After(resp.Delay):
			case <-r.Context().Done():
				return
			}
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		b := resp.Body
		if b == "" {
			b = fmt.Sprintf(`{"meta":{"error":%q}}`, http.StatusText(resp.Status))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(resp.Status)
		io.WriteString(w, b)
		return
	}

	status, problems := route(r.Method, r.URL.EscapedPath(), body)
	if status != http.StatusOK {
		writeErrors(w, status, problems...)
		return
	}
	s.mu.Lock()
	s.calls = append(s.calls, Call{
		Method:    r.Method,
		Path:      r.URL.EscapedPath(),
		Body:      json.RawMessage(bytes.Clone(body)),
		UserAgent: r.UserAgent(),
	})
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{}")
}

func (s *Server) next() (Response, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.script) == 0 {
		return Response{}, false
	}
	r := s.script[0]
	s.script = s.script[1:]
	return r, true
}

// authorized checks Basic auth. go-customerio encodes the credentials with
// URL-safe base64, so both alphabets are accepted, as Customer.io does;
// r.BasicAuth would reject the URL-safe form.
func (s *Server) authorized(h string) bool {
	enc, ok := strings.CutPrefix(h, "Basic ")
	if !ok {
		return false
	}
	want := s.siteID + ":" + s.apiKey
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		if b, err := e.DecodeString(enc); err == nil && string(b) == want {
			return true
		}
	}
	return false
}

func writeErrors(w http.ResponseWriter, status int, problems ...string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"meta": map[string]any{"errors": problems}})
}

// route checks the method, path and body of a request. It returns 200, or
// the status and the problems to report.
func route(method, path string, body []byte) (int, []string) {
	want := ""
	var check func(map[string]any) []string
	switch {
	case path == "/api/v1/events":
		want, check = http.MethodPost, anonymousEvent
	case path == "/api/v1/merge_customers":
		want, check = http.MethodPost, merge
	case path == "/api/v2/entity":
		want, check = http.MethodPost, entity
	case strings.HasPrefix(path, "/api/v1/customers/"):
		rest := strings.TrimPrefix(path, "/api/v1/customers/")
		id, sub, _ := strings.Cut(rest, "/")
		switch {
		case id == "":
			return http.StatusNotFound, []string{"no identifier in path"}
		case sub == "":
			want, check = http.MethodPut, identify
		case sub == "events":
			want, check = http.MethodPost, personEvent
		default:
			return http.StatusNotFound, []string{"unknown path " + path}
		}
	default:
		return http.StatusNotFound, []string{"unknown path " + path}
	}
	if method != want {
		return http.StatusMethodNotAllowed, []string{method + " not allowed on " + path}
	}
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return http.StatusBadRequest, []string{"body must be a JSON object"}
	}
	if p := check(obj); len(p) > 0 {
		return http.StatusBadRequest, p
	}
	return http.StatusOK, nil
}

func identify(map[string]any) []string { return nil }

func personEvent(b map[string]any) []string {
	var p []string
	p = append(p, event(b)...)
	if _, ok := b["anonymous_id"]; ok {
		p = append(p, "anonymous_id is for anonymous events")
	}
	return p
}

func anonymousEvent(b map[string]any) []string {
	p := event(b)
	if v, ok := b["anonymous_id"]; ok && !nonEmpty(v) {
		p = append(p, "anonymous_id must be a non-empty string")
	}
	return p
}

// event checks the fields common to person and anonymous events.
func event(b map[string]any) []string {
	var p []string
	if !nonEmpty(b["name"]) {
		p = append(p, "name is required")
	}
	if v, ok := b["type"]; ok {
		switch v {
		case "event", "page", "screen":
		default:
			p = append(p, fmt.Sprintf("type %v must be event, page or screen", v))
		}
	}
	if v, ok := b["timestamp"]; ok && !unixSeconds(v) {
		p = append(p, fmt.Sprintf("timestamp %v must be unix seconds", v))
	}
	if v, ok := b["id"]; ok {
		if s, _ := v.(string); !IsULID(s) {
			p = append(p, fmt.Sprintf("id %v must be a ULID", v))
		}
	}
	if v, ok := b["data"]; ok && v != nil {
		if _, ok := v.(map[string]any); !ok {
			p = append(p, "data must be an object")
		}
	}
	for k := range b {
		switch k {
		case "name", "type", "timestamp", "id", "data", "anonymous_id":
		default:
			p = append(p, "unknown field "+k)
		}
	}
	return p
}

func merge(b map[string]any) []string {
	var p []string
	for _, k := range []string{"primary", "secondary"} {
		if !personIdentifiers(b[k]) {
			p = append(p, k+" must hold exactly one of id, email, cio_id")
		}
	}
	return p
}

func entity(b map[string]any) []string {
	var p []string
	typ, _ := b["type"].(string)
	action, _ := b["action"].(string)
	ids, _ := b["identifiers"].(map[string]any)
	switch typ {
	case "object":
		if action != "identify" && action != "identify_anonymous" {
			p = append(p, fmt.Sprintf("action %q is not supported for objects here", action))
		}
		if len(ids) != 2 || !nonEmpty(ids["object_type_id"]) || !nonEmpty(ids["object_id"]) {
			p = append(p, "object identifiers must be object_type_id and object_id, as strings")
		}
		rels, _ := b["cio_relationships"].([]any)
		if _, ok := b["cio_relationships"]; ok && rels == nil {
			p = append(p, "cio_relationships must be an array")
		}
		for _, r := range rels {
			rel, _ := r.(map[string]any)
			ri := rel["identifiers"]
			if action == "identify_anonymous" {
				m, _ := ri.(map[string]any)
				if len(m) != 1 || !nonEmpty(m["anonymous_id"]) {
					p = append(p, "identify_anonymous relationships need identifiers {anonymous_id}")
				}
			} else if !personIdentifiers(ri) {
				p = append(p, "relationship identifiers must hold exactly one of id, email, cio_id")
			}
		}
	case "person":
		if action == "" {
			p = append(p, "action is required")
		}
		if !personIdentifiers(ids) {
			p = append(p, "person identifiers must hold exactly one of id, email, cio_id")
		}
	default:
		p = append(p, fmt.Sprintf("type %q must be person or object", typ))
	}
	if v, ok := b["attributes"]; ok {
		if _, ok := v.(map[string]any); !ok {
			p = append(p, "attributes must be an object")
		}
	}
	if v, ok := b["timestamp"]; ok && !unixSeconds(v) {
		p = append(p, fmt.Sprintf("timestamp %v must be unix seconds", v))
	}
	return p
}

func personIdentifiers(v any) bool {
	m, _ := v.(map[string]any)
	if len(m) != 1 {
		return false
	}
	for k, v := range m {
		switch k {
		case "id", "email", "cio_id":
			return nonEmpty(v)
		}
	}
	return false
}

func nonEmpty(v any) bool {
	s, ok := v.(string)
	return ok && strings.TrimSpace(s) != ""
}

// unixSeconds reports whether v is a JSON integer that reads as unix
// seconds, not milliseconds (before the year 5000).
func unixSeconds(v any) bool {
	n, ok := v.(json.Number)
	if !ok {
		return false
	}
	i, err := n.Int64()
	return err == nil && i >= 0 && i < 95617584000
}

// IsULID reports whether s is a ULID in its canonical form: 26 characters of
// Crockford's base32 in upper case, the first at most '7'.
func IsULID(s string) bool {
	id, err := ulid.ParseStrict(s)
	return err == nil && id.String() == s
}
