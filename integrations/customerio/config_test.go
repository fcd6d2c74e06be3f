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
		name          string
		env           map[string]string
		notConfigured bool
		wantField     string // the *opentrack.ConfigError's Field
		base          string
	}{
		{name: "not configured", env: map[string]string{}, notConfigured: true},
		{name: "blank values are unset", env: map[string]string{"CUSTOMERIO_SITE_ID": " ", "CUSTOMERIO_API_KEY": "", "CUSTOMERIO_REGION": "\t"}, notConfigured: true},
		{name: "only the site id", env: map[string]string{"CUSTOMERIO_SITE_ID": "site"}, wantField: "CUSTOMERIO_API_KEY"},
		{name: "only the api key", env: map[string]string{"CUSTOMERIO_API_KEY": "key"}, wantField: "CUSTOMERIO_SITE_ID"},
		{name: "only the region", env: map[string]string{"CUSTOMERIO_REGION": "eu"}, wantField: "CUSTOMERIO_SITE_ID"},
		{name: "only the track url", env: map[string]string{"CUSTOMERIO_TRACK_URL": "http://127.0.0.1:9060"}, wantField: "CUSTOMERIO_SITE_ID"},
		{name: "site id and track url", env: map[string]string{"CUSTOMERIO_SITE_ID": "site", "CUSTOMERIO_TRACK_URL": "http://127.0.0.1:9060"}, wantField: "CUSTOMERIO_API_KEY"},
		{name: "default region US", env: creds, base: "https://track.customer.io"},
		{name: "region us", env: with(map[string]string{"CUSTOMERIO_REGION": "us"}), base: "https://track.customer.io"},
		{name: "region eu", env: with(map[string]string{"CUSTOMERIO_REGION": "eu"}), base: "https://track-eu.customer.io"},
		{name: "region EU", env: with(map[string]string{"CUSTOMERIO_REGION": " EU "}), base: "https://track-eu.customer.io"},
		{name: "unknown region", env: with(map[string]string{"CUSTOMERIO_REGION": "APAC"}), wantField: "CUSTOMERIO_REGION"},
		{name: "track url", env: with(map[string]string{"CUSTOMERIO_REGION": "EU", "CUSTOMERIO_TRACK_URL": "http://127.0.0.1:9999/"}), base: "http://127.0.0.1:9999"},
		{name: "track url with a path", env: with(map[string]string{"CUSTOMERIO_TRACK_URL": "https://proxy.internal/cio/"}), base: "https://proxy.internal/cio"},
		{name: "track url without scheme", env: with(map[string]string{"CUSTOMERIO_TRACK_URL": "localhost:9999"}), wantField: "CUSTOMERIO_TRACK_URL"},
		{name: "track url not a url", env: with(map[string]string{"CUSTOMERIO_TRACK_URL": "http://[::1"}), wantField: "CUSTOMERIO_TRACK_URL"},
		{name: "track url with a query", env: with(map[string]string{"CUSTOMERIO_TRACK_URL": "http://127.0.0.1:9999?x=1"}), wantField: "CUSTOMERIO_TRACK_URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, err := FromEnv(context.Background(), env(c.env))
			if (err != nil) != (in == nil) {
				t.Fatalf("FromEnv = %v, %v; want an Integration or an error", in, err)
			}
			switch {
			case c.wantField != "":
				var ce *opentrack.ConfigError
				if !errors.As(err, &ce) || ce.Field != c.wantField {
					t.Fatalf("err = %v, want a *opentrack.ConfigError for %s", err, c.wantField)
				}
				if strings.Count(err.Error(), "customerio:") > 0 || !strings.HasPrefix(err.Error(), "opentrack: invalid "+c.wantField+": ") {
					t.Errorf("error text %q, want one prefix and the variable", err)
				}
			case c.notConfigured:
				if err != opentrack.ErrNotConfigured {
					t.Fatalf("err = %v, want opentrack.ErrNotConfigured", err)
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
	in, err := NewWithCredentials(testSite, "wrong", &Options{TrackURL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
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

	in, err := New(client, nil)
	if err != nil {
		t.Fatal(err)
	}

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
	euClient := cio.NewTrackClient("s", "k", cio.WithRegion(cio.RegionEU))
	noURL := cio.NewTrackClient("s", "k")
	noURL.URL = ""
	cases := []struct {
		name    string
		client  *cio.CustomerIO
		opts    *Options
		base    string
		timeout time.Duration
		object  string
	}{
		{"nil options", client, nil, "https://track.customer.io", DefaultTimeout, "1"},
		{"zero options", client, &Options{}, "https://track.customer.io", DefaultTimeout, "1"},
		{"region EU", client, &Options{Region: RegionEU}, "https://track-eu.customer.io", DefaultTimeout, "1"},
		{"track url wins over region", client, &Options{Region: RegionEU, TrackURL: "https://proxy.internal/"}, "https://proxy.internal", DefaultTimeout, "1"},
		{"timeout and object type", client, &Options{Timeout: time.Second, ObjectTypeID: "2"}, "https://track.customer.io", time.Second, "2"},
		// A zero Region keeps the client's own URL, and a client built for
		// the EU stays there; an explicit Region moves it.
		{"EU client, zero region", euClient, nil, "https://track-eu.customer.io", DefaultTimeout, "1"},
		{"EU client, region US", euClient, &Options{Region: RegionUS}, "https://track.customer.io", DefaultTimeout, "1"},
		{"client without a URL", noURL, nil, "https://track.customer.io", DefaultTimeout, "1"},
	}
	for _, c := range cases {
		in, err := New(c.client, c.opts)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if in.base != c.base || in.client.URL != c.base || in.http.Timeout != c.timeout || in.objectType != c.object {
			t.Errorf("%s: base %q, client URL %q, timeout %v, object type %q; want %q, %v, %q",
				c.name, in.base, in.client.URL, in.http.Timeout, in.objectType, c.base, c.timeout, c.object)
		}
	}
	if client.URL != "https://track.customer.io" || client.Client.Timeout != 0 || euClient.URL != "https://track-eu.customer.io" {
		t.Error("New changed the caller's client")
	}
}

// TestZeroRegionIsUS: with nothing set, both constructors send to the US
// host.
func TestZeroRegionIsUS(t *testing.T) {
	byClient, err := New(cio.NewTrackClient("s", "k"), &Options{})
	if err != nil {
		t.Fatal(err)
	}
	byCredentials, err := NewWithCredentials("s", "k", &Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]*Integration{"New": byClient, "NewWithCredentials": byCredentials} {
		if in.base != RegionUS.TrackURL() || in.client.URL != RegionUS.TrackURL() {
			t.Errorf("%s with a zero Region: base %q, client URL %q; want %q", name, in.base, in.client.URL, RegionUS.TrackURL())
		}
	}
}

// TestConfigErrors: a bad argument or option is a *opentrack.ConfigError
// naming it, never a panic.
func TestConfigErrors(t *testing.T) {
	client := cio.NewTrackClient("s", "k")
	badURL := cio.NewTrackClient("s", "k")
	badURL.URL = "track.customer.io"
	cases := map[string]struct {
		build func() (*Integration, error)
		field string
	}{
		"nil client":              {func() (*Integration, error) { return New(nil, nil) }, "customerio.New client"},
		"client URL":              {func() (*Integration, error) { return New(badURL, nil) }, "customerio.New client.URL"},
		"unknown region":          {func() (*Integration, error) { return New(client, &Options{Region: "APAC"}) }, "customerio.Options.Region"},
		"lower-case region":       {func() (*Integration, error) { return New(client, &Options{Region: "eu"}) }, "customerio.Options.Region"},
		"negative timeout":        {func() (*Integration, error) { return New(client, &Options{Timeout: -1}) }, "customerio.Options.Timeout"},
		"relative url":            {func() (*Integration, error) { return New(client, &Options{TrackURL: "track.customer.io"}) }, "customerio.Options.TrackURL"},
		"ftp url":                 {func() (*Integration, error) { return New(client, &Options{TrackURL: "ftp://track.customer.io"}) }, "customerio.Options.TrackURL"},
		"url with a fragment":     {func() (*Integration, error) { return New(client, &Options{TrackURL: "https://x.example#f"}) }, "customerio.Options.TrackURL"},
		"blank object type":       {func() (*Integration, error) { return New(client, &Options{ObjectTypeID: " "}) }, "customerio.Options.ObjectTypeID"},
		"empty site id":           {func() (*Integration, error) { return NewWithCredentials("", "k", nil) }, "customerio.NewWithCredentials siteID"},
		"empty api key":           {func() (*Integration, error) { return NewWithCredentials("s", " ", nil) }, "customerio.NewWithCredentials apiKey"},
		"credentials, bad region": {func() (*Integration, error) { return NewWithCredentials("s", "k", &Options{Region: "AP"}) }, "customerio.Options.Region"},
	}
	for name, c := range cases {
		in, err := c.build()
		var ce *opentrack.ConfigError
		if in != nil || !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("%s: %v, %v; want a *opentrack.ConfigError for %s", name, in, err, c.field)
		}
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
		if !errors.Is(err, opentrack.ErrClosed) || !opentrack.IsPermanent(err) || err.Error() != "customerio: opentrack: closed" {
			t.Errorf("%s after Close = %v, want a permanent opentrack.ErrClosed", name, err)
		}
	}
	if err := in.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := srv.Attempts(); n != 0 {
		t.Errorf("the Track API got %d requests after Close, want 0", n)
	}
}
