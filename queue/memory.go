package queue

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Defaults of [Limit] in a [Memory] queue.
const (
	// DefaultMaxEvents bounds the unsettled events of one integration.
	DefaultMaxEvents = 10000
	// DefaultMaxBytes bounds the memory those events hold, as
	// spec.Common.Size counts it: 64 MiB per integration, so that a
	// collector with a few integrations fits a small container.
	DefaultMaxBytes = 64 << 20
)

// Limit bounds what one integration's reader holds unsettled. Zero fields
// mean the defaults.
type Limit struct {
	// Events bounds the number of records. Default DefaultMaxEvents.
	Events int
	// Bytes bounds their Size added up. Default DefaultMaxBytes.
	Bytes int64
}

func (l Limit) withDefaults() Limit {
	if l.Events <= 0 {
		l.Events = DefaultMaxEvents
	}
	if l.Bytes <= 0 {
		l.Bytes = DefaultMaxBytes
	}
	return l
}

// MemoryOptions configures a [Memory] queue. The zero value is usable.
type MemoryOptions struct {
	// Default bounds each integration without an entry in Limits.
	Default Limit
	// Limits bounds the integrations it names.
	Limits map[string]Limit
}

// Memory is a Queue in memory: Append returns as soon as the records are
// linked in, and a crash loses everything it holds. Each integration's
// unsettled records are bounded by count and by bytes ([Limit]); an Append
// that would pass a target's bound fails whole with ErrFull, so a slow
// destination fills only its own part of the queue.
//
// Events are shared between the readers that hold them, not copied.
type Memory struct {
	opts MemoryOptions

	mu      sync.Mutex
	next    uint64 // Seq of the next record
	readers map[string]*memReader
	order   []*memReader // the readers in the order Open named them
	opened  bool
	closed  bool
	done    chan struct{}
}

// NewMemory returns an empty Memory queue. opts may be nil.
func NewMemory(opts *MemoryOptions) *Memory {
	q := &Memory{next: 1, readers: map[string]*memReader{}, done: make(chan struct{})}
	if opts != nil {
		q.opts = *opts
	}
	return q
}

var _ Queue = (*Memory)(nil)

// Open implements [Queue].
func (q *Memory) Open(names []string) ([]Reader, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, ErrClosed
	}
	if q.opened {
		return nil, errors.New("queue: Open called twice")
	}
	q.opened = true
	out := make([]Reader, len(names))
	for i, name := range names {
		if _, dup := q.readers[name]; dup {
			return nil, fmt.Errorf("queue: duplicate reader name %q", name)
		}
		lim, ok := q.opts.Limits[name]
		if !ok {
			lim = q.opts.Default
		}
		r := &memReader{q: q, index: i, limit: lim.withDefaults(), notify: make(chan struct{}, 1)}
		q.readers[name] = r
		q.order = append(q.order, r)
		out[i] = r
	}
	return out, nil
}

