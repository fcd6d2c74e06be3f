package journal

import "github.com/opentrackhq/opentrack/queue"

// tail is a ring of the newest committed records, in Seq order, kept in
// memory so that readers that keep up never read the disk.
type tail struct {
	recs    []queue.Record
	head, n int
}

func newTail(capacity int) tail { return tail{recs: make([]queue.Record, capacity)} }

// push adds the newest record, dropping the oldest when the ring is full.
func (t *tail) push(r queue.Record) {
	if t.n == len(t.recs) {
		t.recs[t.head] = r
		t.head = (t.head + 1) % len(t.recs)
		return
	}
	t.recs[(t.head+t.n)%len(t.recs)] = r
	t.n++
}

// start returns the Seq of the oldest record in the tail, or next when it
// is empty.
func (t *tail) start(next uint64) uint64 {
	if t.n == 0 {
		return next
	}
	return t.recs[t.head].Seq
}

// at returns the i-th oldest record.
func (t *tail) at(i int) *queue.Record { return &t.recs[(t.head+i)%len(t.recs)] }
