package jetstream_test

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/opentrackhq/opentrack/jetstream"
	"github.com/opentrackhq/opentrack/jetstream/jetstreamtest"
	"github.com/opentrackhq/opentrack/queue"
)

// fuzzEnv is one server and queue shared by a fuzzing run's iterations.
type fuzzEnv struct {
	srv *server.Server
	dir string
	js  njs.JetStream
	q   *jetstream.Queue
	r   queue.Reader
	n   int
}

var (
	fuzzOnce sync.Once
	fuzzE    *fuzzEnv
)

// FuzzForeignMessages publishes arbitrary bytes to the stream's subject,
// as anything with access to it could, followed by a record appended by
// the queue: the reader must not crash, must drop what is not a record,
// and must go on to deliver the record. A message that happens to be a
// valid record for the integration is delivered like any other.
func FuzzForeignMessages(f *testing.F) {
	valid, err := queue.EncodeRecord(nil, queue.Record{Event: track("seed", 10), Targets: []string{"a"}, Appended: time.Now()})
	if err != nil {
		f.Fatal(err)
	}
	other, _ := queue.EncodeRecord(nil, queue.Record{Event: track("other", 10), Targets: []string{"b"}, Appended: time.Now()})
	for _, s := range [][]byte{nil, {}, []byte("{}"), {1}, {1, 1, 1, 'a'}, valid, valid[:len(valid)/2], other, append([]byte{2}, valid[1:]...)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e := fuzzSetup(t)
		e.n++
		if _, err := e.js.Publish(t.Context(), "fuzz.events", data); err != nil {
			t.Fatalf("publishing %d bytes: %v", len(data), err)
		}
		recs := []queue.Record{{Event: track(time.Now().Format(time.RFC3339Nano), 0), Targets: []string{"a"}}}
		if err := e.q.Append(t.Context(), recs); err != nil {
			t.Fatal(err)
		}
		want := recs[0].Seq
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		for {
			got, err := e.r.Next(ctx, 10)
			if err != nil {
				t.Fatalf("Next after publishing %q: %v", data, err)
			}
			seqs := seqsOf(got)
			e.r.Settle(seqs...)
			if slices.Contains(seqs, want) {
				break
			}
			// Only a valid record for "a" may come before it.
			for _, r := range got {
				h, _, err := queue.DecodeRecordHeader(data)
				if err != nil || !slices.Contains(h.Targets, "a") {
					t.Fatalf("Next returned Seq %d (%v) for a foreign message %q", r.Seq, r.Event.Fields().MessageID, data)
				}
			}
		}
	})
}

func fuzzSetup(t *testing.T) *fuzzEnv {
	fuzzOnce.Do(func() {
		// One server for the whole run, outliving the first iteration's
		// test: it stops with the process.
		dir, err := os.MkdirTemp("", "opentrack-fuzz-")
		if err != nil {
			t.Fatal(err)
		}
		s, err := server.NewServer(jetstreamtest.Options(dir))
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("server not ready")
		}
		q, err := jetstream.Open(context.Background(), &jetstream.Options{Servers: []string{s.ClientURL()}, Subject: "fuzz.events", Stream: "FUZZ", Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		rs, err := q.Open([]string{"a"})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		js, _ := njs.New(nc)
		fuzzE = &fuzzEnv{srv: s, dir: dir, js: js, q: q, r: rs[0]}
	})
	if fuzzE == nil {
		t.Fatal("setup failed")
	}
	return fuzzE
}

// TestMain stops the fuzzing server, if one was started, and removes its
// store.
func TestMain(m *testing.M) {
	code := m.Run()
	if e := fuzzE; e != nil {
		e.q.Close()
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		os.RemoveAll(e.dir)
	}
	os.Exit(code)
}