// Append implements [Queue]. It never blocks on a reader.
func (q *Memory) Append(ctx context.Context, recs []Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	// Room first, for every target, so that it is all or nothing. need is
	// indexed like q.order; a few readers fit on the stack.
	var buf [8]Limit
	need := buf[:0]
	if len(q.order) > len(buf) {
		need = make([]Limit, 0, len(q.order))
	}
	need = need[:len(q.order)]
	for i := range recs {
		r := &recs[i]
		if r.Size <= 0 {
			r.Size = sizeOf(r)
		}
		for _, name := range r.Targets {
			if rd := q.readers[name]; rd != nil {
				need[rd.index].Events++
				need[rd.index].Bytes += int64(r.Size)
			}
		}
	}
	for i, rd := range q.order {
		n := need[i]
		switch {
		case n.Events == 0:
		case n.Events > rd.limit.Events || n.Bytes > rd.limit.Bytes:
			return ErrTooLarge
		case len(rd.pending)-rd.settledInPending+n.Events > rd.limit.Events || rd.bytes+n.Bytes > rd.limit.Bytes:
			return ErrFull
		}
	}
	for i := range recs {
		r := &recs[i]
		r.Seq, r.Appended = q.next, now
		q.next++
		for _, name := range r.Targets {
			if rd := q.readers[name]; rd != nil {
				rd.pending = append(rd.pending, entry{rec: *r})
				rd.bytes += int64(r.Size)
			}
		}
	}
	for i, rd := range q.order {
		if need[i].Events > 0 {
			select {
			case rd.notify <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// sizeOf is a record's size when Append was not told it.
func sizeOf(r *Record) int {
	if r.Event != nil {
		if n := r.Event.Fields().Size(); n > 0 {
			return n
		}
	}
	return 512
}

// Sync implements [Queue]; a Memory queue has nothing to persist.
func (q *Memory) Sync(ctx context.Context) error { return ctx.Err() }

// Close implements [Queue]. Records not settled are dropped.
func (q *Memory) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
	return nil
}

type entry struct {
	rec     Record
	settled bool
}

// memReader holds one integration's unsettled records in Seq order: those
// before read have been returned by Next. Settled records leave once every
// record before them is settled too.
type memReader struct {
	q      *Memory
	index  int // in q.order
	limit  Limit
	notify chan struct{}

	// Guarded by q.mu.
	pending          []entry
	read             int // pending[:read] have been returned by Next
	settledInPending int
	bytes            int64 // Size of the unsettled records
}

func (r *memReader) Next(ctx context.Context, max int) ([]Record, error) {
	if max <= 0 {
		max = 1
	}
	for {
		r.q.mu.Lock()
		if r.q.closed {
			r.q.mu.Unlock()
			return nil, ErrClosed
		}
		if n := min(len(r.pending)-r.read, max); n > 0 {
			out := make([]Record, n)
			for i := range out {
				out[i] = r.pending[r.read+i].rec
			}
			r.read += n
			r.q.mu.Unlock()
			return out, nil
		}
		r.q.mu.Unlock()
		select {
		case <-r.notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.q.done:
		}
	}
}

func (r *memReader) Settle(seqs ...uint64) {
	r.q.mu.Lock()
	defer r.q.mu.Unlock()
	for _, seq := range seqs {
		i := sort.Search(r.read, func(i int) bool { return r.pending[i].rec.Seq >= seq })
		if i == r.read || r.pending[i].rec.Seq != seq || r.pending[i].settled {
			continue // not handed out, or settled before
		}
		r.bytes -= int64(r.pending[i].rec.Size)
		// Keep only the Seq: the event goes now, even while an older
		// record is unsettled.
		r.pending[i] = entry{rec: Record{Seq: seq}, settled: true}
		r.settledInPending++
	}
	// Drop the settled prefix.
	k := 0
	for k < r.read && r.pending[k].settled {
		k++
	}
	if k > 0 {
		clear(r.pending[:k])
		r.pending = r.pending[k:]
		r.read -= k
		r.settledInPending -= k
	}
	// Settled records behind an unsettled one (a retry waiting for an
	// hour) cost an entry each; compact once they are most of the list.
	if r.settledInPending > 1024 && r.settledInPending > len(r.pending)/2 {
		kept := r.pending[:0:0]
		read := 0
		for i, e := range r.pending {
			if e.settled {
				continue
			}
			if i < r.read {
				read++
			}
			kept = append(kept, e)
		}
		r.pending, r.read, r.settledInPending = kept, read, 0
	}
}

func (r *memReader) Stats() ReaderStats {
	r.q.mu.Lock()
	defer r.q.mu.Unlock()
	s := ReaderStats{Cursor: r.q.next, Unsettled: len(r.pending) - r.settledInPending, Bytes: r.bytes}
	if len(r.pending) > 0 {
		s.Cursor = r.pending[0].rec.Seq
		s.Oldest = r.pending[0].rec.Appended
	}
	return s
}
