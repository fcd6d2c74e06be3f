// Command custom shows a custom integration: an in-house sink that counts
// revenue from "Order Completed" events and prints each new sign-up, next to
// one built from a single function with opentrack.Func.
//
//	go run ./examples/custom
//	curl -H 'Content-Type: application/json' -d '{"userId":"u1","event":"Order Completed","properties":{"revenue":12.5}}' localhost:8080/v1/track
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// Revenue is the in-house sink: it embeds opentrack.Base for the calls it
// ignores and implements the two it cares about.
type Revenue struct {
	opentrack.Base
	mu    sync.Mutex
	total float64
}

// Track adds the revenue of completed orders.
func (r *Revenue) Track(ctx context.Context, e *spec.Track) error {
	if e.Event != "Order Completed" {
		return nil
	}
	v, _ := e.Properties["revenue"].(json.Number)
	amount, err := v.Float64()
	if err != nil {
		return opentrack.Permanent(fmt.Errorf("revenue: %q is not a number", v)) // retrying will not help
	}
	r.mu.Lock()
	r.total += amount
	fmt.Printf("revenue: %.2f (+%.2f from %s)\n", r.total, amount, e.UserID)
	r.mu.Unlock()
	return nil
}

// Identify prints new users.
func (r *Revenue) Identify(ctx context.Context, e *spec.Identify) error {
	fmt.Printf("revenue: hello %s %v\n", e.UserID, e.Traits["email"])
	return nil
}

func main() {
	audit := opentrack.Func("Audit", func(ctx context.Context, e spec.Event) error {
		b, err := json.Marshal(e)
		if err != nil {
			return opentrack.Permanent(err)
		}
		fmt.Printf("audit: %s\n", b)
		return nil
	})
	m, err := opentrack.New(opentrack.Options{
		Integrations: []opentrack.Integration{&Revenue{Base: opentrack.Base{ID: "Revenue"}}, audit},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", opentrack.NewHandler(m, nil)))
	srv := &http.Server{Addr: ":8080", Handler: mux}
	go func() {
		if err := srv.ListenAndServe(); err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	<-ctx.Done()
	// Each with its own deadline: a slow client must not use up the time
	// the deliveries need.
	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	_ = srv.Shutdown(hctx)
	mctx, mcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer mcancel()
	if err := m.Shutdown(mctx); err != nil {
		log.Print(err)
	}
}
