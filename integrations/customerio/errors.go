package customerio

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	cio "github.com/customerio/go-customerio/v3"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/httpx"
)

// ErrNotDeliverable is wrapped by the error for an event that the mapping
// cannot send, such as an identify with neither a userId nor traits.email.
// That error is marked [opentrack.Permanent]: the Manager counts and logs
// the event and passes it to its failure hook without retrying.
var ErrNotDeliverable = errors.New("customerio: event not deliverable")

func notDeliverable(call, reason string) error {
	return opentrack.Permanent(fmt.Errorf("%w: %s: %s", ErrNotDeliverable, call, reason))
}

// StatusError is an answer of the Track API other than 2xx. Find it with
// errors.As; whether it is retried is marked separately (408, 429 and 5xx
// are retryable, other statuses [opentrack.Permanent]).
type StatusError struct {
	// Call is the Segment call being delivered: "identify", "track", ...
	Call string
	// StatusCode is the HTTP status.
	StatusCode int
	// Body is the start of the answer's body (at most 512 bytes).
	Body string
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("customerio: %s: %d %s: %s", e.Call, e.StatusCode, http.StatusText(e.StatusCode), e.Body)
}

// maxErrorBody bounds StatusError.Body.
const maxErrorBody = 512

// classify turns the outcome of one request into the error the Manager
// acts on. status is 0 when no answer arrived.
func classify(call string, status int, header http.Header, body []byte, err error) error {
	if status == 0 {
		if err == nil {
			return nil
		}
		if isRequestError(err) {
			return opentrack.Permanent(fmt.Errorf("customerio: %s: %w", call, err))
		}
		// A network error, a timeout or a cancelled call: worth another try.
		return fmt.Errorf("customerio: %s: %w", call, err)
	}
	if status >= 200 && status < 300 {
		// go-customerio counts only 200 as success; any 2xx is delivered.
		return nil
	}
	se := &StatusError{Call: call, StatusCode: status, Body: strings.TrimSpace(string(body))}
	if status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500 {
		if d := httpx.ParseRetryAfter(header.Get("Retry-After"), time.Now()); d > 0 {
			return opentrack.RetryAfter(se, d)
		}
		return se
	}
	return opentrack.Permanent(se)
}

// isRequestError reports whether err says the request could not be built, so
// that sending it again cannot help.
func isRequestError(err error) bool {
	var (
		pe cio.ParamError
		ue *json.UnsupportedValueError
		te *json.UnsupportedTypeError
		me *json.MarshalerError
	)
	return errors.As(err, &pe) || errors.As(err, &ue) || errors.As(err, &te) || errors.As(err, &me)
}

// outcomeKey carries an *outcome in a request's context to the recorder.
type outcomeKey struct{}

// outcome is what the recorder saw of the answer to a go-customerio call,
// whose own error carries the status only in its text.
type outcome struct {
	status int
	header http.Header
	body   []byte
}

// recorder is the RoundTripper of the integration's HTTP client. For a
// request whose context holds an *outcome it records the answer's status,
// headers and the start of its body as the client reads it.
type recorder struct {
	next http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if o, ok := req.Context().Value(outcomeKey{}).(*outcome); ok && err == nil {
		o.status, o.header, o.body = resp.StatusCode, resp.Header, nil
		resp.Body = &capture{ReadCloser: resp.Body, o: o}
	}
	return resp, err
}

// CloseIdleConnections closes the idle connections of the wrapped transport.
func (r *recorder) CloseIdleConnections() {
	if c, ok := r.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// capture copies the first maxErrorBody bytes read from a body.
type capture struct {
	io.ReadCloser
	o *outcome
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if room := maxErrorBody - len(c.o.body); room > 0 && n > 0 {
		c.o.body = append(c.o.body, p[:min(n, room)]...)
	}
	return n, err
}
