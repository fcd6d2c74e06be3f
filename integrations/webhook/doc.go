// Package webhook is the OpenTrack integration that sends every accepted
// event to an HTTP endpoint of your own, as Segment's Webhooks destination
// does: the event as Segment JSON, enriched by the collector (messageId,
// receivedAt, timestamp, context.ip) with every field the sender sent,
// unknown ones included.
//
// # Set-up
//
//	in, err := webhook.New("https://hooks.example.com/segment", &webhook.Options{
//		Secret:  os.Getenv("WEBHOOK_SECRET"),
//		Headers: http.Header{"Authorization": {"Bearer " + token}},
//	})
//
//	in, err := webhook.FromEnv(ctx, os.Getenv) // opentrack.ErrNotConfigured without WEBHOOK_URL
//
// and pass it to [opentrack.New] with the other integrations. Several
// webhooks can run side by side under different [Options.Name]s.
//
// # Requests
//
// Each request is a POST ([Options.Method]: PUT and PATCH too) with
// Content-Type application/json, a User-Agent naming OpenTrack and its
// module version ("OpenTrack/v1.2.0 (+https://github.com/opentrackhq/opentrack)",
// "devel" when the binary does not record one), the custom
// [Options.Headers], and:
//
//	Idempotency-Key    the event's messageId; for a batch, the batch id
//	X-Signature        with a secret and SigningSegment: hex HMAC-SHA1 of the body
//	webhook-id         with SigningStandard: the messageId or batch id
//	webhook-timestamp  with SigningStandard: unix seconds of the attempt
//	webhook-signature  with SigningStandard: "v1," base64 HMAC-SHA256 of id.timestamp.body
//
// A batch id is "batch_" and 32 hex digits of a SHA-256 over the batch's
// messageIds: the same events in the same order give the same id. The
// Idempotency-Key and webhook-id stay the same on every attempt, so a
// receiver can drop a request it has already processed (the answer may have
// been lost); webhook-timestamp is the time of the attempt, so that the
// receiver's check of its age (five minutes, for the Standard Webhooks
// libraries) holds for late retries too.
//
// # One type, batching by configuration
//
// With [Options.BatchSize] 1, the default, each request carries one event,
// as a JSON object, as Segment's Webhooks destination sends it. With a
// larger BatchSize each request carries a JSON array of up to BatchSize
// events and at most [Options.MaxBatchBytes] bytes, for receivers that
// want fewer requests; a batching receiver always gets arrays, of one event
// too.
//
// Both are one type. The [Integration] is an [opentrack.Batcher] whose
// [Integration.Delivery] asks the Manager for batches of BatchSize events,
// so that with BatchSize 1 each event is handed over on its own, without
// waiting for a batch interval, and each request carries one event either
// way. Batch itself splits what it is given by BatchSize and MaxBatchBytes
// (the Manager's byte count is an estimate, and a host's
// Options.Delivery.Batch may differ), and sends the requests one after the
// other, so events keep their order. A second type would have only moved
// that choice from an option to the constructor the host calls, and the
// environment configuration would have had to pick between them anyway.
//
// # Outcomes
//
// Answers are classified as every OpenTrack HTTP destination classifies
// them, for the Manager, which retries with backoff:
//   - 2xx: delivered;
//   - 408, 429, 5xx, a timeout ([Options.Timeout], default 10s, per
//     request) or a network error: retried, no sooner than a Retry-After
//     header asks;
//   - any other status: permanent, reported to the Manager's OnFailure at
//     once with a [*StatusError] carrying the status and the start of
//     the answer's body;
//   - a redirect is followed only to the webhook's own scheme, host and port,
//     and only as 307 or 308, which keep the method, body and signature;
//     any other redirect is a permanent failure, and nothing is sent to the
//     other host.
//
// A batch request's outcome applies to every event in it.
package webhook
