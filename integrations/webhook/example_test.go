package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/webhook"
	"github.com/opentrackhq/opentrack/spec"
)

// New sends each event to the URL; here a local receiver that prints what
// it gets.
func ExampleNew() {
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Println(r.Method, r.URL.Path)
		for _, h := range []string{"Content-Type", "Authorization", "Idempotency-Key", "X-Signature"} {
			fmt.Printf("%s: %s\n", h, r.Header.Get(h))
		}
		fmt.Println(string(body))
	}))
	defer receiver.Close()

	in, err := webhook.New(receiver.URL+"/segment", &webhook.Options{
		Secret:  "shared-secret",
		Headers: http.Header{"Authorization": {"Bearer token"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	e := &spec.Track{
		Common:     spec.Common{Type: spec.TypeTrack, MessageID: "msg-1", UserID: "user-1", Timestamp: at, ReceivedAt: at},
		Event:      "Signed Up",
		Properties: map[string]any{"plan": "pro"},
	}
	if err := opentrack.Deliver(context.Background(), in, e); err != nil {
		log.Fatal(err)
	}
	// The signature is the one openssl gives:
	//   printf '%s' "$body" | openssl dgst -sha1 -hmac shared-secret
	// Output:
	// POST /segment
	// Content-Type: application/json
	// Authorization: Bearer token
	// Idempotency-Key: msg-1
	// X-Signature: 1c197f839acb47bcc05f05922a232862db96254e
	// {"type":"track","messageId":"msg-1","userId":"user-1","timestamp":"2026-05-01T12:00:00Z","receivedAt":"2026-05-01T12:00:00Z","event":"Signed Up","properties":{"plan":"pro"}}
}

// FromEnv reads WEBHOOK_URL and the other WEBHOOK_* variables; without any
// of them it returns opentrack.ErrNotConfigured and the host leaves the
// integration out.
func ExampleFromEnv() {
	env := map[string]string{
		"WEBHOOK_URL":        "https://hooks.example.com/segment",
		"WEBHOOK_SECRET":     "shared-secret",
		"WEBHOOK_HEADERS":    `{"Authorization": "Bearer token"}`,
		"WEBHOOK_BATCH_SIZE": "100",
	}
	var integrations []opentrack.Integration
	in, err := webhook.FromEnv(context.Background(), func(k string) string { return env[k] })
	switch {
	case errors.Is(err, opentrack.ErrNotConfigured):
	case err != nil:
		log.Fatal(err)
	default:
		integrations = append(integrations, in)
	}
	m, err := opentrack.New(opentrack.Options{Integrations: integrations})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	fmt.Println(m.Stats()[0].Integration, in.Delivery().Batch.MaxEvents)
	// Output: Webhook 100
}

// verifySegmentSignature is a receiver's check of X-Signature: the hex
// HMAC-SHA1 of the body, keyed with the shared secret.
func verifySegmentSignature(secret string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		mac := hmac.New(sha1.New, []byte(secret))
		mac.Write(body)
		if err != nil || !hmac.Equal([]byte(r.Header.Get("X-Signature")), []byte(hex.EncodeToString(mac.Sum(nil)))) {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// A receiver verifies X-Signature before it trusts the body; a request
// signed with another secret is refused, and the integration reports that
// as a permanent failure.
func Example_receiver() {
	receiver := httptest.NewServer(verifySegmentSignature("shared-secret", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			fmt.Printf("verified %s: %d bytes\n", r.Header.Get("Idempotency-Key"), len(body))
		})))
	defer receiver.Close()

	e := &spec.Track{Common: spec.Common{Type: spec.TypeTrack, MessageID: "msg-1", UserID: "user-1"}, Event: "Signed Up"}
	for _, secret := range []string{"shared-secret", "another-secret"} {
		in, err := webhook.New(receiver.URL, &webhook.Options{Secret: secret})
		if err != nil {
			log.Fatal(err)
		}
		err = opentrack.Deliver(context.Background(), in, e)
		fmt.Println("permanent:", opentrack.IsPermanent(err), err)
	}
	// Output:
	// verified msg-1: 74 bytes
	// permanent: false <nil>
	// permanent: true webhook: 401 Unauthorized: invalid signature
}
