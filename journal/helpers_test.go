package journal

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// logBuffer collects log lines from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

func openJournal(t testing.TB, dir string, opts *Options) *Journal {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func openReaders(t testing.TB, j *Journal, names ...string) []queue.Reader {
	t.Helper()
	rs, err := j.Open(names)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// track returns a track event with messageId id whose JSON is about size
// bytes long.
func track(id string, size int) spec.Event {
	e := &spec.Track{Event: "Order Completed", Properties: map[string]any{
		"orderId": "o-" + id, "revenue": 42.5, "currency": "EUR",
	}}
	e.Type, e.MessageID, e.UserID = spec.TypeTrack, id, "user-"+id
	e.ReceivedAt = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	e.Context = map[string]any{"ip": "203.0.113.7", "library": map[string]any{"name": "analytics-go", "version": "3.3.0"}}
	raw, _ := e.MarshalJSON()
	if pad := size - len(raw) - len(`,"pad":""`); pad > 0 {
		e.Properties["pad"] = strings.Repeat("x", pad)
	}
	return e
}

// appendN appends n records, one Append each, with messageIds prefix0,
// prefix1, ... for targets.
func appendN(t testing.TB, q queue.Queue, n int, prefix string, targets ...string) []queue.Record {
	t.Helper()
	out := make([]queue.Record, 0, n)
	for i := range n {
		recs := []queue.Record{{Event: track(fmt.Sprint(prefix, i), 300), Targets: targets}}
		if err := q.Append(context.Background(), recs); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		out = append(out, recs...)
	}
	return out
}

// readN reads n records, failing if they do not come within a while.
func readN(t testing.TB, r queue.Reader, n int) []queue.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []queue.Record
	for len(got) < n {
		recs, err := r.Next(ctx, n-len(got))
		if err != nil {
			t.Fatalf("Next after %d of %d: %v", len(got), n, err)
		}
		got = append(got, recs...)
	}
	return got
}

// readRest reads whatever Next has now, without waiting.
func readRest(t testing.TB, r queue.Reader) []queue.Record {
	t.Helper()
	var got []queue.Record
	for {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		recs, err := r.Next(ctx, 1000)
		got = append(got, recs...)
		if err != nil {
			return got
		}
	}
}

func messageIDs(recs []queue.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Event.Fields().MessageID
	}
	return out
}

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
