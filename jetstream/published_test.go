package jetstream

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack/jetstream/jetstreamtest"
	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

// len returns how many records are kept.
func (p *published) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.recs)
}

const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// decodedTrack is a track event as the Handler gives it: decoded from a
// request.
func decodedTrack(t testing.TB, id string, targets ...string) queue.Record {
	t.Helper()
	e, err := spec.Decode(fmt.Appendf(nil, `{"type":"track","event":"Order Completed","messageId":%q,"userId":"user-%s",`+
		`"properties":{"sku":"sku-%s","revenue":12.5}}`, id, id, id), "")
	if err != nil {
		t.Fatal(err)
	}
	e.Fields().ReceivedAt = time.Now().UTC()
	return queue.Record{Event: e, Targets: targets, TraceParent: traceParent}
}

func TestPublishedTakeAndDrop(t *testing.T) {
	var p published
	now := time.Now()
	data := []byte("data of 1")
	p.add("1", data, decodedTrack(t, "1"), 2, now)
	p.add("2", []byte("data of 2"), decodedTrack(t, "2"), 0, now) // no reader here: not kept
	p.add("", []byte("no id"), decodedTrack(t, ""), 1, now)       // cannot be told apart: not kept
	built := &spec.Track{Event: "Built in Go"}
	built.MessageID = "3"
	p.add("3", []byte("data of 3"), queue.Record{Event: built}, 1, now) // its values are Go's: not kept

	for id, d := range map[string]string{"2": "data of 2", "": "no id", "3": "data of 3"} {
		if _, ok := p.take(id, []byte(d)); ok {
			t.Errorf("took the record of messageId %q, which should not be kept", id)
		}
	}
	if _, ok := p.take("1", []byte("other data")); ok {
		t.Error("took messageId 1 for other data (another collector's message)")
	}
	for i := range 2 {
		r, ok := p.take("1", bytes.Clone(data))
		if !ok {
			t.Fatalf("take %d of messageId 1 missed", i+1)
		}
		if r.Event.Fields().MessageID != "1" {
			t.Fatalf("took %q", r.Event.Fields().MessageID)
		}
	}
	if _, ok := p.take("1", data); ok {
		t.Error("messageId 1 kept after both its readers took it")
	}
	if p.bytes != 0 || p.len() != 0 || p.head != nil || p.tail != nil {
		t.Errorf("after every take: %d bytes in %d records, want none", p.bytes, p.len())
	}

	// A retry under the same messageId replaces the record; forget drops
	// only the data it names.
	p.add("4", []byte("first try"), decodedTrack(t, "4"), 1, now)
	p.add("4", []byte("second try"), decodedTrack(t, "4"), 1, now)
	if _, ok := p.take("4", []byte("first try")); ok {
		t.Error("took the first try after a second")
	}
	p.forget("4", []byte("first try"))
	if p.len() != 1 {
		t.Error("forget dropped a record for other data")
	}
	p.forget("4", []byte("second try"))
	if p.bytes != 0 || p.len() != 0 || p.head != nil || p.tail != nil {
		t.Errorf("after forget: %d bytes in %d records, want none", p.bytes, p.len())
	}
}

