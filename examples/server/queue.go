package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/journal"
	"github.com/opentrackhq/opentrack/queue"
)

// defaultDataDir is where the journal lives when OPENTRACK_DATA_DIR is unset:
// a folder in the working directory.
const defaultDataDir = "opentrack-data"

// queueFromEnv returns the queue OPENTRACK_QUEUE selects: "journal" (the
// default: durable, in OPENTRACK_DATA_DIR), "memory", or "jetstream" (the
// default when NATS_URL is set). A nil queue means the Manager's memory
// queue.
func queueFromEnv(ctx context.Context, getenv func(string) string, log *slog.Logger) (queue.Queue, error) {
	kind := strings.ToLower(strings.TrimSpace(getenv("OPENTRACK_QUEUE")))
	if kind == "" {
		kind = "journal"
		if getenv("NATS_URL") != "" {
			kind = "jetstream"
		}
	}
	switch kind {
	case "memory":
		log.Warn("OPENTRACK_QUEUE=memory: accepted events are held in memory; a crash loses them")
		return nil, nil
	case "journal":
		dir := getenv("OPENTRACK_DATA_DIR")
		if dir == "" {
			dir = defaultDataDir
		}
		opts := &journal.Options{Logger: log}
		if v := getenv("OPENTRACK_MAX_DISK"); v != "" {
			n, err := parseBytes(v)
			if err != nil {
				return nil, fmt.Errorf("OPENTRACK_MAX_DISK: %w", err)
			}
			opts.MaxBytes = n
		}
		j, err := journal.Open(dir, opts)
		if err != nil {
			return nil, fmt.Errorf("OPENTRACK_DATA_DIR: %w", err)
		}
		return j, nil
	case "jetstream":
		q, err := jetstreamQueueFromEnv(ctx, getenv)
		if errors.Is(err, opentrack.ErrNotConfigured) {
			return nil, errors.New("OPENTRACK_QUEUE=jetstream: set NATS_URL to the NATS servers")
		}
		return q, err
	}
	return nil, fmt.Errorf("OPENTRACK_QUEUE: want journal, memory or jetstream, got %q", kind)
}

// queueAttr describes the queue in use for the start-up log line.
func queueAttr(q queue.Queue) slog.Attr {
	switch q := q.(type) {
	case nil:
		return slog.String("queue", "memory")
	case *journal.Journal:
		return slog.Group("queue", slog.String("kind", "journal"), slog.String("dir", q.Dir()))
	}
	return slog.String("queue", "jetstream")
}

// parseBytes reads a size: a number of bytes, or one with a unit (KB, MB,
// GB, KiB, MiB, GiB).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a positive size such as 1GiB, got %q", s)
	}
	return n * mult, nil
}
