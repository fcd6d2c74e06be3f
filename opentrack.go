package opentrack

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

// Defaults for the zero fields of [Options] and [Delivery].
const (
	DefaultQueueSize      = 10000
	DefaultWorkers        = 8
	DefaultCallTimeout    = 30 * time.Second
	DefaultMaxAttempts    = 10
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = time.Minute
	DefaultMaxElapsedTime = 10 * time.Minute
	// DefaultDurableMaxElapsedTime is the retry horizon with a durable
	// queue, whose backlog waits on disk: Segment retries for 4 hours too.
	// With a durable queue, attempts are not bounded by default.
	DefaultDurableMaxElapsedTime = 4 * time.Hour
	DefaultQueueBytes            = queue.DefaultMaxBytes
	DefaultBatchMaxEvents        = 500
	DefaultBatchMaxBytes         = 5 << 20
	DefaultBatchInterval         = time.Second
	DefaultDedupWindow           = 100000
)

// Errors returned by [Manager.Enqueue]. The Handler answers ErrQueueFull and
// ErrClosed with 503 and a Retry-After header, ErrTooLarge with 413.
var (
	// ErrQueueFull means a target integration's queue has no room for the
	// events; none of them was enqueued.
	ErrQueueFull = errors.New("opentrack: queue full")
	// ErrClosed means the Manager, or an integration, is shut down or
	// closed: nothing was enqueued or delivered. Built-in integrations
	// return it, marked [Permanent], from calls made after Close.
	ErrClosed = errors.New("opentrack: closed")
	// ErrTooLarge means one call holds more events for an integration than
	// its whole queue can; sending it again cannot help.
	ErrTooLarge = errors.New("opentrack: more events than an integration's queue holds")
)

// ErrNotConfigured is returned by the FromEnv function of every built-in
// integration when the environment sets none of its variables: the host
// leaves that integration out. A half configuration is a [*ConfigError].
var ErrNotConfigured = errors.New("opentrack: integration not configured")

// Options configures a [Manager]. The zero value of every field means its
// default, so Options{Integrations: ...} is a complete configuration.
type Options struct {
	// Integrations are the destinations. Each must have a distinct Name.
	// Pass only the ones that are configured; a Manager with none accepts
	// events and drops them.
	Integrations []Integration

	// Delivery holds the queue, concurrency, timeout, retry and batch
	// settings of every integration. Its non-zero fields win over the
	// defaults an integration gives for itself through [DeliveryTuner],
	// which win over the package defaults.
	Delivery Delivery

	// Queue is where accepted events wait for delivery. Nil means a
	// [queue.Memory] bounded by each integration's Delivery.QueueSize and
	// QueueBytes: fast, and a crash loses what it holds. A durable queue
	// (journal.Open) makes a 2xx mean "on disk". The host creates it; the
	// Manager opens its readers (queue.Queue.Open) in New and closes it in
	// Shutdown.
	Queue queue.Queue

	// DedupWindow is how many recent messageIds are remembered to drop
	// replays of the same event. Default DefaultDedupWindow.
	DedupWindow int
	// DisableDedup turns messageId deduplication off.
	DisableDedup bool

	// OnFailure receives every event an integration could not deliver: a
	// permanent error, retries exhausted, or shutdown before delivery. It is
	// the place for a dead-letter sink. It is called from the delivery
	// goroutines of every integration at once (and from Shutdown), so it
	// must be safe for concurrent use, and should return quickly; it must
	// not call Flush or Shutdown, which wait for it. A panic in it is
	// recovered and logged. Failures are also counted in [Stats] and logged.
	OnFailure func(Failure)

	// Logger receives delivery errors and retries. Nil means slog.Default().
	Logger *slog.Logger

	// MeterProvider gives the meter of the Manager's metrics (see
	// [MetricEventsAccepted] and the names after it). Nil means the global
	// provider, otel.GetMeterProvider(), which records nothing until the
	// host sets one. The Manager's instruments stay registered after
	// Shutdown, so that the provider's last export has the final counts.
	MeterProvider metric.MeterProvider
	// TracerProvider gives the tracer of the delivery spans, one per call
	// to an integration (an event, or a batch), each linked to the span of
	// the request that accepted its events. Nil means the global provider,
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
}

