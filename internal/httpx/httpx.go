// Package httpx holds the rule that OpenTrack's HTTP destinations share for
// turning an answer into the error the Manager acts on:
//
//   - a 2xx is delivered;
//   - 408, 429 and 5xx are retried, honouring Retry-After;
//   - any other status is permanent: sending the same request again cannot
//     help;
//   - an error before any answer (a refused connection, a timeout, a reset)
//     is retried, unless the caller knows the request itself is bad.
//
// It exists so that every built-in integration (Customer.io, BigQuery, the
// webhook) answers the same way to the same status.
package httpx

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opentrackhq/opentrack"
)

// MaxErrorBody bounds how much of an error answer's body a StatusError keeps.
const MaxErrorBody = 512

// StatusError is an answer other than 2xx.
type StatusError struct {
	// Op names what was being done ("customerio: track", "webhook").
	Op string
	// StatusCode is the HTTP status.
	StatusCode int
	// Body is the start of the answer's body, at most MaxErrorBody bytes.
	Body string
}

// Error implements error.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s: %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Retryable reports whether an answer with this status is worth sending again:
// 408, 429 and every 5xx but 501 (Not Implemented will not change).
func Retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests ||
		status >= 500 && status != http.StatusNotImplemented
}

// Classify returns the error the Manager acts on for an answer of status with
// header, for the operation op and the start of the answer's body: nil for a
// 2xx; a *StatusError, wrapped in [opentrack.RetryAfter] when the answer asks
// for a wait, for a retryable status; the *StatusError marked
// [opentrack.Permanent] otherwise.
func Classify(op string, status int, header http.Header, body []byte) error {
	if status >= 200 && status < 300 {
		return nil
	}
	if len(body) > MaxErrorBody {
		body = body[:MaxErrorBody]
	}
	se := &StatusError{Op: op, StatusCode: status, Body: strings.TrimSpace(string(body))}
	if !Retryable(status) {
		return opentrack.Permanent(se)
	}
	if d := ParseRetryAfter(header.Get("Retry-After"), time.Now()); d > 0 {
		return opentrack.RetryAfter(se, d)
	}
	return se
}

// MaxRetryAfter caps what a Retry-After header can ask for. A destination
// asking for more (or a value that would overflow a time.Duration) is taken to
// ask for this long; the Manager's retry horizon bounds it further.
const MaxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads an HTTP Retry-After header value: delay-seconds or an
// HTTP date (the three forms of RFC 9110, and RFC 1123 in other zones, as some
// servers send). It returns 0 for an empty, unreadable or past value, and at
// most MaxRetryAfter.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(v, 10, 64); err == nil {
		if s >= uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(s) * time.Second
	} else if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		return MaxRetryAfter // all digits, past uint64
	}
	t, err := http.ParseTime(v)
	if err != nil {
		t, err = time.Parse(time.RFC1123, v)
	}
	if err != nil {
		return 0
	}
	d := t.Sub(now) // saturates rather than overflows
	if d <= 0 {
		return 0
	}
	return min(d, MaxRetryAfter)
}
