package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	analytics "github.com/segmentio/analytics-go/v3"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/jsonl"
	"github.com/opentrackhq/opentrack/jetstream"
	"github.com/opentrackhq/opentrack/jetstream/jetstreamtest"
)

func TestJetStreamFromEnvErrors(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	for _, c := range []struct {
		env   map[string]string
		field string // "" for ErrNotConfigured
	}{
		{map[string]string{}, ""},
		{map[string]string{"NATS_URL": "  "}, ""},
		{map[string]string{"NATS_STREAM": "EVENTS"}, "NATS_URL"},
		{map[string]string{"NATS_REPLICAS": "3"}, "NATS_URL"},
		{map[string]string{"NATS_URL": s.ClientURL(), "NATS_REPLICAS": "three"}, "NATS_REPLICAS"},
		{map[string]string{"NATS_URL": s.ClientURL(), "NATS_REPLICAS": "9"}, "NATS_REPLICAS"},
		{map[string]string{"NATS_URL": s.ClientURL(), "NATS_STREAM": "a.b"}, "NATS_STREAM"},
	} {
		q, err := jetstreamQueueFromEnv(t.Context(), func(k string) string { return c.env[k] })
		if q != nil {
			q.Close()
		}
		var ce *opentrack.ConfigError
		switch {
		case c.field == "" && !errors.Is(err, opentrack.ErrNotConfigured):
			t.Errorf("%v: %v, want ErrNotConfigured", c.env, err)
		case c.field != "" && (!errors.As(err, &ce) || ce.Field != c.field):
			t.Errorf("%v: %v, want a ConfigError on %s", c.env, err, c.field)
		}
	}
	// A stream of that name with three replicas cannot be made on one
	// server: JetStream says why, within the start-up wait.
	if q, err := jetstreamQueueFromEnv(t.Context(), func(k string) string {
		return map[string]string{"NATS_URL": s.ClientURL(), "NATS_STREAM": "R3", "NATS_REPLICAS": "3"}[k]
	}); err == nil {
		q.Close()
		t.Error("an R3 stream on one server: no error")
	}
}

// TestJetStreamServer runs the example server with NATS_URL set, sends the
// six calls with analytics-go, stops the server and checks that each event
// went through the stream into the JSON-lines file once.
func TestJetStreamServer(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	path := filepath.Join(t.TempDir(), "events.jsonl")
	env := map[string]string{"PORT": "0", "WRITE_KEY": "wk", "OPENTRACK_FILE": path, "NATS_URL": s.ClientURL(), "SHUTDOWN_TIMEOUT": "10s"}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, func(k string) string { return env[k] }, slog.New(slog.NewTextHandler(io.Discard, nil)), ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	}
	base := "http://" + strings.Replace(addr, "[::]", "127.0.0.1", 1)

	cl, err := analytics.NewWithConfig("wk", analytics.Config{Endpoint: base, BatchSize: 6, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []analytics.Message{
		analytics.Identify{MessageId: "m-identify", UserId: "u1", Traits: analytics.NewTraits().SetEmail("ada@example.com")},
		analytics.Track{MessageId: "m-track", UserId: "u1", Event: "Order Completed"},
		analytics.Page{MessageId: "m-page", UserId: "u1", Name: "Pricing"},
		analytics.Screen{MessageId: "m-screen", UserId: "u1", Name: "Checkout"},
		analytics.Group{MessageId: "m-group", UserId: "u1", GroupId: "acme"},
		analytics.Alias{MessageId: "m-alias", UserId: "u1", PreviousId: "a1"},
	} {
		if err := cl.Enqueue(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Close(); err != nil { // sends the batch and waits for the answer
		t.Fatal(err)
	}
	cancel() // as SIGTERM: deliver what was accepted, then stop
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server did not stop")
	}

	lines := messageIDCounts(t, path)
	for _, id := range []string{"m-identify", "m-track", "m-page", "m-screen", "m-group", "m-alias"} {
		if lines[id] != 1 {
			t.Errorf("%s is in the file %d times, want 1", id, lines[id])
		}
	}
	// They went through the stream: the sink's consumer took six.
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := njs.New(nc)
	c, err := js.Consumer(t.Context(), jetstream.DefaultStream, jetstream.ConsumerName(jsonl.Name))
	if err != nil {
		t.Fatalf("the JSON-lines integration's consumer: %v", err)
	}
	if info := c.CachedInfo(); info.Delivered.Consumer != 6 || info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("consumer delivered %d, %d unacknowledged, %d pending; want 6, 0, 0", info.Delivered.Consumer, info.NumAckPending, info.NumPending)
	}
}