// Delivery holds the settings of one integration's queue and workers.
type Delivery struct {
	// QueueSize bounds the events accepted for the integration but not yet
	// delivered or failed that are held in memory: with the memory queue,
	// all of them (when it is reached, Enqueue returns ErrQueueFull); with a
	// durable queue, those read ahead from it. Default DefaultQueueSize.
	QueueSize int
	// QueueBytes bounds the memory those events hold, as
	// spec.Common.Size counts it. Default DefaultQueueBytes.
	QueueBytes int64
	// Workers is how many calls to the integration may run at once.
	// Default DefaultWorkers.
	Workers int
	// CallTimeout bounds each call to the integration. Default
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// Retry is the retry policy for failed calls.
	Retry RetryPolicy
	// Batch is the batching policy for integrations that implement Batcher.
	Batch BatchOptions
}

// RetryPolicy bounds the retries of a failed delivery: exponential backoff
// with jitter (each wait is drawn between half and all of
// InitialBackoff·2ⁿ, capped at MaxBackoff), stopping after MaxAttempts
// attempts or MaxElapsedTime since the first, whichever comes first. A
// [RetryAfter] error waits as long as it asks, within MaxElapsedTime: a
// destination asking for more gets one last attempt at the horizon.
//
// A failed Init is retried with the same backoff for as long as the Manager
// runs: an integration whose destination is down at start keeps its events
// in its queue until Init succeeds.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt too. Default DefaultMaxAttempts
	// with the memory queue, no bound with a durable one.
	MaxAttempts int
	// InitialBackoff is the base wait after the first failure. Default
	// DefaultInitialBackoff.
	InitialBackoff time.Duration
	// MaxBackoff caps one wait. Default DefaultMaxBackoff.
	MaxBackoff time.Duration
	// MaxElapsedTime caps the time from the first attempt to the last.
	// Default DefaultMaxElapsedTime with the memory queue,
	// DefaultDurableMaxElapsedTime with a durable one.
	MaxElapsedTime time.Duration
	// Disable makes every failure final after one attempt. It is a one-way
	// switch: set in Options.Delivery, a DeliveryTuner cannot turn retries
	// back on for its integration.
	Disable bool
}

// BatchOptions says when the Manager hands a batch to a [Batcher]: when it
// holds MaxEvents events or MaxBytes bytes (as the queue counts its
// records: on the memory queue the memory their events hold, as
// spec.Common.Size counts it, two to four times their JSON; on a durable
// queue the length of their JSON), or Interval after its first event,
// whichever comes first. An integration whose
// destination limits request bytes splits batches by its own count.
type BatchOptions struct {
	// MaxEvents defaults to DefaultBatchMaxEvents.
	MaxEvents int
	// MaxBytes defaults to DefaultBatchMaxBytes.
	MaxBytes int
	// Interval defaults to DefaultBatchInterval.
	Interval time.Duration
}

// Failure describes an event that an integration could not deliver.
type Failure struct {
	// Integration is the Name of the integration.
	Integration string
	// Event is the event; treat it as read-only. With a durable queue it is
	// a copy of the event enqueued, or one read back, that keeps its JSON
	// (spec.AppendWithJSON): to change it, copy its struct first.
	Event spec.Event
	// Err is the last error.
	Err error
	// Attempts is how many deliveries were tried.
	Attempts int
}

// Stats are one integration's delivery counters, from [Manager.Stats].
type Stats struct {
	// Integration is the Name of the integration.
	Integration string
	// Accepted counts events enqueued for the integration.
	Accepted uint64
	// Delivered counts events the integration took.
	Delivered uint64
	// Retried counts retry attempts.
	Retried uint64
	// Failed counts events given up on and passed to OnFailure.
	Failed uint64
	// Deduplicated counts replays of an already accepted messageId that
	// were not enqueued again.
	Deduplicated uint64
	// Redelivered counts events a durable queue handed out that may have
	// been delivered before (destinations dedupe by messageId): with the
	// journal, every event past an integration's saved cursor when the
	// collector started, read before the crash or not; with JetStream,
	// events NATS had delivered before, to this collector or another.
	Redelivered uint64
	// Panics counts calls that panicked; each is also a failure.
	Panics uint64
	// Queued is the number of accepted events not yet delivered or failed.
	Queued int
	// QueuedBytes is the size of those events, as the queue counts it.
	QueuedBytes int64
	// OldestAge is how long the oldest of those has waited; 0 when none.
	OldestAge time.Duration
	// Cursor is the integration's position in the queue: every event with a
	// lower sequence number has been delivered or failed. With a durable
	// queue it is where delivery resumes after a restart.
	Cursor uint64
	// Ready reports whether the integration is initialized (see
	// Initializer) and taking events.
	Ready bool
	// Err says why the integration is not ready: the last error of its
	// Init, which is being retried. Nil when ready.
	Err error
}

