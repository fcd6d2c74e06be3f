package customerio

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
	"github.com/opentrackhq/opentrack/internal/httpx"
	"github.com/opentrackhq/opentrack/spec"
)

var testTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// sampleEvents has one deliverable event per call, so that each path (the
// go-customerio calls and the integration's own requests) is tested.
func sampleEvents() map[string]spec.Event {
	common := func(t spec.Type) spec.Common {
		return spec.Common{Type: t, MessageID: "m-" + string(t), UserID: "user-1", Timestamp: testTime}
	}
	return map[string]spec.Event{
		"identify": &spec.Identify{Common: common(spec.TypeIdentify), Traits: map[string]any{"plan": "pro"}},
		"track":    &spec.Track{Common: common(spec.TypeTrack), Event: "Signed Up"},
		"page":     &spec.Page{Common: common(spec.TypePage), Name: "Home"},
		"screen":   &spec.Screen{Common: common(spec.TypeScreen), Name: "Home"},
		"group":    &spec.Group{Common: common(spec.TypeGroup), GroupID: "acme"},
		"alias":    &spec.Alias{Common: common(spec.TypeAlias), PreviousID: "anon-1"},
	}
}

func TestStatusClassification(t *testing.T) {
	httpDate := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	cases := []struct {
		name       string
		resp       fakecustomerio.Response
		ok         bool
		permanent  bool
		retryAfter time.Duration // 0: none asked; else at least this
	}{
		{name: "201 counts as delivered", resp: fakecustomerio.Response{Status: 201, Body: "{}"}, ok: true},
		{name: "204 counts as delivered", resp: fakecustomerio.Response{Status: 204, Body: " "}, ok: true},
		{name: "400 is permanent", resp: fakecustomerio.Response{Status: 400, Body: `{"meta":{"errors":["bad attribute"]}}`}, permanent: true},
		{name: "401 is permanent", resp: fakecustomerio.Response{Status: 401}, permanent: true},
		{name: "404 is permanent", resp: fakecustomerio.Response{Status: 404}, permanent: true},
		{name: "413 is permanent", resp: fakecustomerio.Response{Status: 413}, permanent: true},
		{name: "408 is retried", resp: fakecustomerio.Response{Status: 408}},
		{name: "429 is retried", resp: fakecustomerio.Response{Status: 429}},
		{name: "429 honours Retry-After seconds", resp: fakecustomerio.Response{Status: 429, Header: http.Header{"Retry-After": {"7"}}}, retryAfter: 7 * time.Second},
		{name: "500 is retried", resp: fakecustomerio.Response{Status: 500}},
		{name: "502 is retried", resp: fakecustomerio.Response{Status: 502}},
		{name: "503 honours a Retry-After date", resp: fakecustomerio.Response{Status: 503, Header: http.Header{"Retry-After": {httpDate}}}, retryAfter: 80 * time.Second},
	}
	for call, e := range sampleEvents() {
		for _, c := range cases {
			t.Run(call+"/"+c.name, func(t *testing.T) {
				in, srv := newTestIntegration(t, nil)
				srv.FailNext(1, c.resp)
				err := opentrack.Deliver(context.Background(), in, e)
				if srv.Attempts() != 1 {
					t.Fatalf("%d requests, want 1", srv.Attempts())
				}
				if c.ok {
					if err != nil {
						t.Fatalf("err = %v, want nil", err)
					}
					return
				}
				if err == nil {
					t.Fatal("err = nil")
				}
				var se *StatusError
				if !errors.As(err, &se) {
					t.Fatalf("err %v (%T) is not a *StatusError", err, err)
				}
				if se.StatusCode != c.resp.Status || se.Op != "customerio: "+call {
					t.Errorf("StatusError{Op: %q, StatusCode: %d}, want %q, %d", se.Op, se.StatusCode, "customerio: "+call, c.resp.Status)
				}
				// One package prefix, then the call and the status.
				if want := "customerio: " + call + ": " + strconv.Itoa(c.resp.Status) + " "; !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "customerio:") != 1 {
					t.Errorf("error text %q, want it to start %q, with one prefix", err, want)
				}
				if c.resp.Body != "" && se.Body != strings.TrimSpace(c.resp.Body) {
					t.Errorf("StatusError.Body = %q, want %q", se.Body, c.resp.Body)
				}
				if got := opentrack.IsPermanent(err); got != c.permanent {
					t.Errorf("IsPermanent = %v, want %v (err %v)", got, c.permanent, err)
				}
				d, asked := opentrack.RetryAfterDelay(err)
				if c.retryAfter == 0 && asked {
					t.Errorf("RetryAfter %v asked, want none", d)
				}
				if c.retryAfter > 0 && (!asked || d < c.retryAfter || d > c.retryAfter+15*time.Second) {
					t.Errorf("RetryAfterDelay = %v, %v; want about %v", d, asked, c.retryAfter)
				}
			})
		}
	}
}

