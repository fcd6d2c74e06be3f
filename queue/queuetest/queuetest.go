// Package queuetest is a conformance suite for [queue.Queue]
// implementations. An implementation runs it from one test with a small
// [Harness]:
//
//	func TestConformance(t *testing.T) {
//		queuetest.Run(t, harness{})
//	}
//
// The suite owns the cases: records come out in Seq order and only to
// their targets; settling in any order moves a cursor to the lowest
// unsettled record; an Append is all or nothing; a bounded queue answers
// ErrFull and ErrTooLarge; Next honours its context and returns ErrClosed
// after Close; concurrent use passes the race detector; and, for a durable
// queue, records and cursors survive Close and a reopening.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

// Harness opens the queue under test.
type Harness interface {
	// Open returns a new, empty queue, which the suite closes. maxBytes 0
	// asks for the implementation's defaults; maxBytes > 0 asks for a
	// queue bounded to about maxBytes bytes of records (their Size added
	// up, give or take the implementation's own overhead per record): the
	// suite then expects ErrFull once it has appended about that much
	// without settling, and ErrTooLarge for one Append of more than twice
	// that.
	Open(t *testing.T, maxBytes int64) queue.Queue
	// Reopen returns the queue that the last Open returned, opened again
	// after the suite closed it. It is called only when Durable is true.
	Reopen(t *testing.T) queue.Queue
	// Durable reports whether appended records and settled cursors survive
	// Close and Reopen.
	Durable() bool
}

// Run runs the conformance suite, each case as a subtest.
func Run(t *testing.T, h Harness) {
	cases := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"AppendThenNext", testAppendThenNext},
		{"NextWaitsForAppend", testNextWaitsForAppend},
		{"NextMax", testNextMax},
		{"Targets", testTargets},
		{"SettleAnyOrder", testSettleAnyOrder},
		{"Stats", testStats},
		{"OpenTwice", testOpenTwice},
		{"Bounded", testBounded},
		{"TooLarge", testTooLarge},
		{"NextContext", testNextContext},
		{"Closed", testClosed},
		{"Concurrent", testConcurrent},
		{"Reopen", testReopen},
		{"ReopenNewReader", testReopenNewReader},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, h) })
	}
}

// event returns a track event with messageId id and some properties that
// make its JSON about 200 bytes long, or longer with pad.
func event(id string, pad int) spec.Event {
	e := &spec.Track{
		Event: "Order Completed",
		Properties: map[string]any{
			"revenue": 12.5,
			"sku":     "sku-" + id,
			"pad":     string(make([]byte, pad)),
		},
	}
	e.Type = spec.TypeTrack
	e.MessageID = id
	e.UserID = "user-" + id
	e.ReceivedAt = time.Date(2026, 3, 4, 5, 6, 7, 8000, time.UTC)
	return e
}

func rec(id string, targets ...string) queue.Record {
	return queue.Record{Event: event(id, 0), Targets: targets}
}

func open(t *testing.T, h Harness, maxBytes int64, names ...string) (queue.Queue, []queue.Reader) {
	t.Helper()
	q := h.Open(t, maxBytes)
	t.Cleanup(func() { q.Close() })
	rs, err := q.Open(names)
	if err != nil {
		t.Fatalf("Open(%q): %v", names, err)
	}
	if len(rs) != len(names) {
		t.Fatalf("Open(%q) returned %d readers", names, len(rs))
	}
	return q, rs
}

func appendOK(t *testing.T, q queue.Queue, recs ...queue.Record) []queue.Record {
	t.Helper()
	if err := q.Append(t.Context(), recs); err != nil {
		t.Fatalf("Append: %v", err)
	}
	return recs
}

// read calls Next until it has n records, failing after a while.
func read(t *testing.T, r queue.Reader, n int) []queue.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []queue.Record
	for len(got) < n {
		recs, err := r.Next(ctx, n-len(got))
		if err != nil {
			t.Fatalf("Next after %d of %d records: %v", len(got), n, err)
		}
		got = append(got, recs...)
	}
	return got
}