// ConfigError reports an invalid option: a field of [Options] from [New], or
// of a built-in integration's options or environment from its constructor.
type ConfigError struct {
	// Field names the option: "Delivery.Workers", "webhook.Options.Method",
	// "WEBHOOK_URL".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("opentrack: invalid %s: %s", e.Field, e.Reason)
}

// merged returns d (the host's settings) with its zero fields taken from own
// (the integration's), then from the defaults, which depend on whether the
// queue is durable.
func (d Delivery) merged(own Delivery, durable bool) Delivery {
	pick := func(v, b, def int) int {
		if v != 0 {
			return v
		}
		if b != 0 {
			return b
		}
		return def
	}
	pick64 := func(v, b, def int64) int64 {
		if v != 0 {
			return v
		}
		if b != 0 {
			return b
		}
		return def
	}
	pickD := func(v, b, def time.Duration) time.Duration {
		if v != 0 {
			return v
		}
		if b != 0 {
			return b
		}
		return def
	}
	attempts, elapsed := DefaultMaxAttempts, DefaultMaxElapsedTime
	if durable {
		attempts, elapsed = 0, DefaultDurableMaxElapsedTime // 0: no bound
	}
	return Delivery{
		QueueSize:   pick(d.QueueSize, own.QueueSize, DefaultQueueSize),
		QueueBytes:  pick64(d.QueueBytes, own.QueueBytes, DefaultQueueBytes),
		Workers:     pick(d.Workers, own.Workers, DefaultWorkers),
		CallTimeout: pickD(d.CallTimeout, own.CallTimeout, DefaultCallTimeout),
		Retry: RetryPolicy{
			MaxAttempts:    pick(d.Retry.MaxAttempts, own.Retry.MaxAttempts, attempts),
			InitialBackoff: pickD(d.Retry.InitialBackoff, own.Retry.InitialBackoff, DefaultInitialBackoff),
			MaxBackoff:     pickD(d.Retry.MaxBackoff, own.Retry.MaxBackoff, DefaultMaxBackoff),
			MaxElapsedTime: pickD(d.Retry.MaxElapsedTime, own.Retry.MaxElapsedTime, elapsed),
			Disable:        d.Retry.Disable || own.Retry.Disable,
		},
		Batch: BatchOptions{
			MaxEvents: pick(d.Batch.MaxEvents, own.Batch.MaxEvents, DefaultBatchMaxEvents),
			MaxBytes:  pick(d.Batch.MaxBytes, own.Batch.MaxBytes, DefaultBatchMaxBytes),
			Interval:  pickD(d.Batch.Interval, own.Batch.Interval, DefaultBatchInterval),
		},
	}
}

func (d Delivery) validate(field string) error {
	switch {
	case d.QueueSize < 0:
		return &ConfigError{field + ".QueueSize", "must not be negative"}
	case d.QueueBytes < 0:
		return &ConfigError{field + ".QueueBytes", "must not be negative"}
	case d.Workers < 0:
		return &ConfigError{field + ".Workers", "must not be negative"}
	case d.CallTimeout < 0:
		return &ConfigError{field + ".CallTimeout", "must not be negative"}
	case d.Retry.MaxAttempts < 0:
		return &ConfigError{field + ".Retry.MaxAttempts", "must not be negative"}
	case d.Retry.InitialBackoff < 0 || d.Retry.MaxBackoff < 0 || d.Retry.MaxElapsedTime < 0:
		return &ConfigError{field + ".Retry", "durations must not be negative"}
	case d.Batch.MaxEvents < 0 || d.Batch.MaxBytes < 0 || d.Batch.Interval < 0:
		return &ConfigError{field + ".Batch", "must not be negative"}
	}
	return nil
}
