package jsonl_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opentrackhq/opentrack/integrations/jsonl"
	"github.com/opentrackhq/opentrack/integrationtest"
	"github.com/opentrackhq/opentrack/spec"

	"github.com/opentrackhq/opentrack"
)

// flakyWriter is the harness's backend: a buffer whose next writes can fail.
type flakyWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	fail int
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail > 0 {
		w.fail--
		return 0, errors.New("disk full")
	}
	return w.buf.Write(p)
}

// harness runs the suite on a writer given to New that fails with nothing
// written, or, with file set, on a file opened with Open whose failed writes
// get half their data through before the integration truncates it back.
type harness struct {
	file bool
	w    *flakyWriter
	hw   *halfWriter
	path string
}

func (h *harness) New(t *testing.T) opentrack.Integration {
	if !h.file {
		h.w = &flakyWriter{}
		return mustNew(t, h.w)
	}
	h.path = filepath.Join(t.TempDir(), "events.jsonl")
	sink, err := jsonl.Open(h.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close(context.Background()) })
	h.hw = &halfWriter{}
	jsonl.WrapWriter(sink, func(w io.Writer) io.Writer { h.hw.w = w; return h.hw })
	return sink
}

func (h *harness) Received(t *testing.T) []integrationtest.Record {
	var data []byte
	if h.file {
		var err error
		if data, err = os.ReadFile(h.path); err != nil {
			t.Fatal(err)
		}
	} else {
		h.w.mu.Lock()
		data = bytes.Clone(h.w.buf.Bytes())
		h.w.mu.Unlock()
	}
	var out []integrationtest.Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		r, err := integrationtest.RecordFromJSON(sc.Bytes())
		if err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func (h *harness) FailNext(t *testing.T, n int, permanent bool) bool {
	if permanent {
		return false // a file has no permanent failures
	}
	if h.file {
		h.hw.mu.Lock()
		defer h.hw.mu.Unlock()
		h.hw.fail = n
		return true
	}
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.w.fail = n
	return true
}

func (h *harness) Types() []spec.Type {
	return []spec.Type{spec.TypeTrack, spec.TypeIdentify, spec.TypePage, spec.TypeScreen, spec.TypeGroup, spec.TypeAlias}
}

func TestConformance(t *testing.T) {
	t.Run("Writer", func(t *testing.T) { integrationtest.Run(t, &harness{}) })
	t.Run("File", func(t *testing.T) { integrationtest.Run(t, &harness{file: true}) })
}

func TestLinesAreSegmentJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	sink, err := jsonl.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	events := integrationtest.Events("line")
	events[0].Fields().Extra = map[string][]byte{"custom": []byte(`{"kept":true}`)}
	if err := sink.Batch(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sink.Track(context.Background(), events[0].(*spec.Track)); !errors.Is(err, opentrack.ErrClosed) || !opentrack.IsPermanent(err) {
		t.Errorf("Track after Close = %v, want a permanent ErrClosed", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != len(events) {
		t.Fatalf("%d lines, want %d", len(lines), len(events))
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"type": "track", "messageId": "line-0", "event": "Order Completed",
		"receivedAt": "2026-11-26T10:00:00Z", "timestamp": "2026-11-26T10:00:00Z", "custom": map[string]any{"kept": true}} {
		got, _ := json.Marshal(first[k])
		exp, _ := json.Marshal(want)
		if string(got) != string(exp) {
			t.Errorf("line field %s = %s, want %s", k, got, exp)
		}
	}
}

func mustNew(t *testing.T, w io.Writer) *jsonl.Integration {
	t.Helper()
	in, err := jsonl.New(w, nil)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestShape(t *testing.T) {
	var ce *opentrack.ConfigError
	if _, err := jsonl.New(nil, nil); !errors.As(err, &ce) {
		t.Errorf("New(nil) = %v, want a *ConfigError", err)
	}
	in, err := jsonl.New(io.Discard, &jsonl.Options{Name: "Archive"})
	if err != nil || in.Name() != "Archive" {
		t.Errorf("Options.Name: %v %v", in, err)
	}
	if in, _ := jsonl.New(io.Discard, nil); in.Name() != jsonl.Name {
		t.Errorf("default name %q", in.Name())
	}
	if _, err := jsonl.FromEnv(t.Context(), func(string) string { return "" }); !errors.Is(err, opentrack.ErrNotConfigured) {
		t.Errorf("FromEnv without OPENTRACK_FILE = %v, want ErrNotConfigured", err)
	}
	dir := t.TempDir()
	if _, err := jsonl.FromEnv(t.Context(), func(string) string { return dir }); !errors.As(err, &ce) || ce.Field != "OPENTRACK_FILE" {
		t.Errorf("FromEnv with a folder = %v, want a ConfigError naming OPENTRACK_FILE", err)
	}
}
