// Package queue defines where a Manager keeps accepted events until every
// integration they target has settled them (delivered them, or reported them
// to OnFailure), and what "accepted" is worth: a [Queue]'s Append returns only
// once the events are as safe as that queue promises.
//
// Three kinds of queue stand behind the interface:
//
//   - [Memory], in this package: fast; a crash loses what it holds.
//   - the journal (package journal): embedded, on local disk; Append returns
//     once the events are fsynced.
//   - a replicated log shared by several collectors.
//
// A Queue is one ordered log of records. Each integration reads it through
// its own [Reader], which yields, in order, only the records that target that
// integration, and keeps that integration's cursor: every record below the
// cursor that targets it has been settled. After a restart a durable queue's
// readers resume at their cursors, so what was read but not settled is read
// again (at least once; destinations dedupe by messageId).
//
// The Manager owns routing, deduplication, retries and ordering; a Queue only
// stores, hands out in order, and forgets what every target has settled.
package queue

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/opentrackhq/opentrack/spec"
)

// Errors of a Queue. The HTTP handler answers ErrFull with 503 and
// Retry-After, and ErrTooLarge with 413.
var (
	// ErrFull means the queue has no room for the records now (a target's
	// memory bound, or the journal's disk bound); none was appended.
	ErrFull = errors.New("queue: full")
	// ErrTooLarge means the records can never fit, however much is settled
	// (more than a target's whole bound); none was appended.
	ErrTooLarge = errors.New("queue: too large for the queue")
	// ErrClosed means the queue, or the reader, is closed.
	ErrClosed = errors.New("queue: closed")
)

// ConfigError reports an invalid option of a queue, or a store found with
// settings that do not match them. It has the shape of opentrack.ConfigError;
// the queues do not import the root package, which sits above them.
type ConfigError struct {
	// Field names the option, such as "journal.Options.MaxBytes".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error, prefixed with the package the Field names.
func (e *ConfigError) Error() string {
	pkg, _, _ := strings.Cut(e.Field, ".")
	return pkg + ": invalid " + e.Field + ": " + e.Reason
}

// Record is one accepted event as a queue keeps it.
type Record struct {
	// Seq is the record's position, assigned by Append: each record gets
	// the next number, starting at 1, and numbers are never reused, across
	// restarts too.
	Seq uint64
	// Event is the enriched event. Readers hand out events that are shared
	// between integrations and must be treated as read-only.
	Event spec.Event
	// Targets are the Names of the integrations the event is for, in no
	// particular order. A record with no target may be dropped by Append.
	Targets []string
	// Size is the record's size in bytes as the queue counts it (the event
	// as JSON, for the durable queues); set by Append.
	Size int
	// Appended is when Append stored the record.
	Appended time.Time
	// Redelivered is set by a reader on a record that may have been handed
	// out before (read before a restart, or by another collector), so that
	// the Manager can count redeliveries.
	Redelivered bool
	// TraceParent is the W3C traceparent of the span that accepted the
	// event (the HTTP request's), or empty: the delivery spans link to it.
	// Durable queues keep it with the record.
	TraceParent string
}

// Queue is an ordered log of accepted events. Its methods are safe for
// concurrent use.
type Queue interface {
	// Append stores recs as one unit, all or none, setting their Seq, Size
	// and Appended fields, and returns once they are as safe as the queue
	// promises (in memory; fsynced; acknowledged by a quorum). Concurrent
	// Appends may share one sync. It returns ErrFull or ErrTooLarge when
	// there is no room, ErrClosed after Close, and ctx's error if ctx ends
	// first, in which case the records may or may not have been stored.
	Append(ctx context.Context, recs []Record) error

	// Open returns the readers of the integrations called names, in that
	// order. It is called once, before any Append: the names are the
	// configured integrations, and a durable queue stops keeping records
	// for a saved cursor whose name is not among them (logging it). A
	// reader resumes at its integration's saved cursor or, for a name the
	// queue has not seen before, at the end of the log. A second call
	// returns an error.
	Open(names []string) ([]Reader, error)

	// Sync persists what a crash would otherwise lose of the readers'
	// progress (their cursors). The Manager calls it from Flush and
	// Shutdown; a durable queue also syncs on its own, often.
	Sync(ctx context.Context) error

	// Close syncs and releases the queue. Readers' Next calls return
	// ErrClosed. Close is idempotent.
	Close() error
}

// Durable is implemented by a Queue whose Append survives a crash of the
// process (the journal, a replicated stream). The Manager then leaves the
// events it could not deliver by Shutdown's deadline in the queue, for the
// next start, instead of reporting them, and retries deliveries for hours
// by default.
type Durable interface {
	Durable() bool
}

// MessageIDLister is implemented by a durable Queue that can list the
// messageIds of its newest records, newest last, so that the Manager
// rebuilds its dedup window after a restart and still recognises an SDK's
// retry of an event accepted before the crash.
type MessageIDLister interface {
	RecentMessageIDs(n int) ([]string, error)
}

// Ender is implemented by a Queue that may hold records appended before
// it was opened (the journal, after a restart), so that the Manager's
// Flush waits for those too. A queue implements it only if each of its
// readers' Cursor passes End once this process's readers have settled the
// records up to End that target them: not a stream whose consumers other
// collectors share.
type Ender interface {
	// End returns the Seq of the newest record appended so far; 0 when
	// none was.
	End() uint64
}

// Storage is implemented by a Queue that keeps its records in storage of
// its own (the journal's segments), for the Manager's metrics and stats.
type Storage interface {
	// Size returns the bytes the queue's storage takes.
	Size() int64
	// Oldest returns when the oldest record still kept was appended; zero
	// when the queue holds none.
	Oldest() time.Time
}

// Reader hands out, in order, the records that target one integration, and
// keeps that integration's cursor.
type Reader interface {
	// Next returns up to max records that target this integration and
	// that Next has not returned before (since the queue was opened), in
	// Seq order, waiting until at least one is there or ctx ends. It
	// returns ErrClosed once the queue is closed.
	Next(ctx context.Context, max int) ([]Record, error)

	// Settle marks records returned by Next as done with: delivered, or
	// given up on and reported. It may be called in any order and from
	// any goroutine. Settling frees their room in the queue.
	Settle(seqs ...uint64)

	// Stats returns the reader's position and backlog.
	Stats() ReaderStats
}

// ReaderStats describe one reader's backlog.
type ReaderStats struct {
	// Cursor is the Seq below which every record that targets the
	// integration has been settled.
	Cursor uint64
	// Unsettled counts the records that target the integration and are not
	// settled, read or not.
	Unsettled int
	// Bytes is the Size of those records, added up.
	Bytes int64
	// Oldest is when the oldest of them was appended; zero when none.
	Oldest time.Time
}
