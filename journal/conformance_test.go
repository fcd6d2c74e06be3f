package journal_test

import (
	"log/slog"
	"testing"

	"github.com/opentrackhq/opentrack/journal"
	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/queue/queuetest"
)

// harness opens journals in a test's temporary directory.
type harness struct {
	dir  string
	opts *journal.Options
}

func (h *harness) Open(t *testing.T, maxBytes int64) queue.Queue {
	h.dir = t.TempDir()
	h.opts = &journal.Options{MaxBytes: maxBytes, Logger: slog.New(slog.DiscardHandler)}
	return h.Reopen(t)
}

func (h *harness) Reopen(t *testing.T) queue.Queue {
	j, err := journal.Open(h.dir, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (h *harness) Durable() bool { return true }

func TestConformance(t *testing.T) {
	queuetest.Run(t, &harness{})
}
