// Package jsonl is an OpenTrack integration that writes each accepted event,
// enriched, as one line of Segment JSON to a file or any io.Writer: the
// JSON Lines format that warehouses and tools like jq and DuckDB load as is.
//
//	sink, err := jsonl.Open("events.jsonl", nil)
//	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{sink}})
//
// The Manager hands the integration batches. The lines of a batch are
// encoded into one buffer and written with a single Write call, so a busy
// collector makes one write per batch, not per event, and the lines of
// concurrent calls never interleave. Nothing is buffered between calls:
// once a call returns, its lines are with the writer. A file opened with
// [Open] is synced to disk on Flush and on Close.
//
// An event that cannot be encoded fails alone, permanently; the rest of its
// batch is written. A write error fails the whole batch, which the Manager
// then retries. What stays of the failed write depends on the writer:
//
//   - A file opened with Open is truncated back to its size before the
//     failed write, so no torn line stays and a retried event is written
//     once. This assumes the integration is the file's only writer.
//   - Another writer cannot be rolled back. If the failed write got part of
//     a line through, the next write starts with a newline, so the damage
//     stays one unreadable line; the events of the batch written before the
//     error appear again, with the same messageId, when it is retried.
package jsonl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// Name is the integration's name in Segment's "integrations" object.
const Name = "JSON Lines"

// Options configures an Integration. The zero value is usable.
type Options struct {
	// Name is the integration's name, its key in the "integrations"
	// object. Default [Name]; set it to register several files.
	Name string
}

// errClosed is returned, marked [opentrack.Permanent], by every call that
// writes after Close.
var errClosed = fmt.Errorf("jsonl: %w", opentrack.ErrClosed)

// Integration writes events as JSON lines. It is safe for concurrent use;
// lines of concurrent calls never interleave.
type Integration struct {
	name   string
	mu     sync.Mutex
	w      io.Writer
	file   *os.File // the file opened by Open; nil for a writer given to New
	off    int64    // file: its size after the last good write; -1 if unknown
	torn   bool     // a failed write may have left a partial line
	closed bool
	buf    []byte // reused across calls; buf[0] is a spare '\n'
}

var (
	_ opentrack.Integration   = (*Integration)(nil)
	_ opentrack.Batcher       = (*Integration)(nil)
	_ opentrack.Flusher       = (*Integration)(nil)
	_ opentrack.Closer        = (*Integration)(nil)
	_ opentrack.DeliveryTuner = (*Integration)(nil)
)

// New returns an Integration writing to w; opts may be nil. Flush and Close
// leave w as it is (it is not synced or closed); use [Open] for a file the
// integration owns. A nil w is a [*opentrack.ConfigError].
func New(w io.Writer, opts *Options) (*Integration, error) {
	if w == nil {
		return nil, &opentrack.ConfigError{Field: "jsonl.New w", Reason: "is nil"}
	}
	return &Integration{w: w, name: name(opts)}, nil
}

func name(opts *Options) string {
	if opts == nil || opts.Name == "" {
		return Name
	}
	return opts.Name
}

// Open opens (creating if needed) the file at path for appending and returns
// an Integration writing to it; opts may be nil. The path "-" means standard
// output, which is treated as a writer given to [New]. Flush syncs the file
// to disk and Close syncs and closes it.
func Open(path string, opts *Options) (*Integration, error) {
	if path == "-" {
		return New(os.Stdout, opts)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("jsonl: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("jsonl: %w", err)
	}
	return &Integration{w: f, file: f, off: st.Size(), name: name(opts)}, nil
}

// FromEnv opens the file OPENTRACK_FILE names ("-" for standard output). It
// returns [opentrack.ErrNotConfigured] when OPENTRACK_FILE is not set.
func FromEnv(_ context.Context, getenv func(string) string) (*Integration, error) {
	path := getenv("OPENTRACK_FILE")
	if path == "" {
		return nil, opentrack.ErrNotConfigured
	}
	in, err := Open(path, nil)
	if err != nil {
		return nil, &opentrack.ConfigError{Field: "OPENTRACK_FILE", Reason: err.Error()}
	}
	return in, nil
}

// Name returns the integration's name: Options.Name, or [Name].
func (in *Integration) Name() string { return in.name }

// Delivery asks the Manager for one writer at a time, so lines keep the
// order in which batches were formed.
func (in *Integration) Delivery() opentrack.Delivery {
	return opentrack.Delivery{Workers: 1}
}

// Batch writes one line per event, all in one Write call. An event that
// cannot be encoded is reported in a [*opentrack.BatchError], marked
// [opentrack.Permanent]; a write error is returned as is, for the whole
// batch.
func (in *Integration) Batch(ctx context.Context, events []spec.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return opentrack.Permanent(errClosed)
	}
	be := &opentrack.BatchError{}
	buf := append(in.buf[:0], '\n')
	for i, e := range events {
		var err error
		if buf, err = appendLine(buf, e); err != nil {
			be.Fail(i, err)
		}
	}
	in.buf = buf
	if err := in.writeLocked(buf); err != nil {
		return err
	}
	return be.Err()
}