// readNone checks that Next has nothing more to give now.
func readNone(t *testing.T, r queue.Reader) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	recs, err := r.Next(ctx, 100)
	if len(recs) > 0 {
		t.Fatalf("Next returned %d more records (first Seq %d, messageId %s); want none",
			len(recs), recs[0].Seq, recs[0].Event.Fields().MessageID)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with nothing to read and a cancelled ctx = %v, want context.Canceled", err)
	}
}

func ids(recs []queue.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Event.Fields().MessageID
	}
	return out
}

func seqs(recs []queue.Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

// checkRecord compares a record read back with the one appended.
func checkRecord(t *testing.T, got, want queue.Record) {
	t.Helper()
	gc, wc := got.Event.Fields(), want.Event.Fields()
	if got.Seq != want.Seq || gc.MessageID != wc.MessageID {
		t.Errorf("read Seq %d messageId %s, want Seq %d messageId %s", got.Seq, gc.MessageID, want.Seq, wc.MessageID)
	}
	if got.Size != want.Size || got.Size <= 0 {
		t.Errorf("Seq %d: Size %d, Append set %d", got.Seq, got.Size, want.Size)
	}
	if !got.Appended.Equal(want.Appended) {
		t.Errorf("Seq %d: Appended %v, Append set %v", got.Seq, got.Appended, want.Appended)
	}
	if !gc.ReceivedAt.Equal(wc.ReceivedAt) {
		t.Errorf("Seq %d: event receivedAt %v, want %v", got.Seq, gc.ReceivedAt, wc.ReceivedAt)
	}
	gj, err1 := got.Event.MarshalJSON()
	wj, err2 := want.Event.MarshalJSON()
	if err1 != nil || err2 != nil || string(gj) != string(wj) {
		t.Errorf("Seq %d: event\n got %s\nwant %s", got.Seq, gj, wj)
	}
}

func testAppendThenNext(t *testing.T, h Harness) {
	q, rs := open(t, h, 0, "a")
	before := time.Now()
	first := appendOK(t, q, rec("m1", "a"))
	more := appendOK(t, q, rec("m2", "a"), rec("m3", "a"), rec("m4", "a"))
	want := append(first, more...)
	for i, r := range want {
		if r.Seq == 0 || (i > 0 && r.Seq <= want[i-1].Seq) {
			t.Fatalf("Append set Seqs %v: want them increasing from 1", seqs(want))
		}
		if r.Size <= 0 || r.Appended.Before(before.Add(-time.Second)) {
			t.Fatalf("Append set Size %d, Appended %v", r.Size, r.Appended)
		}
	}
	got := read(t, rs[0], len(want))
	for i := range want {
		checkRecord(t, got[i], want[i])
		if got[i].Redelivered {
			t.Errorf("Seq %d read for the first time is marked Redelivered", got[i].Seq)
		}
	}
	readNone(t, rs[0])
}

func testNextWaitsForAppend(t *testing.T, h Harness) {
	q, rs := open(t, h, 0, "a")
	got := make(chan []queue.Record, 1)
	errc := make(chan error, 1)
	go func() {
		recs, err := rs[0].Next(t.Context(), 10)
		got <- recs
		errc <- err
	}()
	want := appendOK(t, q, rec("w1", "a"))
	recs := <-got
	if err := <-errc; err != nil {
		t.Fatalf("Next: %v", err)
	}
	if len(recs) != 1 {
		t.Fatalf("Next woken by an Append returned %d records, want 1", len(recs))
	}
	checkRecord(t, recs[0], want[0])
}

func testNextMax(t *testing.T, h Harness) {
	q, rs := open(t, h, 0, "a")
	var recs []queue.Record
	for i := range 7 {
		recs = append(recs, rec(fmt.Sprint("x", i), "a"))
	}
	appendOK(t, q, recs...)
	var got []queue.Record
	for len(got) < 7 {
		batch, err := rs[0].Next(t.Context(), 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 || len(batch) > 3 {
			t.Fatalf("Next(ctx, 3) returned %d records", len(batch))
		}
		got = append(got, batch...)
	}
	if !slices.Equal(seqs(got), seqs(recs)) {
		t.Fatalf("read Seqs %v, appended %v", seqs(got), seqs(recs))
	}
}

func testTargets(t *testing.T, h Harness) {
	q, rs := open(t, h, 0, "a", "b", "c")
	all := appendOK(t, q,
		rec("only-a", "a"),
		rec("only-b", "b"),
		rec("a-and-b", "b", "a"),
		rec("not-open", "x"),
		rec("no-target"),
		rec("a-b-c", "a", "c", "b"),
	)
	want := map[int][]string{
		0: {"only-a", "a-and-b", "a-b-c"},
		1: {"only-b", "a-and-b", "a-b-c"},
		2: {"a-b-c"},
	}
	for i, r := range rs {
		got := read(t, r, len(want[i]))
		if !slices.Equal(ids(got), want[i]) {
			t.Errorf("reader %d read %q, want %q", i, ids(got), want[i])
		}
		readNone(t, r)
	}
	if all[0].Seq == 0 || all[5].Seq <= all[0].Seq {
		t.Errorf("Seqs %v", seqs(all))
	}
}

func testSettleAnyOrder(t *testing.T, h Harness) {
	q, rs := open(t, h, 0, "a", "b")
	recs := appendOK(t, q, rec("s1", "a"), rec("s2", "a", "b"), rec("s3", "a"), rec("s4", "a"), rec("s5", "a"))
	s := seqs(recs)
	r := rs[0]
	if c := r.Stats().Cursor; c > s[0] {
		t.Fatalf("cursor %d before anything is settled, want at most %d", c, s[0])
	}
	read(t, r, 5)
	steps := []struct {
		settle     []uint64
		cursor     uint64
		unsettled  int
		oldestOfIx int
	}{
		{[]uint64{s[2], s[0]}, s[1], 3, 1},
		{[]uint64{s[4]}, s[1], 2, 1},
		{[]uint64{s[4], s[0], 999999}, s[1], 2, 1}, // again, and unknown: no change
		{[]uint64{s[1]}, s[3], 1, 3},
	}
	for i, st := range steps {
		r.Settle(st.settle...)
		got := r.Stats()
		if got.Cursor != st.cursor || got.Unsettled != st.unsettled {
			t.Fatalf("step %d: after Settle(%v): cursor %d, unsettled %d; want %d, %d",
				i, st.settle, got.Cursor, got.Unsettled, st.cursor, st.unsettled)
		}
		if !got.Oldest.Equal(recs[st.oldestOfIx].Appended) {
			t.Fatalf("step %d: Oldest %v, want the Appended of Seq %d, %v", i, got.Oldest, s[st.oldestOfIx], recs[st.oldestOfIx].Appended)
		}
	}
	r.Settle(s[3])
	got := r.Stats()
	if got.Cursor <= s[4] || got.Unsettled != 0 || got.Bytes != 0 || !got.Oldest.IsZero() {
		t.Fatalf("all settled: %+v; want cursor past %d, nothing unsettled", got, s[4])
	}
	// b has read nothing: its one record holds its cursor.
	if b := rs[1].Stats(); b.Cursor > s[1] || b.Unsettled != 1 {
		t.Fatalf("reader b: %+v; want cursor at most %d and 1 unsettled", b, s[1])
	}
}

func testStats(t *testing.T, h Harness) {
	q, rs := open(t, h, 0, "a")
	if st := rs[0].Stats(); st.Unsettled != 0 || st.Bytes != 0 || !st.Oldest.IsZero() {
		t.Fatalf("empty queue: %+v", st)
	}
	recs := appendOK(t, q, rec("t1", "a"), rec("t2", "a"))
	st := rs[0].Stats()
	if st.Unsettled != 2 || st.Bytes != int64(recs[0].Size+recs[1].Size) {
		t.Fatalf("two unread records of Size %d and %d: %+v", recs[0].Size, recs[1].Size, st)
	}
	if !st.Oldest.Equal(recs[0].Appended) {
		t.Fatalf("Oldest %v, want the first record's Appended %v", st.Oldest, recs[0].Appended)
	}
	got := read(t, rs[0], 2)
	rs[0].Settle(got[1].Seq)
	if st := rs[0].Stats(); st.Unsettled != 1 || st.Bytes != int64(recs[0].Size) || !st.Oldest.Equal(recs[0].Appended) {
		t.Fatalf("after settling the second: %+v", st)
	}
}

func testOpenTwice(t *testing.T, h Harness) {
	q, _ := open(t, h, 0, "a")
	if _, err := q.Open([]string{"a"}); err == nil {
		t.Fatal("a second Open returned no error")
	}
}

// fill appends Appends of n records of about size bytes each until ErrFull,
// and returns the records appended.
func fill(t *testing.T, q queue.Queue, maxBytes int64, n, pad int) []queue.Record {
	t.Helper()
	var kept []queue.Record
	for i := 0; ; i++ {
		var recs []queue.Record
		for k := range n {
			recs = append(recs, queue.Record{Event: event(fmt.Sprintf("f%d-%d", i, k), pad), Targets: []string{"a"}})
		}
		err := q.Append(t.Context(), recs)
		if errors.Is(err, queue.ErrFull) {
			return kept
		}
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		kept = append(kept, recs...)
		var size int64
		for _, r := range kept {
			size += int64(r.Size)
		}
		if size > 2*maxBytes {
			t.Fatalf("%d bytes of records appended, no ErrFull: want one by about %d", size, maxBytes)
		}
	}
}

func testBounded(t *testing.T, h Harness) {
	const maxBytes = 64 << 10
	q, rs := open(t, h, maxBytes, "a")
	kept := fill(t, q, maxBytes, 3, 500)
	var size int64
	for _, r := range kept {
		size += int64(r.Size)
	}
	if size < maxBytes/4 {
		t.Fatalf("ErrFull after %d bytes of records; the bound is about %d", size, maxBytes)
	}
	// The refused Append stored none of its records.
	got := read(t, rs[0], len(kept))
	if !slices.Equal(ids(got), ids(kept)) {
		t.Fatalf("read %d records, appended %d before ErrFull", len(got), len(kept))
	}
	readNone(t, rs[0])
	// Settling makes room again.
	rs[0].Settle(seqs(got)...)
	if err := q.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	again := appendOK(t, q, queue.Record{Event: event("after", 500), Targets: []string{"a"}})
	if got := read(t, rs[0], 1); got[0].Seq != again[0].Seq {
		t.Fatalf("read Seq %d after making room, want %d", got[0].Seq, again[0].Seq)
	}
}

func testTooLarge(t *testing.T, h Harness) {
	const maxBytes = 32 << 10
	q, rs := open(t, h, maxBytes, "a")
	var recs []queue.Record
	for i := range 2 * maxBytes / 1000 {
		recs = append(recs, queue.Record{Event: event(fmt.Sprint("big", i), 1000), Targets: []string{"a"}})
	}
	if err := q.Append(t.Context(), recs); !errors.Is(err, queue.ErrTooLarge) {
		t.Fatalf("Append of %d records of 1 KB to a queue of %d bytes = %v, want ErrTooLarge", len(recs), maxBytes, err)
	}
	readNone(t, rs[0])
	appendOK(t, q, rec("small", "a"))
	if got := read(t, rs[0], 1); ids(got)[0] != "small" {
		t.Fatalf("read %q", ids(got))
	}
}

func testNextContext(t *testing.T, h Harness) {
	_, rs := open(t, h, 0, "a")
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := rs[0].Next(ctx, 1)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with a cancelled ctx = %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := rs[0].Next(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next past its deadline = %v, want context.DeadlineExceeded", err)
	}
}

func testClosed(t *testing.T, h Harness) {
	q, rs := open(t, h, 0, "a")
	errc := make(chan error, 1)
	go func() {
		_, err := rs[0].Next(t.Context(), 1)
		errc <- err
	}()
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Next during Close = %v, want ErrClosed", err)
	}
	if _, err := rs[0].Next(t.Context(), 1); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
	if err := q.Append(t.Context(), []queue.Record{rec("late", "a")}); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
}

func testConcurrent(t *testing.T, h Harness) {
	const producers, appends, per = 8, 40, 3
	names := []string{"a", "b"}
	q, rs := open(t, h, 0, names...)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range appends {
				var recs []queue.Record
				for k := range per {
					targets := names
					if k == 1 {
						targets = names[:1]
					}
					recs = append(recs, rec(fmt.Sprintf("p%d-%d-%d", p, i, k), targets...))
				}
				if err := q.Append(t.Context(), recs); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	total := map[string]int{"a": producers * appends * per, "b": producers * appends * (per - 1)}
	for i, r := range rs {
		wg.Go(func() {
			settle := make(chan []uint64, 4)
			done := make(chan struct{})
			go func() { // settle from another goroutine, out of order
				defer close(done)
				for s := range settle {
					slices.Reverse(s)
					r.Settle(s...)
					_ = r.Stats()
				}
			}()
			seen := make(map[string]bool)
			var last uint64
			for len(seen) < total[names[i]] {
				recs, err := r.Next(t.Context(), 16)
				if err != nil {
					t.Errorf("Next: %v", err)
					break
				}
				for _, rec := range recs {
					id := rec.Event.Fields().MessageID
					if seen[id] || rec.Seq <= last {
						t.Errorf("reader %s: Seq %d (%s) after Seq %d, seen before: %v", names[i], rec.Seq, id, last, seen[id])
					}
					seen[id], last = true, rec.Seq
				}
				settle <- seqs(recs)
			}
			close(settle)
			<-done
		})
	}
	wg.Wait()
	for i, r := range rs {
		if st := r.Stats(); st.Unsettled != 0 || st.Bytes != 0 {
			t.Errorf("reader %s after settling everything: %+v", names[i], st)
		}
	}
}

func testReopen(t *testing.T, h Harness) {
	if !h.Durable() {
		t.Skip("not durable")
	}
	q := h.Open(t, 0)
	rs, err := q.Open([]string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	var recs []queue.Record
	for i := range 10 {
		recs = append(recs, rec(fmt.Sprint("r", i), "a", "b"))
	}
	appendOK(t, q, recs...)
	got := read(t, rs[0], 10)
	// a settles 0-3 and 5: its cursor is the 5th record's Seq.
	rs[0].Settle(got[0].Seq, got[1].Seq, got[2].Seq, got[3].Seq, got[5].Seq)
	read(t, rs[1], 2) // b reads two and settles none
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q = h.Reopen(t)
	t.Cleanup(func() { q.Close() })
	rs, err = q.Open([]string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if c := rs[0].Stats().Cursor; c != recs[4].Seq {
		t.Errorf("a's cursor after reopening: %d, want %d", c, recs[4].Seq)
	}
	again := read(t, rs[0], 6)
	if !slices.Equal(seqs(again), seqs(recs[4:])) {
		t.Errorf("a re-read Seqs %v, want %v (from its cursor on)", seqs(again), seqs(recs[4:]))
	}
	for i, r := range again {
		checkRecord(t, r, recs[4+i])
	}
	for _, r := range again[:1] {
		if !r.Redelivered {
			t.Errorf("Seq %d, handed out before Close and not settled, is not marked Redelivered", r.Seq)
		}
	}
	readNone(t, rs[0])
	if got := read(t, rs[1], 10); !slices.Equal(seqs(got), seqs(recs)) {
		t.Errorf("b re-read Seqs %v, want all %v", seqs(got), seqs(recs))
	}
	readNone(t, rs[1])
	// Seqs go on from where they were.
	next := appendOK(t, q, rec("after", "a"))
	if next[0].Seq <= recs[9].Seq {
		t.Errorf("first Seq after reopening %d, want more than %d", next[0].Seq, recs[9].Seq)
	}
	if got := read(t, rs[0], 1); got[0].Seq != next[0].Seq || got[0].Redelivered {
		t.Errorf("read %+v, want Seq %d, not Redelivered", got[0], next[0].Seq)
	}
}

func testReopenNewReader(t *testing.T, h Harness) {
	if !h.Durable() {
		t.Skip("not durable")
	}
	q := h.Open(t, 0)
	if _, err := q.Open([]string{"a"}); err != nil {
		t.Fatal(err)
	}
	old := appendOK(t, q, rec("old", "a", "b"))
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = h.Reopen(t)
	t.Cleanup(func() { q.Close() })
	rs, err := q.Open([]string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	// b is new: it starts at the end of the log.
	readNone(t, rs[1])
	if got := read(t, rs[0], 1); got[0].Seq != old[0].Seq {
		t.Errorf("a read Seq %d, want %d", got[0].Seq, old[0].Seq)
	}
	now := appendOK(t, q, rec("new", "b"))
	if got := read(t, rs[1], 1); got[0].Seq != now[0].Seq {
		t.Errorf("b read Seq %d, want %d", got[0].Seq, now[0].Seq)
	}
}
