package opentrack_test

import (
	"context"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/journal"
	"github.com/opentrackhq/opentrack/spec"
)

func TestRegressionFlushHangsAcrossJournalShutdown(t *testing.T) {
	j, err := journal.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	down := opentrack.Func("Down", func(ctx context.Context, e spec.Event) error { return errTransient })
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{down}, Queue: j, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Enqueue(t.Context(), track("x")); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- m.Flush(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Logf("Shutdown = %v", m.Shutdown(ctx))
	select {
	case err := <-flushed:
		t.Logf("Flush = %v", err)
	case <-time.After(5 * time.Second):
		t.Errorf("Flush(context.Background()) still blocked 5 s after Shutdown returned (journal)")
	}
}