// appendLine appends e's JSON and a newline to buf. On error buf is
// returned unchanged.
func appendLine(buf []byte, e spec.Event) ([]byte, error) {
	buf, err := spec.AppendJSON(buf, e) // already compact; json.Marshal would copy and check it again
	if err != nil {
		return buf, opentrack.Permanent(fmt.Errorf("jsonl: encode %s %q: %w", e.Fields().Type, e.Fields().MessageID, err))
	}
	return append(buf, '\n'), nil
}

// writeLocked writes the lines in buf[1:] with one Write call; buf[0] is a
// newline, written first when an earlier write may have left a partial
// line. On error, a file opened with Open is truncated back to its size
// before the write.
func (in *Integration) writeLocked(buf []byte) error {
	if len(buf) <= 1 {
		return nil
	}
	if in.file != nil && in.off < 0 {
		// An earlier truncation failed: start again from the file's size.
		st, err := in.file.Stat()
		if err != nil {
			return fmt.Errorf("jsonl: write: %w", err)
		}
		in.off = st.Size()
	}
	p := buf[1:]
	if in.torn {
		p = buf
	}
	n, err := in.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err == nil {
		in.torn = false
		if in.file != nil {
			in.off += int64(n)
		}
		return nil
	}
	err = fmt.Errorf("jsonl: write: %w", err)
	if in.file != nil {
		terr := in.file.Truncate(in.off)
		if terr == nil {
			return err
		}
		in.off = -1
		err = errors.Join(err, fmt.Errorf("jsonl: truncate after failed write: %w", terr))
	}
	switch {
	case in.file != nil:
		in.torn = true // what the failed truncation left is unknown
	case n > 0 && n <= len(p):
		// io.Writer reports how much got through: a line is torn unless
		// that ends with a newline. With nothing through, an earlier torn
		// line is still torn.
		in.torn = p[n-1] != '\n'
	}
	return err
}

func (in *Integration) write(ctx context.Context, e spec.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return opentrack.Permanent(errClosed)
	}
	buf, err := appendLine(append(in.buf[:0], '\n'), e)
	if err != nil {
		return err
	}
	in.buf = buf
	return in.writeLocked(buf)
}

// Track writes e as a line.
func (in *Integration) Track(ctx context.Context, e *spec.Track) error {
	return in.write(ctx, e)
}

// Identify writes e as a line.
func (in *Integration) Identify(ctx context.Context, e *spec.Identify) error {
	return in.write(ctx, e)
}

// Page writes e as a line.
func (in *Integration) Page(ctx context.Context, e *spec.Page) error {
	return in.write(ctx, e)
}

// Screen writes e as a line.
func (in *Integration) Screen(ctx context.Context, e *spec.Screen) error {
	return in.write(ctx, e)
}

// Group writes e as a line.
func (in *Integration) Group(ctx context.Context, e *spec.Group) error {
	return in.write(ctx, e)
}

// Alias writes e as a line.
func (in *Integration) Alias(ctx context.Context, e *spec.Alias) error {
	return in.write(ctx, e)
}

// Flush syncs a file opened with [Open] to disk; for a writer given to
// [New] it does nothing, as lines are written when their call returns.
// After Close it does nothing.
func (in *Integration) Flush(context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed || in.file == nil {
		return nil
	}
	if err := in.file.Sync(); err != nil {
		return fmt.Errorf("jsonl: sync: %w", err)
	}
	return nil
}

// Close syncs and closes a file opened with [Open]; a writer given to [New]
// is left open. Writes after Close fail with [opentrack.ErrClosed], marked
// [opentrack.Permanent]. Later calls of Close return nil.
func (in *Integration) Close(context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil
	}
	in.closed = true
	in.buf = nil
	if in.file == nil {
		return nil
	}
	var errs []error
	if err := in.file.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("jsonl: sync: %w", err))
	}
	if err := in.file.Close(); err != nil {
		errs = append(errs, fmt.Errorf("jsonl: close: %w", err))
	}
	return errors.Join(errs...)
}
