package webhooktest

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const standardSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func post(t *testing.T, url, method, contentType, body string, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func segmentSig(secret, body string) http.Header {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(body))
	return http.Header{"X-Signature": {hex.EncodeToString(mac.Sum(nil))}}
}

func TestServerChecks(t *testing.T) {
	s := New(&Options{SegmentSecret: "k"})
	defer s.Close()
	obj, arr := `{"type":"track"}`, `[{"type":"track"},{"type":"page"}]`
	cases := []struct {
		name, method, ct, body string
		header                 http.Header
		want                   int
	}{
		{"object", "POST", "application/json", obj, segmentSig("k", obj), 200},
		{"array", "PUT", "application/json; charset=utf-8", arr, segmentSig("k", arr), 200},
		{"no signature", "POST", "application/json", obj, nil, 401},
		{"wrong secret", "POST", "application/json", obj, segmentSig("other", obj), 401},
		{"signature of another body", "POST", "application/json", obj, segmentSig("k", arr), 401},
		{"GET", "GET", "application/json", obj, segmentSig("k", obj), 405},
		{"text/plain", "POST", "text/plain", obj, segmentSig("k", obj), 415},
		{"not JSON", "POST", "application/json", "nope", segmentSig("k", "nope"), 400},
		{"array of numbers", "POST", "application/json", "[1]", segmentSig("k", "[1]"), 400},
		{"empty array", "POST", "application/json", "[]", segmentSig("k", "[]"), 400},
		{"null", "POST", "application/json", "null", segmentSig("k", "null"), 400},
	}
	for _, c := range cases {
		if got := post(t, s.URL(), c.method, c.ct, c.body, c.header); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	acc := s.Accepted()
	if len(acc) != 2 || len(acc[0].Events) != 1 || acc[0].Batch || len(acc[1].Events) != 2 || !acc[1].Batch {
		t.Errorf("accepted %+v", acc)
	}
	if len(s.Received()) != len(cases) || len(s.Events()) != 3 {
		t.Errorf("received %d requests and %d events", len(s.Received()), len(s.Events()))
	}
}

func TestServerStandardWebhooks(t *testing.T) {
	s := New(&Options{StandardSecret: standardSecret})
	defer s.Close()
	wh, err := standardwebhooks.NewWebhook(standardSecret)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"type":"track"}`
	headers := func(at time.Time, signed string) http.Header {
		sig, err := wh.Sign("msg-1", at, []byte(signed))
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Webhook-Id": {"msg-1"}, "Webhook-Timestamp": {strconv.FormatInt(at.Unix(), 10)}, "Webhook-Signature": {sig}}
	}
	for name, c := range map[string]struct {
		h    http.Header
		want int
	}{
		"signed":       {headers(time.Now(), body), 200},
		"another body": {headers(time.Now(), `{}`), 401},
		"too old":      {headers(time.Now().Add(-time.Hour), body), 401},
		"no headers":   {nil, 401},
	} {
		if got := post(t, s.URL(), "POST", "application/json", body, c.h); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
}
