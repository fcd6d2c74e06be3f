package httpx

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"120": 2 * time.Minute, "": 0, "-3": 0, "soon": 0, " 7 ": 7 * time.Second,
		now.Add(90 * time.Second).Format(time.RFC1123):                90 * time.Second,
		now.Add(time.Minute).Format(http.TimeFormat):                  time.Minute,
		now.Add(time.Minute).Format("Monday, 02-Jan-06 15:04:05 GMT"): time.Minute,
		now.Add(-time.Minute).Format(http.TimeFormat):                 0,
		// Values that overflow a time.Duration, or ask for more than a
		// retry horizon can use, saturate instead of turning negative.
		"9300000000":                    MaxRetryAfter,
		"999999999":                     MaxRetryAfter,
		"99999999999999999999999999":    MaxRetryAfter,
		"Fri, 31 Dec 9999 23:59:59 GMT": MaxRetryAfter,
		"86399":                         86399 * time.Second,
	} {
		if got := ParseRetryAfter(v, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	h := http.Header{}
	h.Set("Retry-After", "30")
	tests := []struct {
		status    int
		header    http.Header
		want      string // "" delivered, "retry", "permanent"
		wantDelay time.Duration
	}{
		{200, nil, "", 0}, {204, nil, "", 0},
		{400, nil, "permanent", 0}, {401, nil, "permanent", 0}, {404, nil, "permanent", 0}, {413, nil, "permanent", 0},
		{408, nil, "retry", 0}, {429, h, "retry", 30 * time.Second}, {500, nil, "retry", 0}, {503, h, "retry", 30 * time.Second},
		{301, nil, "permanent", 0}, {501, nil, "permanent", 0},
	}
	for _, tt := range tests {
		err := Classify("test", tt.status, tt.header, []byte(" body "))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%d: %v, want nil", tt.status, err)
		case tt.want == "permanent" && !opentrack.IsPermanent(err):
			t.Errorf("%d: %v, want permanent", tt.status, err)
		case tt.want == "retry" && (err == nil || opentrack.IsPermanent(err)):
			t.Errorf("%d: %v, want retryable", tt.status, err)
		}
		if tt.want == "" {
			continue
		}
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != tt.status || se.Body != "body" || se.Op != "test" {
			t.Errorf("%d: %#v, want a *StatusError with the status and trimmed body", tt.status, err)
		}
		if d, _ := opentrack.RetryAfterDelay(err); d != tt.wantDelay {
			t.Errorf("%d: Retry-After delay %v, want %v", tt.status, d, tt.wantDelay)
		}
	}
	long := make([]byte, 2*MaxErrorBody)
	for i := range long {
		long[i] = 'x'
	}
	var se *StatusError
	if errors.As(Classify("op", 500, nil, long), &se); len(se.Body) != MaxErrorBody {
		t.Errorf("body kept %d bytes, want %d", len(se.Body), MaxErrorBody)
	}
}
