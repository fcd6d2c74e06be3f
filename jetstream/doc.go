// Package jetstream is a [queue.Queue] on a NATS JetStream stream, for
// running several collectors behind a load balancer with one shared,
// replicated queue:
//
//	q, err := jetstream.Open(ctx, &jetstream.Options{
//		Servers:  []string{"nats://nats-1:4222", "nats://nats-2:4222", "nats://nats-3:4222"},
//		Replicas: 3,
//	})
//	...
//	m, err := opentrack.New(opentrack.Options{Integrations: ins, Queue: q})
//
// # What a 2xx means
//
// Append publishes a request's records to the stream at once, each with its
// messageId as Nats-Msg-Id, and returns when JetStream has acknowledged all
// of them. JetStream acknowledges a record once a majority of the stream's
// replicas has stored it, so with Replicas: 3 an event answered 2xx
// survives the loss of any one NATS server. Each server writes it to its
// store before acknowledging; it fsyncs every 2 minutes by default, or
// before acknowledging with the server option "sync_interval: always"
// (which on one disk costs an order of magnitude in throughput).
//
// An Append is not atomic. When some of a request's records are refused
// (the stream is full, NATS is unreachable, the acknowledgement does not
// come within PublishTimeout), the request is answered 503 with
// Retry-After, and the records that did get in stay in the stream and are
// delivered. The SDK sends the request again; JetStream recognises the
// messageIds it already holds (within the stream's DuplicateWindow,
// 2 minutes by default) and stores only the missing records, so each event
// is stored once. The same holds when a client's retry reaches another
// collector. A request is never answered 2xx unless all its records are
// stored.
//
// # How delivery is shared
//
// Each integration has one durable pull consumer on the stream, named
// after the integration ([ConsumerName]), which every collector running
// that integration reads from: JetStream hands each record to one of them.
// A collector acknowledges a record when its integration has settled it
// (delivered it, or reported it to OnFailure); a record that does not
// target an integration is acknowledged by that integration's reader at
// once. The stream uses interest retention: a record is removed once every
// integration's consumer has acknowledged it.
//
// A record in long retries stays with the collector that holds it: the
// collector tells JetStream it is still working on it every AckWait/4.
// When a collector dies, JetStream hands its unacknowledged records to
// another collector after AckWait (30s by default), marked Redelivered.
// When a collector shuts down, it hands back at once what it read and did
// not settle.
//
// A collector's readers hand out the records that collector published
// from memory, the events as the Handler decoded them, rather than decode
// the messages they fetch: at most 16 MiB of events or 8,192 records, for
// at most 10 seconds, until each of its integrations that a record targets
// has taken it. Only a record whose message is byte for byte what was
// published is taken so; the others (another collector's, or one past
// those bounds) are decoded. Events enqueued must therefore not be changed
// afterwards.
//
// Every collector that shares a stream must run the same integrations,
// with the same names. A consumer that no collector reads holds records
// until it is deleted or they pass MaxAge; collectors log such consumers
// at start.
//
// # Ordering
//
// Within a collector the Manager delivers each user's events in order.
// Across collectors, one user's events may be delivered by two collectors
// at once, and an event redelivered after a collector's death comes after
// that user's later events. Records handed back (a reader closed, an ack
// wait passed) come again as JetStream redelivers them, not always in Seq
// order, unlike the queue.Reader contract's first reading.
//
// # Stats
//
// A reader's Stats come from its consumer's counters, shared by every
// collector: Unsettled counts the records no collector has acknowledged,
// Cursor is the consumer's acknowledgement floor + 1. Bytes is exact for
// the records this collector holds and an estimate for the others.
package jetstream

import "github.com/opentrackhq/opentrack/queue"

var _ queue.Queue = (*Queue)(nil)
