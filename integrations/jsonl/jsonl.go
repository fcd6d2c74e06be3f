// Package jsonl is an OpenTrack integration that writes each accepted event,
// enriched, as one line of Segment JSON to a file or any io.Writer: the
// JSON Lines format that warehouses and tools like jq and DuckDB load as is.
//
// Lines are buffered and written through when a batch ends, on Flush and on
// Close. A write error fails the batch, which the Manager retries; the lines
// of a batch that failed half-way may then appear twice, with the same
// messageId. The Manager hands the integration batches, so a busy collector
// makes one write per batch, not per event.
//
//	sink, err := jsonl.Open("events.jsonl")
//	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{sink}})
package jsonl

import (
	"bufio"
	"context"
	"encoding/json"
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

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("jsonl: closed")

// Integration writes events as JSON lines. It is safe for concurrent use;
// lines of concurrent calls never interleave.
type Integration struct {
	mu     sync.Mutex
	w      *bufio.Writer
	under  io.Writer
	closer io.Closer // nil when the writer is not ours to close
	sync   func() error
	closed bool
	buf    []byte
}

var (
	_ opentrack.Integration   = (*Integration)(nil)
	_ opentrack.Batcher       = (*Integration)(nil)
	_ opentrack.Flusher       = (*Integration)(nil)
	_ opentrack.Closer        = (*Integration)(nil)
	_ opentrack.DeliveryTuner = (*Integration)(nil)
)

// New returns an Integration writing to w. Close flushes but does not close
// w; use [Open] for a file the integration owns.
func New(w io.Writer) *Integration {
	return &Integration{w: bufio.NewWriterSize(w, 64<<10), under: w}
}

// Open opens (creating if needed) the file at path for appending and returns
// an Integration writing to it. The path "-" means standard output. Flush
// and Close also sync a file to disk.
func Open(path string) (*Integration, error) {
	if path == "-" {
		return New(os.Stdout), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("jsonl: %w", err)
	}
	in := New(f)
	in.closer = f
	in.sync = f.Sync
	return in, nil
}

// Name returns [Name].
func (in *Integration) Name() string { return Name }

// Delivery asks the Manager for one writer at a time, so lines keep the
// order in which batches were formed.
func (in *Integration) Delivery() opentrack.Delivery {
	return opentrack.Delivery{Workers: 1}
}

// Batch writes one line per event and flushes the buffer to the writer.
func (in *Integration) Batch(ctx context.Context, events []spec.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return opentrack.Permanent(ErrClosed)
	}
	be := &opentrack.BatchError{}
	for i, e := range events {
		if err := in.writeLocked(e); err != nil {
			be.Fail(i, err)
		}
	}
	if err := in.w.Flush(); err != nil {
		in.w.Reset(in.under) // bufio keeps a write error forever; the Manager retries the batch
		return fmt.Errorf("jsonl: write: %w", err)
	}
	return be.Err()
}

func (in *Integration) writeLocked(e spec.Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return opentrack.Permanent(fmt.Errorf("jsonl: encode: %w", err))
	}
	in.buf = append(append(in.buf[:0], b...), '\n')
	if _, err := in.w.Write(in.buf); err != nil {
		in.w.Reset(in.under)
		return fmt.Errorf("jsonl: write: %w", err)
	}
	return nil
}

func (in *Integration) write(ctx context.Context, e spec.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return opentrack.Permanent(ErrClosed)
	}
	return in.writeLocked(e)
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

// Flush writes buffered lines through to the writer, and syncs a file opened
// with Open.
func (in *Integration) Flush(context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil
	}
	return in.flushLocked()
}

func (in *Integration) flushLocked() error {
	if err := in.w.Flush(); err != nil {
		in.w.Reset(in.under)
		return fmt.Errorf("jsonl: flush: %w", err)
	}
	if in.sync != nil {
		if err := in.sync(); err != nil {
			return fmt.Errorf("jsonl: sync: %w", err)
		}
	}
	return nil
}

// Close flushes, syncs and, for a file opened with Open, closes it. Later
// calls return nil; writes after Close fail with ErrClosed.
func (in *Integration) Close(context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil
	}
	in.closed = true
	err := in.flushLocked()
	if in.closer != nil {
		err = errors.Join(err, in.closer.Close())
	}
	return err
}
