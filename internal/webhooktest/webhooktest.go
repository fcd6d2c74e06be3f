// Package webhooktest is a receiver of webhook requests, for tests: an
// httptest server on 127.0.0.1 that checks each request as a careful
// receiver would, verifies its signature when given a secret, and records
// what it accepted so that tests can compare it with what was sent.
//
// A request is answered, in this order:
//
//   - with the next scripted [Response], if [Server.FailNext] left one; it is
//     not accepted;
//   - 405 for a method other than POST, PUT or PATCH;
//   - 415 for a Content-Type other than application/json;
//   - 401 for a missing or wrong signature: an X-Signature header holding
//     the hex HMAC-SHA1 of the body under [Options.SegmentSecret] (checked
//     with crypto/hmac), and the Standard Webhooks headers webhook-id,
//     webhook-timestamp and webhook-signature under
//     [Options.StandardSecret] (checked by the standard-webhooks project's
//     own Go library, timestamp tolerance included);
//   - 400 for a body that is not a JSON object or a JSON array of objects;
//   - 200 otherwise: the request is accepted and recorded.
//
// Every request that reaches the server is kept by [Server.Received], with
// the status it was answered.
package webhooktest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Options configures a [Server]. A nil *Options checks no signature.
type Options struct {
	// SegmentSecret, when set, makes the server require Segment's
	// X-Signature header: the hex HMAC-SHA1 of the body keyed with it.
	SegmentSecret string
	// StandardSecret, when set ("whsec_" and base64), makes the server
	// require the Standard Webhooks headers, verified with
	// github.com/standard-webhooks/standard-webhooks/libraries/go.
	StandardSecret string
}

// Response is a scripted answer for [Server.FailNext].
type Response struct {
	// Status is the HTTP status code; 0 means 503.
	Status int
	// Header holds headers to send, such as Retry-After or Location.
	Header http.Header
	// Body is the body to send.
	Body string
	// Delay is how long to wait before answering, to make a sender time
	// out. The wait ends early when the sender goes away; the request then
	// counts as answered with status 0.
	Delay time.Duration
}

// Request is one request that reached the server.
type Request struct {
	// Method is the HTTP method.
	Method string
	// Path is the request path, still escaped.
	Path string
	// Header holds the request's headers.
	Header http.Header
	// Body is the request body as it arrived.
	Body []byte
	// At is when the request arrived.
	At time.Time
	// Status is the status the server answered; 0 when the sender went
	// away before the answer.
	Status int
	// Reason says why the request was refused; empty when accepted.
	Reason string
	// Batch reports whether an accepted body was a JSON array.
	Batch bool
	// Events holds the accepted body's events: the object itself, or each
	// element of the array.
	Events []json.RawMessage
}

// Server is a webhook receiver. It is safe for concurrent use.
type Server struct {
	srv      *httptest.Server
	segment  []byte
	standard *standardwebhooks.Webhook

	mu       sync.Mutex
	received []Request
	script   []Response
}

// New starts a Server on 127.0.0.1. It panics if opts.StandardSecret is
// not valid base64 after its "whsec_" prefix. Call Close when done.
func New(opts *Options) *Server {
	s := newServer(opts)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// NewWithHandler starts a Server whose requests first go to h; h answers by
// writing a response, or passes the request on to the Server's own checks
// by calling next. It lets a test add routes, such as a redirect.
func NewWithHandler(opts *Options, h func(w http.ResponseWriter, r *http.Request, next http.HandlerFunc)) *Server {
	s := newServer(opts)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, s.serve) }))
	return s
}

func newServer(opts *Options) *Server {
	if opts == nil {
		opts = &Options{}
	}
	s := &Server{}
	if opts.SegmentSecret != "" {
		s.segment = []byte(opts.SegmentSecret)
	}
	if opts.StandardSecret != "" {
		wh, err := standardwebhooks.NewWebhook(opts.StandardSecret)
		if err != nil {
			panic("webhooktest: " + err.Error())
		}
		s.standard = wh
	}
	return s
}