func TestPublishedBounds(t *testing.T) {
	now := time.Now()
	tmpl := decodedTrack(t, "x")
	check := func(p *published) {
		t.Helper()
		if p.bytes > publishedBytes || p.len() > publishedCount {
			t.Fatalf("%d bytes in %d records kept; at most %d in %d", p.bytes, p.len(), publishedBytes, publishedCount)
		}
	}
	// Records nobody here takes (another collector delivers them) leave,
	// oldest first, past each bound.
	for _, c := range []struct {
		name string
		pad  int
	}{{"bytes", 4 << 10}, {"count", 0}} {
		var p published
		data := func(n int) []byte { return fmt.Appendf(bytes.Repeat([]byte{'x'}, c.pad), "%d", n) }
		n := 0
		for n < 2*publishedCount {
			n++
			p.add(fmt.Sprint(n), data(n), tmpl, 1, now)
			check(&p)
			if p.len() < n {
				break
			}
		}
		if p.len() == n {
			t.Fatalf("%s: all %d records kept", c.name, n)
		}
		if c.name == "bytes" && p.bytes+p.head.mem <= publishedBytes || c.name == "count" && p.len() != publishedCount {
			t.Errorf("%s: the oldest left with %d bytes in %d records kept", c.name, p.bytes, p.len())
		}
		if _, ok := p.take("1", data(1)); ok {
			t.Errorf("%s: the oldest record is still kept past the bound", c.name)
		}
		if _, ok := p.take(fmt.Sprint(n), data(n)); !ok {
			t.Errorf("%s: the newest record was dropped", c.name)
		}
	}

	// Records leave after publishedAge, whether more are added or not.
	var p published
	p.add("old", []byte("old"), tmpl, 1, now)
	p.add("new", []byte("new"), tmpl, 1, now.Add(publishedAge/2))
	p.add("newer", []byte("newer"), tmpl, 1, now.Add(publishedAge+time.Millisecond))
	if _, ok := p.take("old", []byte("old")); ok {
		t.Error("a record older than publishedAge is kept")
	}
	p.sweep(now.Add(publishedAge + publishedAge/2 + time.Millisecond))
	if _, ok := p.take("new", []byte("new")); ok {
		t.Error("sweep kept a record older than publishedAge")
	}
	if _, ok := p.take("newer", []byte("newer")); !ok {
		t.Error("sweep dropped a record younger than publishedAge")
	}
	p.add("last", []byte("last"), tmpl, 1, now)
	p.clear()
	if p.len() != 0 || p.bytes != 0 || p.head != nil {
		t.Errorf("clear left %d bytes in %d records", p.bytes, p.len())
	}
}

// TestReadersTakePublished checks that a collector's readers hand out the
// records it published from what it kept, the same as decoding the stored
// message gives, and decode what another collector published.
func TestReadersTakePublished(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	opts := &Options{Servers: []string{s.ClientURL()}, Logger: slog.New(slog.DiscardHandler)}
	open := func() (*Queue, []queue.Reader) {
		q, err := Open(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		rs, err := q.Open([]string{"A", "B"})
		if err != nil {
			t.Fatal(err)
		}
		return q, rs
	}
	q1, rs := open()
	q2, _ := open() // another collector, on the same consumers
	appendRecs := func(q *Queue, recs ...queue.Record) {
		t.Helper()
		if err := q.Append(t.Context(), recs); err != nil {
			t.Fatal(err)
		}
	}

	r1, r2 := decodedTrack(t, "1", "A", "B"), decodedTrack(t, "2", "A", "B")
	appendRecs(q1, r1, r2)
	if n := q1.pub.len(); n != 2 {
		t.Fatalf("%d records kept after publishing 2 for this collector's readers", n)
	}
	// A record kept counts the event's heap and the message's data, which
	// holds the JSON the kept event writes: the JSON once.
	q1.pub.mu.Lock()
	for _, r := range []queue.Record{r1, r2} {
		id := r.Event.Fields().MessageID
		k := q1.pub.recs[id]
		if want := int64(r.Event.Fields().Size() + len(k.data) + len(id)); k.mem != want {
			t.Errorf("record %s counts %d bytes, want the event's %d, the data's %d and the id's %d: %d",
				id, k.mem, r.Event.Fields().Size(), len(k.data), len(id), want)
		}
	}
	q1.pub.mu.Unlock()
	appendRecs(q2, decodedTrack(t, "3", "A", "B")) // q1's readers decode it
	// The same messageId again, with other data: JetStream keeps the
	// first, and q1 forgets the second.
	appendRecs(q1, decodedTrack(t, "dup", "A", "B"))
	appendRecs(q1, decodedTrack(t, "dup", "A", "B")) // appended later: other data
	// X is not a reader of this collector: A alone takes the record.
	appendRecs(q1, decodedTrack(t, "4", "A", "X"))
	// Only q1 fetches.
	q2.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	want := map[string][]string{"A": {"1", "2", "3", "dup", "4"}, "B": {"1", "2", "3", "dup"}}
	for _, r := range rs {
		name := r.(*reader).name
		var got []queue.Record
		for len(got) < len(want[name]) {
			more, err := r.Next(ctx, len(want[name])-len(got))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, more...)
		}
		var ids []string
		for _, g := range got {
			ids = append(ids, g.Event.Fields().MessageID)
			stored, err := q1.stream.GetMsg(ctx, g.Seq)
			if err != nil {
				t.Fatal(err)
			}
			d, err := queue.DecodeRecord(stored.Data)
			if err != nil {
				t.Fatal(err)
			}
			d.Seq = g.Seq
			if diff := recordDiff(g, d); diff != "" {
				t.Errorf("%s: handed out %s; decoding the stored message gives %s", name, g.Event.Fields().MessageID, diff)
			}
		}
		if !slices.Equal(ids, want[name]) {
			t.Errorf("%s: handed out %q, want %q", name, ids, want[name])
		}
		seqs := make([]uint64, len(got))
		for i, g := range got {
			seqs[i] = g.Seq
		}
		r.Settle(seqs...)
	}
	if n := q1.pub.len(); n != 0 {
		t.Errorf("%d records still kept after this collector's readers took them", n)
	}
}

