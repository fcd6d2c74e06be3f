package customerio

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	cio "github.com/customerio/go-customerio/v3"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFromEnv(t *testing.T) {
	creds := map[string]string{"CUSTOMERIO_SITE_ID": "site", "CUSTOMERIO_API_KEY": "key"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range creds {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name    string
		env     map[string]string
		wantNil bool
		wantErr string
		base    string
	}{
		{name: "not configured", env: map[string]string{}, wantNil: true},
		{name: "blank values are unset", env: map[string]string{"CUSTOMERIO_SITE_ID": " ", "CUSTOMERIO_API_KEY": ""}, wantNil: true},
		{name: "only the site id", env: map[string]string{"CUSTOMERIO_SITE_ID": "site"}, wantErr: "CUSTOMERIO_API_KEY is not"},
		{name: "only the api key", env: map[string]string{"CUSTOMERIO_API_KEY": "key"}, wantErr: "CUSTOMERIO_SITE_ID is not"},
		{name: "default region US", env: creds, base: "https://track.customer.io"},
		{name: "region us", env: with(map[string]string{"CUSTOMERIO_REGION": "us"}), base: "https://track.customer.io"},
		{name: "region eu", env: with(map[string]string{"CUSTOMERIO_REGION": "eu"}), base: "https://track-eu.customer.io"},
		{name: "region EU", env: with(map[string]string{"CUSTOMERIO_REGION": " EU "}), base: "https://track-eu.customer.io"},
		{name: "unknown region", env: with(map[string]string{"CUSTOMERIO_REGION": "APAC"}), wantErr: "CUSTOMERIO_REGION"},
		{name: "track url", env: with(map[string]string{"CUSTOMERIO_REGION": "EU", "CUSTOMERIO_TRACK_URL": "http://127.0.0.1:9999/"}), base: "http://127.0.0.1:9999"},
		{name: "track url without scheme", env: with(map[string]string{"CUSTOMERIO_TRACK_URL": "localhost:9999"}), wantErr: "CUSTOMERIO_TRACK_URL"},
		{name: "track url not a url", env: with(map[string]string{"CUSTOMERIO_TRACK_URL": "http://[::1"}), wantErr: "CUSTOMERIO_TRACK_URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, err := FromEnv(context.Background(), env(c.env))
			switch {
			case c.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, c.wantErr)
				}
				if in != nil {
					t.Error("an Integration returned with the error")
				}
			case c.wantNil:
				if in != nil || err != nil {
					t.Fatalf("got %v, %v; want nil, nil", in, err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if in.base != c.base || in.client.URL != c.base {
					t.Errorf("base URL %q (client %q), want %q", in.base, in.client.URL, c.base)
				}
				if in.http.Timeout != DefaultTimeout {
					t.Errorf("timeout %v, want %v", in.http.Timeout, DefaultTimeout)
				}
				if in.objectType != DefaultObjectTypeID {
					t.Errorf("object type %q", in.objectType)
				}
			}
		})
	}
}

