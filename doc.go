// Package opentrack is a Segment-compatible event collector as a Go library:
// an [http.Handler] that serves the Segment HTTP Tracking API, and a
// [Manager] that delivers every accepted event, in the background, to each
// [Integration] it targets.
//
// Real Segment SDKs (analytics.js, analytics-node, analytics-go, ...) work
// against it unchanged but for their host setting.
//
// # Example
//
//	package main
//
//	import (
//		"context"
//		"log"
//		"net/http"
//		"os"
//		"os/signal"
//		"time"
//
//		"github.com/opentrackhq/opentrack"
//		"github.com/opentrackhq/opentrack/integrations/jsonl"
//	)
//
//	func main() {
//		sink, err := jsonl.Open("events.jsonl", nil)
//		if err != nil {
//			log.Fatal(err)
//		}
//		m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{sink}})
//		if err != nil {
//			log.Fatal(err)
//		}
//		key := os.Getenv("WRITE_KEY")
//		if key == "" {
//			log.Fatal("WRITE_KEY is not set")
//		}
//		mux := http.NewServeMux()
//		mux.Handle("/v1/", http.StripPrefix("/v1", opentrack.NewHandler(m, &opentrack.HandlerOptions{
//			WriteKeys: []string{key},
//		})))
//		srv := &http.Server{Addr: ":8080", Handler: mux, ReadTimeout: 10 * time.Second}
//		go srv.ListenAndServe()
//
//		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
//		defer stop()
//		<-ctx.Done()
//		// Stop taking requests, with a budget of its own ...
//		hctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//		defer cancel()
//		if srv.Shutdown(hctx) != nil {
//			srv.Close()
//		}
//		// ... then deliver what was accepted.
//		mctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
//		defer cancel()
//		if err := m.Shutdown(mctx); err != nil {
//			log.Print(err)
//		}
//	}
//
// # Mounting
//
// The Handler's routes are relative: mount it where Segment's /v1 would be,
// with the prefix stripped, on the host's own mux and behind its own
// middleware. Point the SDKs' host setting at the host's address; their
// paths (/v1/batch, /v1/t, ...) then reach the Handler.
//
// # Delivery
//
// The Handler answers as soon as an event is validated and enqueued; it never
// waits for a destination. Each integration has its own bounded queue and
// workers, so a slow or failing destination fills only its own queue. Failed
// deliveries are retried with exponential backoff and jitter, bounded by
// attempts and elapsed time; integrations mark errors that retrying cannot
// fix with [Permanent], and ask for a wait with [RetryAfter]. An event that
// cannot be delivered goes to [Options.OnFailure], is logged and counted in
// [Manager.Stats]: nothing accepted is dropped silently.
//
// The queues live in memory. [Manager.Shutdown] drains them; a crash loses
// what they hold.
//
// # Shutdown
//
// Call http.Server.Shutdown first, so no request is in flight, then
// [Manager.Shutdown], which stops intake, delivers what was accepted, flushes
// and closes the integrations. Give each its own deadline: a slow client
// holding a request open must not use up the time the deliveries need. If
// Manager.Shutdown's deadline passes, every event not yet delivered goes to
// [Options.OnFailure] before it returns. Requests that arrive after Manager.Shutdown
// began are answered 503 with Retry-After, so SDKs send them again later.
//
// # Errors
//
// The Handler answers 400 with a JSON body naming each field and rule an
// event broke ({"error":"Invalid event","fields":[{"field":"event",
// "rule":"required","message":"cannot be blank"}]}), 401 for a wrong write
// key, 413 for a body over Segment's limits, and 503 when a queue is full
// ([ErrQueueFull]) or the Manager is closed ([ErrClosed]).
//
// # Writing an Integration
//
// Implement [Integration] (one method per Segment call), embed [Base] and
// override only the calls you need, or wrap one function with [Func]:
//
//	audit := opentrack.Func("Audit", func(ctx context.Context, e spec.Event) error {
//		return db.Insert(ctx, e.Fields().MessageID, e)
//	})
//
// Optional interfaces add capabilities: [Initializer] (prepare before the
// first event), [Batcher] (take batches, for warehouses), [Flusher],
// [Closer] and [DeliveryTuner] (own queue, concurrency and retry settings).
package opentrack