// recordDiff describes how a and b differ, or returns "".
func recordDiff(a, b queue.Record) string {
	var out []string
	field := func(name string, x, y any) {
		if fx, fy := fmt.Sprintf("%#v", x), fmt.Sprintf("%#v", y); fx != fy {
			out = append(out, fmt.Sprintf("%s %s, not %s", name, fx, fy))
		}
	}
	field("Seq", a.Seq, b.Seq)
	field("Size", a.Size, b.Size)
	field("Appended", a.Appended.UnixNano(), b.Appended.UnixNano())
	field("Targets", a.Targets, b.Targets)
	field("TraceParent", a.TraceParent, b.TraceParent)
	field("Redelivered", a.Redelivered, b.Redelivered)
	field("ReceivedAt", a.Event.Fields().ReceivedAt.UnixNano(), b.Event.Fields().ReceivedAt.UnixNano())
	ta, tb := a.Event.(*spec.Track), b.Event.(*spec.Track)
	field("Properties", ta.Properties, tb.Properties) // json.Number, not float64
	ja, _ := a.Event.MarshalJSON()
	jb, _ := b.Event.MarshalJSON()
	field("JSON", string(ja), string(jb))
	return strings.Join(out, "; ")
}

// tagged is an Event type of another package: a decoded track with a field
// of its own, which also makes it not comparable.
type tagged struct {
	*spec.Track
	tags []string
}

// TestAnotherPackagesEventIsNotKept checks that a record whose event is of
// another package's type, which cannot keep its JSON, is not kept for this
// collector's readers: they decode it from the stream, as it was stored.
func TestAnotherPackagesEventIsNotKept(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	q, err := Open(t.Context(), &Options{Servers: []string{s.ClientURL()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	rs, err := q.Open([]string{"A"})
	if err != nil {
		t.Fatal(err)
	}
	rec := decodedTrack(t, "other", "A")
	rec.Event = tagged{Track: rec.Event.(*spec.Track), tags: []string{"x"}}
	if err := q.Append(t.Context(), []queue.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if n := q.pub.len(); n != 0 {
		t.Errorf("%d records kept for this collector's readers; want none for an event that keeps nothing", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := rs[0].Next(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Event.Fields().MessageID != "other" {
		t.Fatalf("read %v, want the record appended", got)
	}
	if _, ok := got[0].Event.(*spec.Track); !ok {
		t.Errorf("read a %T, want the *spec.Track decoded from the stream", got[0].Event)
	}
	want, _ := rec.Event.MarshalJSON()
	if b, _ := got[0].Event.MarshalJSON(); !bytes.Equal(b, want) {
		t.Errorf("read %s, want %s", b, want)
	}
	rs[0].Settle(got[0].Seq)
}
