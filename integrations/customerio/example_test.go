package customerio_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	cio "github.com/customerio/go-customerio/v3"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/customerio"
	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
	"github.com/opentrackhq/opentrack/spec"
)

// New takes a go-customerio client; here one pointed at a local stand-in of
// the Track API, which prints the requests it receives.
func ExampleNew() {
	trackAPI := fakecustomerio.New("site-id", "api-key")
	defer trackAPI.Close()

	client := cio.NewTrackClient("site-id", "api-key")
	client.URL = trackAPI.URL() // normally the region: cio.WithRegion(cio.RegionEU)
	in, err := customerio.New(client, nil)
	if err != nil {
		log.Fatal(err)
	}

	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	events := []spec.Event{
		&spec.Identify{
			Common: spec.Common{Type: spec.TypeIdentify, UserID: "user-1", Timestamp: at},
			Traits: map[string]any{"email": "ada@example.com", "createdAt": "2020-01-02T03:04:05Z"},
		},
		&spec.Track{
			Common:     spec.Common{Type: spec.TypeTrack, MessageID: "msg-1", UserID: "user-1", Timestamp: at},
			Event:      "Signed Up",
			Properties: map[string]any{"plan": "pro"},
		},
	}
	for _, e := range events {
		if err := opentrack.Deliver(ctx, in, e); err != nil {
			log.Fatal(err)
		}
	}
	for _, c := range trackAPI.Calls() {
		fmt.Println(c.Method, c.Path, string(c.Body))
	}
	// Output:
	// PUT /api/v1/customers/user-1 {"created_at":1577934245,"email":"ada@example.com"}
	// POST /api/v1/customers/user-1/events {"name":"Signed Up","id":"01HWT0D7G0786Y6Y9JX2RSEHQJ","timestamp":1714564800,"data":{"plan":"pro"}}
}

// FromEnv configures the integration from CUSTOMERIO_SITE_ID,
// CUSTOMERIO_API_KEY, CUSTOMERIO_REGION and CUSTOMERIO_TRACK_URL. It returns
// opentrack.ErrNotConfigured when none is set, and the host leaves
// Customer.io out.
func ExampleFromEnv() {
	env := map[string]string{"CUSTOMERIO_SITE_ID": "site-id", "CUSTOMERIO_API_KEY": "api-key", "CUSTOMERIO_REGION": "eu"}
	var integrations []opentrack.Integration
	in, err := customerio.FromEnv(context.Background(), func(k string) string { return env[k] })
	switch {
	case errors.Is(err, opentrack.ErrNotConfigured):
		// Customer.io is off.
	case err != nil:
		log.Fatal(err) // a half or invalid configuration
	default:
		integrations = append(integrations, in)
	}
	m, err := opentrack.New(opentrack.Options{Integrations: integrations})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	fmt.Println(m.Stats()[0].Integration)

	_, err = customerio.FromEnv(context.Background(), func(string) string { return "" })
	fmt.Println(err)
	// Output:
	// Customer.io
	// opentrack: integration not configured
}