func TestStatusErrorBodyIsBounded(t *testing.T) {
	in, srv := newTestIntegration(t, nil)
	for _, call := range []string{"identify", "track"} {
		srv.FailNext(1, fakecustomerio.Response{Status: 400, Body: strings.Repeat("x", 10000)})
		err := opentrack.Deliver(context.Background(), in, sampleEvents()[call])
		var se *StatusError
		if !errors.As(err, &se) || len(se.Body) != httpx.MaxErrorBody {
			t.Errorf("%s: body of %d bytes kept, want %d (err %v)", call, len(se.Body), httpx.MaxErrorBody, err)
		}
	}
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	for call, e := range sampleEvents() {
		in, srv := newTestIntegration(t, nil)
		srv.Close()
		err := opentrack.Deliver(context.Background(), in, e)
		if err == nil || opentrack.IsPermanent(err) {
			t.Errorf("%s: err = %v, want a retryable error", call, err)
		}
		var se *StatusError
		if errors.As(err, &se) {
			t.Errorf("%s: network error reported as status %d", call, se.StatusCode)
		}
		if want := "customerio: " + call + ": "; err != nil && (!strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "customerio:") != 1) {
			t.Errorf("%s: error text %q, want it to start %q, with one prefix", call, err, want)
		}
	}
}

func TestTimeout(t *testing.T) {
	for _, call := range []string{"identify", "track"} {
		in, srv := newTestIntegration(t, &Options{Timeout: 100 * time.Millisecond})
		srv.FailNext(1, fakecustomerio.Response{Status: 200, Delay: 5 * time.Second})
		start := time.Now()
		err := opentrack.Deliver(context.Background(), in, sampleEvents()[call])
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s: took %v with a 100ms timeout", call, took)
		}
		if err == nil || opentrack.IsPermanent(err) {
			t.Errorf("%s: err = %v, want a retryable timeout", call, err)
		}
	}
}

func TestContextIsHonoured(t *testing.T) {
	for _, call := range []string{"identify", "group"} {
		in, srv := newTestIntegration(t, nil)
		srv.FailNext(1, fakecustomerio.Response{Status: 200, Delay: 5 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		err := opentrack.Deliver(ctx, in, sampleEvents()[call])
		cancel()
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s: took %v after its context ended", call, took)
		}
		if !errors.Is(err, context.DeadlineExceeded) || opentrack.IsPermanent(err) {
			t.Errorf("%s: err = %v, want a retryable context.DeadlineExceeded", call, err)
		}
	}
}

func TestNotDeliverable(t *testing.T) {
	anon := spec.Common{AnonymousID: "anon-1", MessageID: "m", Timestamp: testTime}
	user := spec.Common{UserID: "user-1", MessageID: "m", Timestamp: testTime}
	cases := []struct {
		name string
		e    spec.Event
	}{
		{"identify without userId or email", &spec.Identify{Common: anon, Traits: map[string]any{"name": "Ada"}}},
		{"identify with a non-string email", &spec.Identify{Common: anon, Traits: map[string]any{"email": 42}}},
		{"track without a name", &spec.Track{Common: user}},
		{"track without any id", &spec.Track{Common: spec.Common{MessageID: "m"}, Event: "E"}},
		{"page without url or name", &spec.Page{Common: user, Properties: map[string]any{"path": "/x"}}},
		{"screen without a name", &spec.Screen{Common: anon}},
		{"group without groupId", &spec.Group{Common: user}},
		{"alias without previousId", &spec.Alias{Common: user}},
		{"alias without userId", &spec.Alias{Common: anon, PreviousID: "old"}},
	}
	in, srv := newTestIntegration(t, nil)
	for _, c := range cases {
		err := opentrack.Deliver(context.Background(), in, c.e)
		if !errors.Is(err, ErrNotDeliverable) || !opentrack.IsPermanent(err) {
			t.Errorf("%s: err = %v, want a permanent ErrNotDeliverable", c.name, err)
		}
		if err != nil && strings.Count(err.Error(), "customerio:") != 1 {
			t.Errorf("%s: error text %q, want one prefix", c.name, err)
		}
	}
	if n := srv.Attempts(); n != 0 {
		t.Errorf("%d requests sent for undeliverable events", n)
	}
}

func TestUnencodableEventIsPermanent(t *testing.T) {
	in, srv := newTestIntegration(t, nil)
	bad := map[string]any{"f": func() {}}
	for call, e := range map[string]spec.Event{
		"identify": &spec.Identify{Common: spec.Common{UserID: "u"}, Traits: bad},
		"track":    &spec.Track{Common: spec.Common{UserID: "u"}, Event: "E", Properties: bad},
	} {
		err := opentrack.Deliver(context.Background(), in, e)
		if err == nil || !opentrack.IsPermanent(err) {
			t.Errorf("%s: err = %v, want permanent", call, err)
		}
	}
	if n := srv.Attempts(); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}
