package journal

import (
	"fmt"
	"github.com/opentrackhq/opentrack/queue"
	"log/slog"
	"time"
)

// Defaults of [Options].
const (
	// DefaultMaxBytes bounds the journal's segments on disk: 1 GiB, about
	// 1.6 million events of 600 bytes.
	DefaultMaxBytes = 1 << 30
	// DefaultSegmentBytes is the size at which a segment is closed and the
	// next one begun, when MaxBytes/16 is not smaller.
	DefaultSegmentBytes = 64 << 20
	// DefaultTailRecords is how many of the newest records stay in memory
	// at most, for readers that keep up.
	DefaultTailRecords = 1024
	// DefaultTailBytes bounds the memory the events of the tail hold, as
	// spec counts it: 16 MiB.
	DefaultTailBytes = 16 << 20
	// DefaultReadAhead is how many records a reader that is behind reads
	// from disk at a time, at most.
	DefaultReadAhead = 256
	// DefaultCursorInterval is the least time between two writes of the
	// cursors file while readers settle records.
	DefaultCursorInterval = 100 * time.Millisecond
	// MinSegmentBytes is the smallest SegmentBytes accepted.
	MinSegmentBytes = 1 << 10
)

// Options configure a [Journal]. The zero value (or nil) means the
// defaults.
type Options struct {
	// MaxBytes bounds the records on disk (their segments, up to the last
	// record). An Append that would pass it returns queue.ErrFull (the
	// Handler answers 503 with Retry-After) until readers settle records
	// and whole segments are deleted; one larger than MaxBytes on its own
	// returns queue.ErrTooLarge. The active segment is written ahead to
	// SegmentBytes, and one spare segment waits for the next, so the
	// directory holds at most MaxBytes + 2*SegmentBytes. Default
	// DefaultMaxBytes (1 GiB).
	MaxBytes int64
	// SegmentBytes is the size at which the journal closes a segment and
	// begins the next. A segment is deleted once every reader's cursor has
	// passed it, so this is also the granularity at which disk is freed.
	// It must be at least MinSegmentBytes and at most MaxBytes/2. Default
	// DefaultSegmentBytes (64 MiB) or MaxBytes/16, whichever is smaller
	// (but not below MinSegmentBytes).
	SegmentBytes int64
	// TailRecords is how many of the newest records the journal keeps in
	// memory at most, until every reader has read them, so that a reader
	// that keeps up never reads the disk. Their events are shallow copies
	// of the events given to Append that keep their JSON, as written to
	// the journal (spec.AppendWithJSON).
	// Default DefaultTailRecords.
	TailRecords int
	// TailBytes bounds the memory the tail's events hold (as
	// spec.Common.Size counts it), so that large events cannot make it
	// hold more. Size counts an event's JSON but not the rest of the
	// frame it is kept in: the headers and the encoder's spare room,
	// about 512 bytes plus the allocator's rounding (up to 8 KB for an
	// event near 32 KB). Default DefaultTailBytes.
	TailBytes int64
	// ReadAhead is how many records a reader that is behind reads from
	// disk, decodes and holds at a time, at most. Default DefaultReadAhead.
	ReadAhead int
	// CursorInterval is the least time between two writes of the cursors
	// file while readers settle records; Sync and Close write it at once.
	// After a crash, records settled within the last CursorInterval are
	// delivered again. Default DefaultCursorInterval (100 ms).
	CursorInterval time.Duration
	// Logger receives recovery reports (torn tails truncated, corrupt
	// records skipped, cursors dropped) and background errors. Default
	// slog.Default().
	Logger *slog.Logger
}

// withDefaults checks o and returns it with its zero fields set.
func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	switch {
	case r.MaxBytes < 0:
		return r, configError("MaxBytes", "must not be negative")
	case r.SegmentBytes < 0:
		return r, configError("SegmentBytes", "must not be negative")
	case r.TailRecords < 0:
		return r, configError("TailRecords", "must not be negative")
	case r.TailBytes < 0:
		return r, configError("TailBytes", "must not be negative")
	case r.ReadAhead < 0:
		return r, configError("ReadAhead", "must not be negative")
	case r.CursorInterval < 0:
		return r, configError("CursorInterval", "must not be negative")
	}
	if r.MaxBytes == 0 {
		r.MaxBytes = DefaultMaxBytes
	}
	if r.SegmentBytes == 0 {
		r.SegmentBytes = max(min(DefaultSegmentBytes, r.MaxBytes/16), MinSegmentBytes)
	}
	if r.SegmentBytes < MinSegmentBytes {
		return r, configError("SegmentBytes", fmt.Sprintf("must be at least %d", MinSegmentBytes))
	}
	if r.SegmentBytes > r.MaxBytes/2 {
		return r, configError("SegmentBytes", "must be at most half of MaxBytes, so that deleting settled segments can make room")
	}
	if r.TailRecords == 0 {
		r.TailRecords = DefaultTailRecords
	}
	if r.TailBytes == 0 {
		r.TailBytes = DefaultTailBytes
	}
	if r.ReadAhead == 0 {
		r.ReadAhead = DefaultReadAhead
	}
	if r.CursorInterval == 0 {
		r.CursorInterval = DefaultCursorInterval
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	return r, nil
}

// ConfigError reports an invalid field of [Options]: a [queue.ConfigError],
// whose Field starts with "journal.Options.".
type ConfigError = queue.ConfigError

func configError(field, reason string) error {
	return &ConfigError{Field: "journal.Options." + field, Reason: reason}
}
