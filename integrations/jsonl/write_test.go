package jsonl_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/jsonl"
	"github.com/opentrackhq/opentrack/integrationtest"
	"github.com/opentrackhq/opentrack/spec"
)

var errDiskFull = errors.New("disk full")

// halfWriter passes writes on to w, except that its next fail writes write
// the first half of their input and then fail, and its next none writes
// fail with nothing written.
type halfWriter struct {
	mu     sync.Mutex
	w      io.Writer
	fail   int
	none   int
	writes int // Write calls, failed ones included
	failed int // writes failed
}

func (h *halfWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.writes++
	if h.none > 0 {
		h.none--
		h.failed++
		return 0, errDiskFull
	}
	if h.fail > 0 {
		h.fail--
		h.failed++
		n, err := h.w.Write(p[:len(p)/2])
		if err == nil {
			err = errDiskFull
		}
		return n, err
	}
	return h.w.Write(p)
}

func (h *halfWriter) counts() (writes, failed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.writes, h.failed
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// output is what a sink wrote, line by line.
type output struct {
	ids     map[string]int // messageId → lines holding it
	corrupt []string       // lines that are not a Segment event
	lines   int
}

func parse(t *testing.T, data []byte) output {
	t.Helper()
	out := output{ids: map[string]int{}}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("the output does not end with a newline: ...%q", data[max(0, len(data)-40):])
	}
	for line := range strings.Lines(string(data)) {
		out.lines++
		line = strings.TrimSuffix(line, "\n")
		e, err := spec.Decode([]byte(line), "")
		if err != nil {
			out.corrupt = append(out.corrupt, line)
			continue
		}
		out.ids[e.Fields().MessageID]++
	}
	return out
}

func ids(events []spec.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Fields().MessageID)
	}
	return out
}

// manyEvents returns sets of integrationtest.Events, 6 events each.
func manyEvents(prefix string, sets int) []spec.Event {
	var events []spec.Event
	for i := range sets {
		events = append(events, integrationtest.Events(fmt.Sprintf("%s%d", prefix, i))...)
	}
	return events
}

