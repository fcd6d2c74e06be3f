package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/opentrackhq/opentrack"
)

// The environment variables FromEnv reads. WEBHOOK_URL is the one the
// TypeScript OpenTrack reads.
const (
	EnvURL           = "WEBHOOK_URL"
	EnvSecret        = "WEBHOOK_SECRET"
	EnvSigning       = "WEBHOOK_SIGNING"
	EnvHeaders       = "WEBHOOK_HEADERS"
	EnvMethod        = "WEBHOOK_METHOD"
	EnvBatchSize     = "WEBHOOK_BATCH_SIZE"
	EnvMaxBatchBytes = "WEBHOOK_MAX_BATCH_BYTES"
	EnvTimeout       = "WEBHOOK_TIMEOUT"
)

// envField names, for each field a ConfigError from New can name, the
// variable FromEnv read it from.
var envField = map[string]string{
	"webhook.URL":                   EnvURL,
	"webhook.Options.Secret":        EnvSecret,
	"webhook.Options.Signing":       EnvSigning,
	"webhook.Options.Headers":       EnvHeaders,
	"webhook.Options.Method":        EnvMethod,
	"webhook.Options.BatchSize":     EnvBatchSize,
	"webhook.Options.MaxBatchBytes": EnvMaxBatchBytes,
	"webhook.Options.Timeout":       EnvTimeout,
}

// FromEnv returns an Integration configured by environment variables, read
// with getenv (nil means os.Getenv):
//
//	WEBHOOK_URL              the URL events are sent to (http or https)
//	WEBHOOK_SECRET           signs each request (see WEBHOOK_SIGNING)
//	WEBHOOK_SIGNING          segment (default): X-Signature, hex HMAC-SHA1 of the body;
//	                         standard: Standard Webhooks, needs a "whsec_..." secret
//	WEBHOOK_HEADERS          extra headers, a JSON object of strings:
//	                         {"Authorization": "Bearer abc, def", "X-Team": "a; b"}
//	WEBHOOK_METHOD           POST (default), PUT or PATCH
//	WEBHOOK_BATCH_SIZE       events per request; 1 (default) sends JSON objects,
//	                         more sends JSON arrays
//	WEBHOOK_MAX_BATCH_BYTES  bytes per batch request (default 512000)
//	WEBHOOK_TIMEOUT          per request, a Go duration such as 10s (default)
//
// Blank values count as unset. It returns [opentrack.ErrNotConfigured] when
// none of these variables is set. Any of them set without WEBHOOK_URL, or a
// value that is not valid, is a [*opentrack.ConfigError] naming the
// variable. FromEnv makes no request; ctx is not used yet.
func FromEnv(ctx context.Context, getenv func(string) string) (*Integration, error) {
	_ = ctx
	if getenv == nil {
		getenv = os.Getenv
	}
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	rawURL := get(EnvURL)
	if rawURL == "" {
		for _, k := range []string{EnvSecret, EnvSigning, EnvHeaders, EnvMethod, EnvBatchSize, EnvMaxBatchBytes, EnvTimeout} {
			if get(k) != "" {
				return nil, &opentrack.ConfigError{Field: EnvURL, Reason: k + " is set but " + EnvURL + " is not"}
			}
		}
		return nil, opentrack.ErrNotConfigured
	}
	opts := &Options{Secret: get(EnvSecret), Method: get(EnvMethod)}
	var err error
	if opts.Signing, err = ParseSigning(get(EnvSigning)); err != nil {
		return nil, &opentrack.ConfigError{Field: EnvSigning, Reason: fmt.Sprintf("%q: want segment or standard", get(EnvSigning))}
	}
	if opts.Signing == SigningStandard && opts.Secret == "" {
		return nil, &opentrack.ConfigError{Field: EnvSecret, Reason: `WEBHOOK_SIGNING=standard needs a "whsec_..." secret`}
	}
	if opts.Headers, err = parseHeaders(getenv(EnvHeaders)); err != nil {
		return nil, &opentrack.ConfigError{Field: EnvHeaders, Reason: strings.TrimPrefix(err.Error(), "webhook: ")}
	}
	positive := func(k string) (int, error) {
		v := get(k)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, &opentrack.ConfigError{Field: k, Reason: fmt.Sprintf("%q: want a whole number of at least 1", v)}
		}
		return n, nil
	}
	if opts.BatchSize, err = positive(EnvBatchSize); err != nil {
		return nil, err
	}
	if opts.MaxBatchBytes, err = positive(EnvMaxBatchBytes); err != nil {
		return nil, err
	}
	if v := get(EnvTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, &opentrack.ConfigError{Field: EnvTimeout, Reason: fmt.Sprintf("%q: want a positive duration such as 10s", v)}
		}
		opts.Timeout = d
	}
	in, err := New(rawURL, opts)
	if ce := (*opentrack.ConfigError)(nil); errors.As(err, &ce) {
		if k, ok := envField[ce.Field]; ok {
			return nil, &opentrack.ConfigError{Field: k, Reason: ce.Reason}
		}
	}
	return in, err
}

// parseHeaders reads headers written as a JSON object whose values are
// strings, the form of WEBHOOK_HEADERS:
//
//	{"Authorization": "Bearer abc, def", "X-Team": "a; b"}
//
// JSON carries any value, commas, semicolons, quotes and spaces included,
// on one line, as environment files and orchestrators want. Names are
// canonicalized ("x-team" is X-Team); a name given twice, in any case, is
// an error. A blank string gives no headers. Names and values are checked
// by [New].
func parseHeaders(s string) (http.Header, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	bad := errors.New(`webhook: want a JSON object of strings, such as {"Authorization": "Bearer abc"}`)
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, bad
	}
	h := http.Header{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, bad
		}
		name, _ := t.(string)
		var value any
		if err := dec.Decode(&value); err != nil {
			return nil, bad
		}
		v, ok := value.(string)
		if !ok {
			return nil, fmt.Errorf("webhook: the value of %q must be a string", name)
		}
		ck := http.CanonicalHeaderKey(name)
		if _, dup := h[ck]; dup {
			return nil, fmt.Errorf("webhook: header %q is given twice", ck)
		}
		h[ck] = []string{v}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, bad
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("webhook: text after the JSON object")
	}
	return h, nil
}
