package jetstream

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack/jetstream/jetstreamtest"
	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

func publishedTrack(id string) queue.Record {
	e := &spec.Track{Event: "Order Completed", Properties: map[string]any{"sku": "sku-" + id}}
	e.Type = spec.TypeTrack
	e.MessageID = id
	e.UserID = "user-" + id
	e.ReceivedAt = time.Now().UTC()
	return queue.Record{Event: e, Targets: []string{"A", "B"}}
}

func TestPublishedTakeAndDrop(t *testing.T) {
	var p published
	data := []byte("data of 1")
	p.add("1", data, publishedTrack("1"), 2)
	p.add("2", []byte("data of 2"), publishedTrack("2"), 0) // no reader here: not kept
	p.add("", []byte("no id"), publishedTrack(""), 1)       // cannot be told apart: not kept

	if _, ok := p.take("2", []byte("data of 2")); ok {
		t.Error("took a record kept for no reader")
	}
	if _, ok := p.take("", []byte("no id")); ok {
		t.Error("took a record without a messageId")
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
	if p.bytes != 0 || len(p.recs) != 0 {
		t.Errorf("after every take: %d bytes in %d records, want none", p.bytes, len(p.recs))
	}

	// A retry under the same messageId replaces the record; forget drops
	// only the data it names.
	p.add("3", []byte("first try"), publishedTrack("3"), 1)
	p.add("3", []byte("second try"), publishedTrack("3"), 1)
	if _, ok := p.take("3", []byte("first try")); ok {
		t.Error("took the first try after a second")
	}
	p.forget("3", []byte("first try"))
	p.forget("3", []byte("second try"))
	if p.bytes != 0 || len(p.recs) != 0 {
		t.Errorf("after forget: %d bytes in %d records, want none", p.bytes, len(p.recs))
	}
}

func TestPublishedBounds(t *testing.T) {
	var p published
	// Records nobody here takes (another collector delivers them) leave,
	// oldest first, once they pass publishedBytes.
	data := func(n int) []byte { return fmt.Appendf(bytes.Repeat([]byte{'x'}, 4<<10), "%d", n) }
	n := 0
	for p.head == 0 && n < publishedCount {
		n++
		p.add(fmt.Sprint(n), data(n), publishedTrack(fmt.Sprint(n)), 1)
	}
	if p.head == 0 || n >= publishedCount {
		t.Fatalf("nothing left after %d records of 4 KB", n)
	}
	if p.bytes > publishedBytes {
		t.Fatalf("%d bytes kept, more than %d", p.bytes, publishedBytes)
	}
	if _, ok := p.take("1", data(1)); ok {
		t.Error("the oldest record is still kept past the bound")
	}
	if _, ok := p.take(fmt.Sprint(n), data(n)); !ok {
		t.Error("the newest record was dropped")
	}

	// One record never taken, the rest taken at once: the list of Seqs
	// stays bounded, and the old record leaves with publishedCount.
	var q published
	q.add("stuck", []byte("stuck"), publishedTrack("stuck"), 1)
	for s := 2; s < 3*publishedCount; s++ {
		id := fmt.Sprint(s)
		q.add(id, []byte(id), publishedTrack(id), 1)
		if _, ok := q.take(id, []byte(id)); !ok {
			t.Fatalf("messageId %s missed", id)
		}
		if l := len(q.order) - q.head; l > publishedCount {
			t.Fatalf("messageId %s: %d listed, more than %d", id, l, publishedCount)
		}
	}
	if _, ok := q.take("stuck", []byte("stuck")); ok {
		t.Error("a record never taken is kept after publishedCount more")
	}
	if len(q.recs) != 0 || cap(q.order) > 4*publishedCount {
		t.Errorf("%d records kept, list capacity %d", len(q.recs), cap(q.order))
	}
}

// TestReadersTakePublished checks that a collector's readers hand out the
// records it published from what it kept, equal to what decoding the
// message gives, and decode the records another collector published.
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

	mine := []queue.Record{publishedTrack("1"), publishedTrack("2")}
	if err := q1.Append(t.Context(), mine); err != nil {
		t.Fatal(err)
	}
	if got := len(q1.pub.recs); got != 2 {
		t.Fatalf("%d records kept after publishing 2 for two readers", got)
	}
	theirs := []queue.Record{publishedTrack("3")}
	if err := q2.Append(t.Context(), theirs); err != nil {
		t.Fatal(err)
	}
	// q2 publishes, but q1's readers fetch: they must decode it. Close
	// q2 so that only q1 fetches.
	q2.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, r := range rs {
		var got []queue.Record
		for len(got) < 3 {
			more, err := r.Next(ctx, 3-len(got))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, more...)
		}
		for i, want := range append(mine, theirs...) {
			g := got[i]
			if g.Seq != want.Seq || g.Size != want.Size || !g.Appended.Equal(want.Appended) {
				t.Errorf("%s: record %d: Seq %d Size %d Appended %v, want %d %d %v",
					r.(*reader).name, i, g.Seq, g.Size, g.Appended, want.Seq, want.Size, want.Appended)
			}
			gj, err := g.Event.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			wj, _ := want.Event.MarshalJSON()
			if !bytes.Equal(gj, wj) {
				t.Errorf("record %d: handed out\n%s\nwant\n%s", i, gj, wj)
			}
		}
		seqs := make([]uint64, len(got))
		for i, g := range got {
			seqs[i] = g.Seq
		}
		r.Settle(seqs...)
	}
	if n := len(q1.pub.recs); n != 0 {
		t.Errorf("%d records still kept after both readers took them", n)
	}
}
