package customerio

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

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

// StatusError is an answer of the Track API other than 2xx: the type
// every built-in HTTP destination uses, named here so that callers can find
// it with errors.As. Its Op is "customerio: <call>" ("customerio: track",
// "customerio: identify", ...), StatusCode the HTTP status and Body the
// start of Customer.io's answer (at most 512 bytes). Whether it is retried
// is marked separately: 408, 429 and 5xx are retryable, honouring
// Retry-After; other statuses are [opentrack.Permanent].
type StatusError = httpx.StatusError

// classify turns the outcome of one request into the error the Manager
// acts on, by the rule of [httpx.Classify]. status is 0 when no answer
// arrived; err is then why.
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
	// Any 2xx is delivered, though go-customerio counts only 200 as success.
	return httpx.Classify("customerio: "+call, status, header, body)
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

// capture copies the first [httpx.MaxErrorBody] bytes read from a body.
type capture struct {
	io.ReadCloser
	o *outcome
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if room := httpx.MaxErrorBody - len(c.o.body); room > 0 && n > 0 {
		c.o.body = append(c.o.body, p[:min(n, room)]...)
	}
	return n, err
}
