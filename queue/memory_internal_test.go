package queue

import (
	"context"
	"fmt"
	"testing"

	"github.com/opentrackhq/opentrack/spec"
)

// TestMemorySettledRecordsLeaveBehindAnUnsettledOne: one record waiting for
// a retry must not keep the records settled after it, or their events.
func TestMemorySettledRecordsLeaveBehindAnUnsettledOne(t *testing.T) {
	q := NewMemory(&MemoryOptions{Default: Limit{Events: 10, Bytes: 1 << 20}})
	rs, err := q.Open([]string{"A"})
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0].(*memReader)
	ctx := context.Background()
	appendOne := func(i int) uint64 {
		recs := []Record{{Event: &spec.Track{Common: spec.Common{Type: spec.TypeTrack, MessageID: fmt.Sprint(i)}}, Targets: []string{"A"}, Size: 100}}
		if err := q.Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
		got, err := r.Next(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		return got[0].Seq
	}
	head := appendOne(-1) // never settled
	for i := range 5000 {
		r.Settle(appendOne(i))
	}
	q.mu.Lock()
	n, events := len(r.pending), 0
	for _, e := range r.pending {
		if e.rec.Event != nil {
			events++
		}
	}
	q.mu.Unlock()
	if events != 1 || n > 2100 {
		t.Errorf("after 5000 settled behind one unsettled: %d entries, %d events held; want the one event and a compacted list", n, events)
	}
	if s := r.Stats(); s.Unsettled != 1 || s.Cursor != head || s.Bytes != 100 {
		t.Errorf("stats %+v", s)
	}
	r.Settle(head)
	if s := r.Stats(); s.Unsettled != 0 || s.Bytes != 0 {
		t.Errorf("after settling the head: %+v", s)
	}
}
