package jetstream_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/jsonl"
	"github.com/opentrackhq/opentrack/jetstream"
)

// A collector on a stream replicated on three NATS servers. Run as many of
// them as needed behind a load balancer: they share the stream, and each
// event is delivered by one of them.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	q, err := jetstream.Open(ctx, &jetstream.Options{
		Servers:  []string{"nats://nats-1:4222", "nats://nats-2:4222", "nats://nats-3:4222"},
		Replicas: 3,
	})
	if err != nil {
		log.Fatal(err)
	}
	sink, err := jsonl.Open("events.jsonl", nil)
	if err != nil {
		log.Fatal(err)
	}
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{sink}, Queue: q})
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: ":8080", Handler: http.StripPrefix("/v1", opentrack.NewHandler(m, nil))}
	go srv.ListenAndServe()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	m.Shutdown(sctx) // records read and not settled go back to the stream, for the others
}
