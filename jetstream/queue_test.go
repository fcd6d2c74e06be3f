package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/opentrackhq/opentrack/jetstream"
	"github.com/opentrackhq/opentrack/jetstream/jetstreamtest"
	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

var quiet = slog.New(slog.DiscardHandler)

func track(id string, pad int) spec.Event {
	e := &spec.Track{Event: "Order Completed", Properties: map[string]any{"sku": "sku-" + id, "pad": strings.Repeat("x", pad)}}
	e.Type = spec.TypeTrack
	e.MessageID = id
	e.UserID = "user-" + id
	e.ReceivedAt = time.Now().UTC()
	return e
}

func recs(targets []string, ids ...string) []queue.Record {
	out := make([]queue.Record, len(ids))
	for i, id := range ids {
		out[i] = queue.Record{Event: track(id, 0), Targets: targets}
	}
	return out
}

func mustOpen(t *testing.T, o *jetstream.Options, names ...string) (*jetstream.Queue, []queue.Reader) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	q, err := jetstream.Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	rs, err := q.Open(names)
	if err != nil {
		t.Fatalf("Open(%q): %v", names, err)
	}
	return q, rs
}

// readN reads n records, failing after 10s.
func readN(t *testing.T, r queue.Reader, n int) []queue.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []queue.Record
	for len(got) < n {
		more, err := r.Next(ctx, n-len(got))
		if err != nil {
			t.Fatalf("Next after %d of %d records: %v", len(got), n, err)
		}
		got = append(got, more...)
	}
	return got
}

// readNothing checks that no record arrives within d.
func readNothing(t *testing.T, r queue.Reader, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	if got, err := r.Next(ctx, 100); len(got) > 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %d records (%v), %v; want none", len(got), msgIDs(got), err)
	}
}

func msgIDs(rs []queue.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Event.Fields().MessageID
	}
	return out
}

func seqsOf(rs []queue.Record) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.Seq
	}
	return out
}