// URL is the server's base URL, "http://127.0.0.1:port".
func (s *Server) URL() string { return s.srv.URL }

// Close shuts the server down, ending requests in progress.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// FailNext makes the server answer its next n requests with r.
func (s *Server) FailNext(n int, r Response) {
	if r.Status == 0 {
		r.Status = http.StatusServiceUnavailable
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.script = append(s.script, r)
	}
}

// Received returns every request that reached the server, in order of
// their answers.
func (s *Server) Received() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.received...)
}

// Accepted returns the requests answered 200.
func (s *Server) Accepted() []Request {
	var out []Request
	for _, r := range s.Received() {
		if r.Status == http.StatusOK {
			out = append(out, r)
		}
	}
	return out
}

// Events returns the events of the accepted requests, in order.
func (s *Server) Events() []json.RawMessage {
	var out []json.RawMessage
	for _, r := range s.Accepted() {
		out = append(out, r.Events...)
	}
	return out
}

// maxBody bounds what the server reads of a body.
const maxBody = 16 << 20

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	req := Request{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: body, At: at}
	answer := func(status int, reason string) {
		req.Status, req.Reason = status, reason
		s.mu.Lock()
		s.received = append(s.received, req)
		s.mu.Unlock()
		if status == 0 {
			return
		}
		if reason != "" {
			http.Error(w, reason, status)
			return
		}
		w.WriteHeader(status)
	}
	if err != nil {
		answer(http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}

	s.mu.Lock()
	var scripted *Response
	if len(s.script) > 0 {
		scripted = &s.script[0]
		s.script = s.script[1:]
	}
	s.mu.Unlock()
	if scripted != nil {
		if scripted.Delay > 0 {
			select {
			case <-time.After(scripted.Delay):
			case <-r.Context().Done():
				answer(0, "the sender went away")
				return
			}
		}
		for k, v := range scripted.Header {
			w.Header()[k] = v
		}
		req.Status, req.Reason = scripted.Status, "scripted"
		s.mu.Lock()
		s.received = append(s.received, req)
		s.mu.Unlock()
		w.WriteHeader(scripted.Status)
		io.WriteString(w, scripted.Body)
		return
	}

	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		answer(http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		answer(http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q, want application/json", r.Header.Get("Content-Type")))
		return
	}
	if s.segment != nil {
		mac := hmac.New(sha1.New, s.segment)
		mac.Write(body)
		want := hex.EncodeToString(mac.Sum(nil))
		if !hmac.Equal([]byte(r.Header.Get("X-Signature")), []byte(want)) {
			answer(http.StatusUnauthorized, "X-Signature does not match the body")
			return
		}
	}
	if s.standard != nil {
		if err := s.standard.Verify(body, r.Header); err != nil {
			answer(http.StatusUnauthorized, "Standard Webhooks: "+err.Error())
			return
		}
	}
	events, batch, err := decode(body)
	if err != nil {
		answer(http.StatusBadRequest, err.Error())
		return
	}
	req.Events, req.Batch = events, batch
	answer(http.StatusOK, "")
}

// decode splits a body into its events: one JSON object, or an array of
// them.
func decode(body []byte) (events []json.RawMessage, batch bool, err error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		batch = true
		if err := json.Unmarshal(body, &events); err != nil {
			return nil, true, fmt.Errorf("body: %w", err)
		}
		if len(events) == 0 {
			return nil, true, fmt.Errorf("body: an empty array")
		}
	} else {
		events = []json.RawMessage{json.RawMessage(body)}
	}
	for i, e := range events {
		var m map[string]any
		if err := json.Unmarshal(e, &m); err != nil || m == nil {
			return nil, batch, fmt.Errorf("body: event %d is not a JSON object", i)
		}
	}
	return events, batch, nil
}