// TestFromEnvDelivers runs a configuration from the environment against the
// stand-in, which checks the credentials of each call.
func TestFromEnvDelivers(t *testing.T) {
	srv := fakecustomerio.New(testSite, testKey)
	defer srv.Close()
	in, err := FromEnv(context.Background(), env(map[string]string{
		"CUSTOMERIO_SITE_ID":   testSite,
		"CUSTOMERIO_API_KEY":   testKey,
		"CUSTOMERIO_REGION":    "eu",
		"CUSTOMERIO_TRACK_URL": srv.URL(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if in.Name() != "Customer.io" {
		t.Errorf("Name() = %q", in.Name())
	}
	for call, e := range sampleEvents() {
		if err := opentrack.Deliver(context.Background(), in, e); err != nil {
			t.Errorf("%s: %v", call, err)
		}
	}
	if got := len(srv.Calls()); got != len(sampleEvents()) {
		t.Errorf("%d calls accepted, want %d", got, len(sampleEvents()))
	}
}

func TestWrongCredentialsArePermanent(t *testing.T) {
	srv := fakecustomerio.New(testSite, testKey)
	defer srv.Close()
	in := NewWithCredentials(testSite, "wrong", &Options{TrackURL: srv.URL()})
	for call, e := range sampleEvents() {
		err := opentrack.Deliver(context.Background(), in, e)
		if !opentrack.IsPermanent(err) || !strings.Contains(err.Error(), "401") {
			t.Errorf("%s: err = %v, want a permanent 401", call, err)
		}
	}
	if len(srv.Calls()) != 0 {
		t.Error("calls accepted with wrong credentials")
	}
}

func TestNewUsesTheClient(t *testing.T) {
	srv := fakecustomerio.New(testSite, testKey)
	defer srv.Close()
	region := cio.RegionUS
	region.TrackURL = srv.URL()
	userHTTP := &http.Client{Timeout: 3 * time.Second}
	client := cio.NewTrackClient(testSite, testKey, cio.WithRegion(region), cio.WithHTTPClient(userHTTP), cio.WithUserAgent("my-app/1.0"))

	in := New(client, nil)

	// The caller's client is left as it was.
	if client.URL != srv.URL() || client.Client != userHTTP || userHTTP.Timeout != 3*time.Second || userHTTP.Transport != nil {
		t.Errorf("New changed the caller's client: URL %q, Client %p (want %p), Timeout %v, Transport %v",
			client.URL, client.Client, userHTTP, userHTTP.Timeout, userHTTP.Transport)
	}
	if in.http.Timeout != 3*time.Second {
		t.Errorf("timeout %v, want the client's 3s", in.http.Timeout)
	}
	want := "Basic " + base64.URLEncoding.EncodeToString([]byte(testSite+":"+testKey))
	if in.auth != want {
		t.Errorf("auth %q, want %q", in.auth, want)
	}
	for call, e := range sampleEvents() {
		if err := opentrack.Deliver(context.Background(), in, e); err != nil {
			t.Errorf("%s: %v", call, err)
		}
	}
	calls := srv.Calls()
	if len(calls) != len(sampleEvents()) {
		t.Fatalf("%d calls, want %d", len(calls), len(sampleEvents()))
	}
	for _, c := range calls {
		if c.UserAgent != "my-app/1.0" {
			t.Errorf("%s %s: User-Agent %q, want the client's", c.Method, c.Path, c.UserAgent)
		}
	}
}

func TestNewOptions(t *testing.T) {
	client := cio.NewTrackClient("s", "k")
	cases := []struct {
		name    string
		opts    *Options
		base    string
		timeout time.Duration
		object  string
	}{
		{"nil options", nil, "https://track.customer.io", DefaultTimeout, "1"},
		{"region EU", &Options{Region: RegionEU}, "https://track-eu.customer.io", DefaultTimeout, "1"},
		{"track url wins over region", &Options{Region: RegionEU, TrackURL: "https://proxy.internal/"}, "https://proxy.internal", DefaultTimeout, "1"},
		{"timeout and object type", &Options{Timeout: time.Second, ObjectTypeID: "2"}, "https://track.customer.io", time.Second, "2"},
	}
	for _, c := range cases {
		in := New(client, c.opts)
		if in.base != c.base || in.client.URL != c.base || in.http.Timeout != c.timeout || in.objectType != c.object {
			t.Errorf("%s: base %q, client URL %q, timeout %v, object type %q; want %q, %v, %q",
				c.name, in.base, in.client.URL, in.http.Timeout, in.objectType, c.base, c.timeout, c.object)
		}
	}
	if client.URL != "https://track.customer.io" || client.Client.Timeout != 0 {
		t.Error("New changed the caller's client")
	}
}

func TestNewPanicsOnProgrammingErrors(t *testing.T) {
	client := cio.NewTrackClient("s", "k")
	cases := map[string]func(){
		"nil client":       func() { New(nil, nil) },
		"unknown region":   func() { New(client, &Options{Region: "APAC"}) },
		"negative timeout": func() { New(client, &Options{Timeout: -1}) },
		"relative url":     func() { New(client, &Options{TrackURL: "track.customer.io"}) },
	}
	for name, f := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestParseRegion(t *testing.T) {
	for in, want := range map[string]Region{"": RegionUS, "us": RegionUS, "US": RegionUS, "eU": RegionEU} {
		if got, err := ParseRegion(in); got != want || err != nil {
			t.Errorf("ParseRegion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseRegion("ap"); err == nil {
		t.Error("ParseRegion(ap) succeeded")
	}
	if RegionEU.TrackURL() != "https://track-eu.customer.io" || RegionUS.TrackURL() != "https://track.customer.io" || Region("x").TrackURL() != "" {
		t.Error("TrackURL")
	}
}

func TestClose(t *testing.T) {
	in, srv := newTestIntegration(t, nil)
	if err := opentrack.Deliver(context.Background(), in, sampleEvents()["track"]); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if len(srv.Calls()) != 1 {
		t.Errorf("%d calls", len(srv.Calls()))
	}
}

func TestCallsAfterCloseFail(t *testing.T) {
	in, srv := newTestIntegration(t, nil)
	if err := in.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, e := range sampleEvents() {
		err := opentrack.Deliver(context.Background(), in, e)
		if !errors.Is(err, ErrClosed) || !opentrack.IsPermanent(err) {
			t.Errorf("%s after Close = %v, want a permanent ErrClosed", name, err)
		}
	}
	if err := in.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := srv.Attempts(); n != 0 {
		t.Errorf("the Track API got %d requests after Close, want 0", n)
	}
}
