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
//		"github.com/opentrackhq/opentrack/journal"
//	)
//
//	func main() {
//		sink, err := jsonl.Open("events.jsonl", nil)
//		if err != nil {
//			log.Fatal(err)
//		}
//		j, err := journal.Open("opentrack-data", nil) // a 2xx means "on disk"
//		if err != nil {
//			log.Fatal(err)
//		}
//		m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{sink}, Queue: j})
//		if err != nil {
//			log.Fatal(err)
//		}
//		key := os.Getenv("WRITE_KEY")
//		if key == "" {
//			log.Fatal("WRITE_KEY is not set")
//		}
//		mux := http.NewServeMux()
//		mux.Handle("/v1/", opentrack.NewHandler(m, &opentrack.HandlerOptions{
//			WriteKeys: []string{key},
//		}))
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
// Mount the Handler where Segment's /v1 would be, on the host's own router
// and behind its own middleware. It routes by the last segment of the path
// (/batch, /t, ...), so it serves the same whether the router strips the
// prefix (http.StripPrefix) or not (chi's Mount, gorilla/mux, echo, gin).
// Point the SDKs' host setting at the host's address; their paths
// (/v1/batch, /v1/t, ...) then reach the Handler.
//
// # Event targeting
//
// An event goes to every integration unless its "integrations" object says
// otherwise, as Segment reads it: the integration's own key (its Name) if
// present, else "All" (or "all", which analytics-go sends), else true. A
// key's value is false to disable, and true or an options object to enable;
// keys are case-sensitive. {"All": false, "BigQuery": true} sends an event
// to BigQuery alone.
//
// # Delivery
//
// The Handler answers as soon as an event is validated and safe in the queue
// ([Options.Queue]): in memory by default, on disk with the journal package
// (fsynced before the answer), on a replicated stream with the jetstream
// package. It never waits for a destination. Each integration has its own
// part of the queue and its own workers, so a slow or failing destination
// fills only its own part. The events of one user reach an integration in
// the order they were accepted; different users are delivered in parallel.
// Failed deliveries are retried with exponential backoff and jitter, bounded
// by attempts and elapsed time, each waiting on a timer rather than in a
// worker; integrations mark errors that retrying cannot fix with
// [Permanent], and ask for a wait with [RetryAfter]. An event that cannot be
// delivered goes to [Options.OnFailure], is logged and counted in
// [Manager.Stats]: nothing accepted is dropped silently.
//
// With the memory queue a crash loses what it holds; with a durable queue
// each integration resumes after a restart where it was, and what was in
// flight is delivered again (at least once: destinations dedupe by
// messageId).
//
// # Shutdown
//
// Call http.Server.Shutdown first, so no request is in flight, then
// [Manager.Shutdown], which stops intake, delivers what was accepted, flushes
// and closes the integrations. Give each its own deadline: a slow client
// holding a request open must not use up the time the deliveries need. If
// Manager.Shutdown's deadline passes, every event not yet delivered goes to
// [Options.OnFailure] before it returns with the memory queue, and stays in
// a durable queue for the next start. Requests that arrive after
// Manager.Shutdown began are answered 503 with Retry-After, so SDKs send
// them again later.
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
// override only the calls you need, or wrap one function with [Func] and
// read the event by its type:
//
//	audit := opentrack.Func("Audit", func(ctx context.Context, e spec.Event) error {
//		if t, ok := e.(*spec.Track); ok {
//			return db.Insert(ctx, t.MessageID, t.UserID, t.Event, t.Properties)
//		}
//		return nil
//	})
//
// Numbers in properties, traits and context are json.Number, as decoded,
// so that no digit is lost: read them with its Float64 or Int64 methods.
//
// Optional interfaces add capabilities: [Initializer] (prepare before the
// first event), [Batcher] (take batches, for warehouses), [Flusher],
// [Closer] and [DeliveryTuner] (own queue, concurrency and retry settings).
package opentrack
