package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/jetstream"
	"github.com/opentrackhq/opentrack/queue"
)

// jetstreamQueueFromEnv returns a queue on a NATS JetStream stream shared by
// every collector that points at it, configured by:
//
//	NATS_URL       NATS servers, comma-separated (nats://10.0.0.1:4222,nats://10.0.0.2:4222)
//	NATS_CREDS     a NATS credentials file (default: none)
//	NATS_STREAM    the stream's name (default OPENTRACK)
//	NATS_REPLICAS  copies of each event, 1 to 5 (default 1; 3 survives the loss of a server)
//
// Blank values count as unset. It returns [opentrack.ErrNotConfigured] when
// none of these variables is set, and a [*opentrack.ConfigError] naming the
// variable when one is set without NATS_URL or holds an invalid value. It
// waits up to 30s for JetStream to be ready.
func jetstreamQueueFromEnv(ctx context.Context, getenv func(string) string) (queue.Queue, error) {
	env := func(k string) string { return strings.TrimSpace(getenv(k)) }
	url, creds, stream, replicas := env("NATS_URL"), env("NATS_CREDS"), env("NATS_STREAM"), env("NATS_REPLICAS")
	if url == "" {
		for k, v := range map[string]string{"NATS_CREDS": creds, "NATS_STREAM": stream, "NATS_REPLICAS": replicas} {
			if v != "" {
				return nil, &opentrack.ConfigError{Field: "NATS_URL", Reason: k + " is set; NATS_URL must name the NATS servers"}
			}
		}
		return nil, opentrack.ErrNotConfigured
	}
	opts := &jetstream.Options{Servers: splitList(url), CredsFile: creds, Stream: stream, Logger: slog.Default()}
	if replicas != "" {
		n, err := strconv.Atoi(replicas)
		if err != nil || n < 1 || n > 5 {
			return nil, &opentrack.ConfigError{Field: "NATS_REPLICAS", Reason: fmt.Sprintf("want a number from 1 to 5, got %q", replicas)}
		}
		opts.Replicas = n
	}
	q, err := jetstream.Open(ctx, opts)
	var ce *jetstream.ConfigError
	if errors.As(err, &ce) {
		// Name the variable behind the option; a stream found with other
		// settings is NATS_STREAM's: another name avoids it.
		field := "NATS_STREAM"
		switch {
		case ce.Field == "jetstream.Options.Replicas":
			field = "NATS_REPLICAS"
		case strings.HasPrefix(ce.Field, "jetstream.Options.Servers"):
			field = "NATS_URL"
		}
		return nil, &opentrack.ConfigError{Field: field, Reason: ce.Reason}
	}
	if err != nil {
		return nil, err
	}
	return q, nil
}