// TestReopen checks what a restart means with JetStream: the records read
// and not settled come again, marked Redelivered, at once (Close hands
// them back rather than waiting for AckWait); settled ones do not, even
// above the cursor; Seqs go on.
func TestReopen(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	o := &jetstream.Options{Servers: []string{s.ClientURL()}, Logger: quiet}
	q, err := jetstream.Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := q.Open([]string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 10 {
		ids = append(ids, fmt.Sprint("r", i))
	}
	all := recs([]string{"a", "b"}, ids...)
	if err := q.Append(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	got := readN(t, rs[0], 10)
	rs[0].Settle(got[0].Seq, got[1].Seq, got[2].Seq, got[3].Seq, got[5].Seq)
	readN(t, rs[1], 2)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	_, rs = mustOpen(t, o, "a", "b")
	if c := rs[0].Stats().Cursor; c != all[4].Seq {
		t.Errorf("a's cursor after reopening: %d, want %d", c, all[4].Seq)
	}
	again := readN(t, rs[0], 5)
	want := []uint64{all[4].Seq, all[6].Seq, all[7].Seq, all[8].Seq, all[9].Seq}
	if !slices.Equal(seqsOf(again), want) {
		t.Errorf("a re-read Seqs %v, want the unsettled %v", seqsOf(again), want)
	}
	for _, r := range again {
		if !r.Redelivered {
			t.Errorf("Seq %d, read before Close and not settled, is not marked Redelivered", r.Seq)
		}
	}
	// Records handed back come again as JetStream redelivers them, which
	// need not be in Seq order: compare them as a set.
	if bAgain := seqsOf(readN(t, rs[1], 10)); !slices.Equal(slices.Sorted(slices.Values(bAgain)), seqsOf(all)) {
		t.Errorf("b re-read Seqs %v, want all %v", bAgain, seqsOf(all))
	}
	if d := time.Since(start); d > jetstream.DefaultAckWait/2 {
		t.Errorf("redelivery took %v: Close did not hand the records back", d)
	}
	readNothing(t, rs[0], 100*time.Millisecond)
}

// TestAppendAtBound checks an Append refused because the stream is full:
// it answers ErrFull, the records that fitted are stored, and sending the
// same records again once there is room stores only the missing ones
// (JetStream drops the others by their Nats-Msg-Id), so each is read once.
func TestAppendAtBound(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	const maxBytes = 16 << 10
	q, rs := mustOpen(t, &jetstream.Options{Servers: []string{s.ClientURL()}, MaxBytes: maxBytes}, "a")
	var sent, refused []queue.Record
	for i := 0; refused == nil; i++ {
		batch := make([]queue.Record, 3)
		for k := range batch {
			batch[k] = queue.Record{Event: track(fmt.Sprintf("f%d-%d", i, k), 500), Targets: []string{"a"}}
		}
		err := q.Append(t.Context(), batch)
		switch {
		case errors.Is(err, queue.ErrFull):
			refused = batch
		case err != nil:
			t.Fatalf("Append %d: %v", i, err)
		case i > 100:
			t.Fatal("no ErrFull after 100 Appends")
		default:
			sent = append(sent, batch...)
		}
	}
	// Make room: read what is there (the refused Append's records that
	// fitted among it), settle it, and let JetStream confirm.
	seen := map[string]int{}
	drain := func() {
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			got, err := rs[0].Next(ctx, 100)
			cancel()
			if err != nil {
				return
			}
			for _, r := range got {
				seen[r.Event.Fields().MessageID]++
				rs[0].Settle(r.Seq)
			}
		}
	}
	drain()
	if err := q.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The sender sends the refused request again, with new event values
	// (a new receivedAt) but the same messageIds.
	again := make([]queue.Record, len(refused))
	for i, r := range refused {
		again[i] = queue.Record{Event: track(r.Event.Fields().MessageID, 500), Targets: []string{"a"}}
	}
	if err := q.Append(t.Context(), again); err != nil {
		t.Fatalf("Append again after making room: %v", err)
	}
	drain()
	stored := 0
	for _, r := range refused {
		if seen[r.Event.Fields().MessageID] > 0 {
			stored++
		}
	}
	for _, r := range append(sent, refused...) {
		if n := seen[r.Event.Fields().MessageID]; n != 1 {
			t.Errorf("%s read %d times, want 1", r.Event.Fields().MessageID, n)
		}
	}
	t.Logf("%d records appended before the bound; the refused Append of %d was resent and each record read once", len(sent), len(refused))
}

// jetStreamAt returns a JetStream client of the server at url, closed when
// the test ends.
func jetStreamAt(t *testing.T, url string) njs.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := njs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestStreamMismatch(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	js := jetStreamAt(t, s.ClientURL())
	for _, c := range []njs.StreamConfig{
		{Name: "LIMITS", Subjects: []string{"limits.events"}},
		{Name: "OLD", Subjects: []string{"old.events"}, Retention: njs.InterestPolicy, Discard: njs.DiscardOld},
		{Name: "OTHER", Subjects: []string{"other.>"}, Retention: njs.InterestPolicy, Discard: njs.DiscardNew},
	} {
		if _, err := js.CreateStream(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		opts  jetstream.Options
		field string
		says  string
	}{
		{jetstream.Options{Stream: "LIMITS", Subject: "limits.events"}, "jetstream.Options.Stream", "retention"},
		{jetstream.Options{Stream: "OLD", Subject: "old.events"}, "jetstream.Options.Stream", "DiscardNew"},
		{jetstream.Options{Stream: "OTHER", Subject: "opentrack.events"}, "jetstream.Options.Subject", `captures ["other.>"]`},
		{jetstream.Options{Stream: "OTHER", Subject: "other.events", Replicas: 3}, "jetstream.Options.Replicas", "has 1 replicas"},
		{jetstream.Options{Stream: "OTHER", Subject: "other.events", MaxAge: time.Hour}, "jetstream.Options.MaxAge", "max age"},
	} {
		c.opts.Servers, c.opts.Logger, c.opts.StartTimeout = []string{s.ClientURL()}, quiet, 2*time.Second
		q, err := jetstream.Open(t.Context(), &c.opts)
		var ce *jetstream.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field || !strings.Contains(ce.Reason, c.says) {
			t.Errorf("Open(%s, %s) = %v, want a ConfigError on %s saying %q", c.opts.Stream, c.opts.Subject, err, c.field, c.says)
		}
		if q != nil {
			q.Close()
		}
	}
	// A stream that captures the subject with a wildcard is fine.
	_, rs := mustOpen(t, &jetstream.Options{Servers: []string{s.ClientURL()}, Stream: "OTHER", Subject: "other.events"}, "a")
	if len(rs) != 1 {
		t.Fatal(len(rs))
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, c := range []struct {
		opts  jetstream.Options
		field string
	}{
		{jetstream.Options{Replicas: 7}, "Replicas"},
		{jetstream.Options{MaxBytes: -2}, "MaxBytes"},
		{jetstream.Options{AckWait: time.Millisecond}, "AckWait"},
		{jetstream.Options{Stream: "a.b"}, "Stream"},
		{jetstream.Options{Subject: "opentrack.>"}, "Subject"},
		{jetstream.Options{Subject: "a..b"}, "Subject"},
		{jetstream.Options{Servers: []string{""}}, "Servers[0]"},
		{jetstream.Options{ReadAhead: -1}, "ReadAhead"},
	} {
		_, err := jetstream.Open(t.Context(), &c.opts)
		var ce *jetstream.ConfigError
		if !errors.As(err, &ce) || ce.Field != "jetstream.Options."+c.field {
			t.Errorf("Open(%+v) = %v, want a ConfigError on %s", c.opts, err, c.field)
		}
	}
}

// TestUnreachableAtStart checks that Open gives up within StartTimeout
// when no server answers.
func TestUnreachableAtStart(t *testing.T) {
	_, err := jetstream.Open(t.Context(), &jetstream.Options{Servers: []string{"nats://127.0.0.1:1"}, StartTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("Open with no server = %v, want a connection error", err)
	}
}

// writesNothing is an Event type of another package whose MarshalJSON
// writes nothing.
type writesNothing struct{ spec.Track }

func (*writesNothing) MarshalJSON() ([]byte, error) { return nil, nil }

func TestAppendErrors(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	q, err := jetstream.Open(t.Context(), &jetstream.Options{Servers: []string{s.ClientURL()}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Append(t.Context(), recs([]string{"a"}, "early")); err == nil {
		t.Error("Append before Open succeeded; with interest retention the record would be dropped")
	}
	if _, err := q.Open([]string{"Customer.io", "Customer.io"}); err == nil {
		t.Error("Open with a duplicate name succeeded")
	}
	if err := q.Append(t.Context(), []queue.Record{{Targets: []string{"a"}}}); err == nil {
		t.Error("Append of a record without an event succeeded")
	}
	if err := q.Append(t.Context(), []queue.Record{{Event: &writesNothing{}, Targets: []string{"a"}}}); err == nil {
		t.Error("Append of an event whose MarshalJSON wrote nothing succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := q.Append(ctx, recs([]string{"a"}, "late")); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled ctx = %v", err)
	}
}

func TestConsumerName(t *testing.T) {
	for name, want := range map[string]string{
		"BigQuery":   "BigQuery",
		"JSON_Lines": "JSON_Lines",
		"webhook-1":  "webhook-1",
	} {
		if got := jetstream.ConsumerName(name); got != want {
			t.Errorf("ConsumerName(%q) = %q, want %q", name, got, want)
		}
	}
	a, b := jetstream.ConsumerName("Customer.io"), jetstream.ConsumerName("Customer_io")
	if a == b || !strings.HasPrefix(a, "Customer_io_") || b != "Customer_io" {
		t.Errorf("ConsumerName: Customer.io → %q, Customer_io → %q", a, b)
	}
	if got := jetstream.ConsumerName("JSON Lines"); !strings.HasPrefix(got, "JSON_Lines_") || len(got) != len("JSON_Lines_")+8 {
		t.Errorf("ConsumerName(%q) = %q", "JSON Lines", got)
	}
}

// FuzzConsumerName checks that every name maps to one NATS accepts, the
// same each time, and that names NATS refuses are never left as they are.
func FuzzConsumerName(f *testing.F) {
	for _, s := range []string{"BigQuery", "Customer.io", "JSON Lines", "a/b", "*", ">", "", "\x00", "é.ü", "\xff", strings.Repeat("x.", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := jetstream.ConsumerName(name)
		if got == "" || len(got) > 255 || strings.ContainsAny(got, " \t\r\n\f.*>/\\") || !utf8Valid(got) {
			t.Fatalf("ConsumerName(%q) = %q: not a name NATS takes", name, got)
		}
		if jetstream.ConsumerName(name) != got {
			t.Fatalf("ConsumerName(%q) is not stable", name)
		}
		if got != name && !strings.Contains(got, "_") {
			t.Fatalf("ConsumerName(%q) = %q changed the name without a hash suffix", name, got)
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// TestStatsWhenUnreachable checks that a reader does not report an empty
// backlog it cannot see: the Manager's Shutdown takes Unsettled == 0 for
// "everything delivered".
func TestStatsWhenUnreachable(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	q, rs := mustOpen(t, &jetstream.Options{Servers: []string{s.ClientURL()}}, "a")
	if st := rs[0].Stats(); st.Unsettled != 0 {
		t.Fatalf("empty stream: %+v", st)
	}
	if err := q.Append(t.Context(), recs([]string{"a"}, "u1", "u2", "u3")); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	if st := rs[0].Stats(); st.Unsettled < 3 {
		t.Fatalf("three records appended and NATS gone: Stats says %d unsettled", st.Unsettled)
	}
}

// TestCloseDuringStats closes queues while Stats and Appends run: records a
// Stats read ahead are handed back by Close like any others, so that
// another reader gets them at once rather than after AckWait.
func TestCloseDuringStats(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	js := jetStreamAt(t, s.ClientURL())
	caught := 0 // rounds in which Close found records in progress
	for round := range 20 {
		q, rs := mustOpen(t, &jetstream.Options{Servers: []string{s.ClientURL()}}, "a")
		stop := make(chan struct{})
		done := make(chan struct{}, 2)
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = q.Append(t.Context(), recs([]string{"a"}, fmt.Sprint("c", round, "-", i)))
			}
		}()
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				rs[0].Stats()
			}
		}()
		time.Sleep(time.Duration(10+round%4*5) * time.Millisecond)
		err := q.Close()
		close(stop)
		<-done
		<-done
		if err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
		c, err := js.Consumer(t.Context(), jetstream.DefaultStream, jetstream.ConsumerName("a"))
		if err != nil {
			t.Fatal(err)
		}
		info := func() *njs.ConsumerInfo {
			ci, err := c.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return ci
		}
		if info().NumAckPending > 0 {
			caught++
		}
		// Every record is either waiting or was handed back: a reader
		// gets them all at once. One still in progress would come only
		// after AckWait (30s).
		var ci *njs.ConsumerInfo
		for deadline := time.Now().Add(3 * time.Second); ; {
			batch, err := c.Fetch(1000, njs.FetchMaxWait(100*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			for m := range batch.Messages() {
				if err := m.DoubleAck(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if ci = info(); ci.NumAckPending == 0 && ci.NumPending == 0 || time.Now().After(deadline) {
				break
			}
		}
		if ci.NumAckPending != 0 || ci.NumPending != 0 {
			t.Fatalf("round %d: %d records still in progress 3s after Close (%d waiting)", round, ci.NumAckPending, ci.NumPending)
		}
	}
	if caught == 0 {
		t.Fatal("no Close found records in progress: the check cannot have failed")
	}
	t.Logf("%d of 20 rounds closed with records in progress", caught)
}
