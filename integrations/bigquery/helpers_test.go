package bigquery

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	bq "cloud.google.com/go/bigquery"

	"github.com/opentrackhq/opentrack/internal/fakebigquery"
	"github.com/opentrackhq/opentrack/spec"
)

const (
	testProject = "proj"
	testDataset = "segment"
)

// fixedNow is the loader's clock in tests: uuid_ts, loaded_at, and
// received_at for events that have none.
var fixedNow = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// env is an Integration wired to a fresh stand-in.
type env struct {
	srv *fakebigquery.Server
	in  *Integration
	ctx context.Context
}

// newEnv starts a stand-in and an Integration on it, initialised. Every
// call the test makes through env.ctx has a deadline, so the BigQuery
// client's retries of 5xx answers cannot hang the test.
func newEnv(t testing.TB, opts *Options, srvOpts *fakebigquery.Options) *env {
	t.Helper()
	srv := fakebigquery.New(srvOpts)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	client, err := srv.NewClient(ctx, testProject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	in, err := New(client, testDataset, &o)
	if err != nil {
		t.Fatal(err)
	}
	in.now = func() time.Time { return fixedNow }
	if err := in.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, in: in, ctx: ctx}
}

func (e *env) rows(table string) []fakebigquery.Row {
	return e.srv.Rows(testProject, testDataset, table)
}

func (e *env) schema(t testing.TB, table string) map[string]string {
	t.Helper()
	fields, ok := e.srv.Schema(testProject, testDataset, table)
	if !ok {
		t.Fatalf("table %s does not exist", table)
	}
	out := make(map[string]string, len(fields))
	for _, f := range fields {
		out[f.Name] = f.Type
	}
	return out
}

// event decodes one Segment event from JSON.
func event(t testing.TB, js string) spec.Event {
	t.Helper()
	e, err := spec.Decode([]byte(js), "")
	if err != nil {
		t.Fatalf("decode %s: %v", js, err)
	}
	return e
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// mustNew is New for options known to be valid.
func mustNew(t testing.TB, client *bq.Client, dataset string, opts *Options) *Integration {
	t.Helper()
	in, err := New(client, dataset, opts)
	if err != nil {
		t.Fatal(err)
	}
	return in
}
