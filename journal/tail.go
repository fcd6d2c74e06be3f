package journal

import "github.com/opentrackhq/opentrack/queue"

// tail is a ring of the newest committed records, in Seq order, kept in
// memory so that readers that keep up never read the disk. It is bounded by
// records and by the memory their events hold, so that large events cannot
// make it hold more than maxBytes, and it lets go of the records that every
// reader has read.
type tail struct {
	recs     []queue.Record
	head, n  int
	bytes    int64
	maxBytes int64
}

func newTail(capacity int, maxBytes int64) tail {
	return tail{recs: make([]queue.Record, capacity), maxBytes: maxBytes}
}

// memOf is what a record's event holds in memory, as spec counts it.
func memOf(r *queue.Record) int64 {
	if r.Event == nil {
		return 0
	}
	return int64(max(r.Size, r.Event.Fields().Size()))
}

// push adds the newest record, dropping the oldest ones when the ring is
// full or holds more than maxBytes.
func (t *tail) push(r queue.Record) {
	if t.n == len(t.recs) {
		t.drop()
	}
	t.recs[(t.head+t.n)%len(t.recs)] = r
	t.n++
	t.bytes += memOf(&r)
	for t.n > 1 && t.bytes > t.maxBytes {
		t.drop()
	}
}

// drop forgets the oldest record.
func (t *tail) drop() {
	t.bytes -= memOf(&t.recs[t.head])
	t.recs[t.head] = queue.Record{}
	t.head = (t.head + 1) % len(t.recs)
	t.n--
}

// dropBefore forgets the records before seq.
func (t *tail) dropBefore(seq uint64) {
	for t.n > 0 && t.recs[t.head].Seq < seq {
		t.drop()
	}
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