// deliver runs events through a Manager with fast retries, flushes, and
// returns the integration's stats and the failures reported.
func deliver(t *testing.T, in opentrack.Integration, events []spec.Event) (opentrack.Stats, []opentrack.Failure) {
	t.Helper()
	var mu sync.Mutex
	var failures []opentrack.Failure
	m, err := opentrack.New(opentrack.Options{
		Integrations: []opentrack.Integration{in},
		OnFailure: func(f opentrack.Failure) {
			mu.Lock()
			defer mu.Unlock()
			failures = append(failures, f)
		},
		Logger: slog.New(slog.DiscardHandler),
		Delivery: opentrack.Delivery{
			Retry: opentrack.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := m.Enqueue(ctx, events...); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	stats := m.Stats()[0]
	if err := m.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return stats, failures
}

func checkStats(t *testing.T, s opentrack.Stats, failures []opentrack.Failure, n int) {
	t.Helper()
	if len(failures) != 0 {
		t.Errorf("OnFailure got %d events, want none; first: %v", len(failures), failures[0].Err)
	}
	if s.Accepted != uint64(n) || s.Delivered != uint64(n) || s.Failed != 0 || s.Queued != 0 {
		t.Errorf("stats = %+v, want %d accepted and delivered, none failed or queued", s, n)
	}
	if s.Retried == 0 {
		t.Errorf("stats = %+v, want a retry after the failed write", s)
	}
}

func TestWriteErrorInBatchFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	sink, err := jsonl.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	hw := &halfWriter{fail: 1}
	jsonl.WrapWriter(sink, func(w io.Writer) io.Writer { hw.w = w; return hw })
	events := manyEvents("file", 4)

	stats, failures := deliver(t, sink, events)
	if _, failed := hw.counts(); failed != 1 {
		t.Fatalf("%d writes failed, want 1", failed)
	}
	checkStats(t, stats, failures, len(events))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := parse(t, data)
	if len(out.corrupt) != 0 {
		t.Errorf("%d corrupt lines, want none: %q", len(out.corrupt), out.corrupt)
	}
	for _, id := range ids(events) {
		if out.ids[id] != 1 {
			t.Errorf("event %s written %d times, want once", id, out.ids[id])
		}
	}
	if out.lines != len(events) {
		t.Errorf("%d lines, want %d", out.lines, len(events))
	}
}

func TestWriteErrorInBatchWriter(t *testing.T) {
	var buf syncBuffer
	hw := &halfWriter{w: &buf, fail: 1}
	events := manyEvents("writer", 4)

	stats, failures := deliver(t, mustNew(t, hw), events)
	if _, failed := hw.counts(); failed != 1 {
		t.Fatalf("%d writes failed, want 1", failed)
	}
	checkStats(t, stats, failures, len(events))
	out := parse(t, buf.Bytes())
	if len(out.corrupt) > 1 {
		t.Errorf("%d corrupt lines, want at most 1: %q", len(out.corrupt), out.corrupt)
	}
	for _, id := range ids(events) {
		if out.ids[id] == 0 {
			t.Errorf("event %s missing", id)
		}
	}
}

// TestWriteErrorRollsBackFile checks, call by call, that a failed batch
// leaves the file as it was and the whole batch is reported as failed.
func TestWriteErrorRollsBackFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	sink, err := jsonl.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	hw := &halfWriter{}
	jsonl.WrapWriter(sink, func(w io.Writer) io.Writer { hw.w = w; return hw })

	first, second := integrationtest.Events("a"), integrationtest.Events("b")
	if err := sink.Batch(ctx, first); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	hw.fail = 1
	err = sink.Batch(ctx, second)
	var be *opentrack.BatchError
	if err == nil || errors.As(err, &be) || opentrack.IsPermanent(err) || !errors.Is(err, errDiskFull) {
		t.Fatalf("Batch with a failing write = %v, want a retryable error for the whole batch", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatalf("the failed write left %q in the file", after[len(before):])
	}
	if err := sink.Track(ctx, second[0].(*spec.Track)); err != nil {
		t.Fatal(err)
	}
	if err := sink.Batch(ctx, second[1:]); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	out := parse(t, data)
	if len(out.corrupt) != 0 || out.lines != len(first)+len(second) {
		t.Errorf("%d lines, %d corrupt, want %d lines, none corrupt", out.lines, len(out.corrupt), len(first)+len(second))
	}
}

// TestWriteErrorTornLineWriter checks that after a partial write to a
// writer that cannot be rolled back, the next write ends the torn line, and
// that a failed write of nothing leaves the torn state as it was.
func TestWriteErrorTornLineWriter(t *testing.T) {
	ctx := context.Background()
	var buf syncBuffer
	hw := &halfWriter{w: &buf, fail: 1}
	sink := mustNew(t, hw)
	events := integrationtest.Events("torn")
	if err := sink.Batch(ctx, events); err == nil {
		t.Fatal("Batch with a failing write returned nil")
	}
	hw.mu.Lock()
	hw.none = 1
	hw.mu.Unlock()
	if err := sink.Track(ctx, events[0].(*spec.Track)); err == nil {
		t.Fatal("Track with a failing write returned nil")
	}
	if err := sink.Batch(ctx, events); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	out := parse(t, data)
	if len(out.corrupt) != 1 || out.corrupt[0] == "" {
		t.Fatalf("corrupt lines %q, want the one torn line", out.corrupt)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) < len(events) {
		t.Fatalf("%d lines, want at least %d", len(lines), len(events))
	}
	for i, line := range lines[len(lines)-len(events):] {
		e, err := spec.Decode([]byte(line), "")
		if err != nil || e.Fields().MessageID != events[i].Fields().MessageID {
			t.Errorf("line %d of the retried batch = %q, want event %s", i, line, events[i].Fields().MessageID)
		}
	}
}

func TestBatchIsOneWrite(t *testing.T) {
	var buf syncBuffer
	hw := &halfWriter{w: &buf}
	sink := mustNew(t, hw)
	events := manyEvents("one", 5)
	if err := sink.Batch(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	if writes, _ := hw.counts(); writes != 1 {
		t.Errorf("a batch of %d events made %d writes, want 1", len(events), writes)
	}
	if out := parse(t, buf.Bytes()); out.lines != len(events) || len(out.corrupt) != 0 {
		t.Errorf("%d lines, %d corrupt, want %d lines", out.lines, len(out.corrupt), len(events))
	}
}

func TestEncodeErrorFailsOnlyItsEvent(t *testing.T) {
	ctx := context.Background()
	var buf syncBuffer
	sink := mustNew(t, &buf)
	events := integrationtest.Events("enc")
	bad := events[0].(*spec.Track)
	bad.Properties["revenue"] = math.NaN() // JSON has no NaN
	err := sink.Batch(ctx, events)
	var be *opentrack.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[0] == nil || !opentrack.IsPermanent(be.Failed[0]) {
		t.Fatalf("Batch = %v, want a BatchError with event 0 failed permanently", err)
	}
	out := parse(t, buf.Bytes())
	if out.lines != len(events)-1 || len(out.corrupt) != 0 || out.ids[bad.MessageID] != 0 {
		t.Errorf("%d lines, %d corrupt, want the %d other events", out.lines, len(out.corrupt), len(events)-1)
	}
	if err := sink.Track(ctx, bad); err == nil || !opentrack.IsPermanent(err) {
		t.Errorf("Track of an unencodable event = %v, want a permanent error", err)
	}
	if n := parse(t, buf.Bytes()).lines; n != len(events)-1 {
		t.Errorf("%d lines after the failed Track, want %d", n, len(events)-1)
	}
}

func TestCallsAfterClose(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	sink, err := jsonl.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	events := integrationtest.Events("closed")
	if err := sink.Batch(ctx, events[:1]); err != nil {
		t.Fatal(err)
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := sink.Batch(ctx, events); !errors.Is(err, opentrack.ErrClosed) || !opentrack.IsPermanent(err) {
		t.Errorf("Batch after Close = %v, want a permanent ErrClosed", err)
	}
	for _, e := range events {
		if err := opentrack.Deliver(ctx, sink, e); !errors.Is(err, opentrack.ErrClosed) || !opentrack.IsPermanent(err) {
			t.Errorf("%s after Close = %v, want a permanent ErrClosed", e.Fields().Type, err)
		}
	}
	if err := sink.Flush(ctx); err != nil {
		t.Errorf("Flush after Close = %v, want nil", err)
	}
	if err := sink.Close(ctx); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	data, _ := os.ReadFile(path)
	if out := parse(t, data); out.lines != 1 {
		t.Errorf("%d lines, want 1", out.lines)
	}
}
