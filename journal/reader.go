package journal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

// scanLimit bounds how many bytes of the log one read from disk looks at,
// so that a reader whose records are rare does not hold its lock for a
// whole segment.
const scanLimit = 4 << 20

// readAheadBytes bounds the memory the events a reader reads ahead from
// disk hold (as spec counts it), whatever their number: large events,
// which decode to many times their size, fill it sooner.
const readAheadBytes = 8 << 20

// reader is one integration's [queue.Reader].
//
// Its position, pos, is the next Seq it looks at: every record below it
// that targets the integration is settled, handed out (out) or read ahead
// from disk (ahead). A reader at or past the start of the in-memory tail
// takes records from there; one behind it reads the segments, ReadAhead
// records at a time. Memory is the tail, shared, plus each reader's read
// ahead and its handed-out-unsettled list: it does not grow with the
// backlog on disk.
type reader struct {
	j    *Journal
	name string
	// redeliverBelow is the Seq of the first record appended since Open:
	// those below may have been handed out before a restart.
	redeliverBelow uint64

	// readMu is held by Next (and by Stats' look ahead) while it reads.
	// The fields below it are used only while holding it.
	readMu  sync.Mutex
	fr      *frameReader
	file    *os.File
	fileSeg *segment
	frPos   uint64 // the pos fr stands at: all frames before fr.off are below it

	mu        sync.Mutex
	pos       uint64         // written holding mu and, but by added, readMu
	ahead     []queue.Record // read from disk, not yet handed out
	out       []handed       // handed out, in Seq order, from outHead
	outHead   int
	outLive   int   // how many in out are not settled
	unsettled int   // records for this reader not settled: out, ahead, unread
	bytes     int64 // their Size, added up
}

// handed is a record Next returned and that is not yet known settled.
type handed struct {
	seq      uint64
	size     int
	appended time.Time
	settled  bool
}

var _ queue.Reader = (*reader)(nil)

// newReader returns the reader of name at its saved cursor. j.mu is held.
func (j *Journal) newReader(name string) *reader {
	r := &reader{j: j, name: name, redeliverBelow: j.rec.next}
	if c, ok := j.rec.saved[name]; ok {
		r.pos = c
	} else if !j.rec.hadCursors {
		r.pos = j.rec.oldest
	} else {
		r.pos = j.rec.next
	}
	r.pos = max(r.pos, 1)
	if b := j.rec.names[name]; b != nil {
		r.unsettled, r.bytes = b.count, b.bytes
	}
	return r
}

// added counts a committed record for this reader. j.mu is held.
func (r *reader) added(seq uint64, size int) {
	r.mu.Lock()
	if r.unsettled == r.outLive+len(r.ahead) {
		// Nothing before it is for this reader: its cursor moves here,
		// never back from the end where it stood.
		r.pos = max(r.pos, seq)
	}
	r.unsettled++
	r.bytes += int64(size)
	r.mu.Unlock()
}

// Next returns up to limit records for this reader, in Seq order, waiting
// until there is one, ctx ends (its error) or the journal is closed
// (queue.ErrClosed). Records appended before Open are marked Redelivered.
// A limit below 1 means 1.
func (r *reader) Next(ctx context.Context, limit int) ([]queue.Record, error) {
	limit = max(limit, 1)
	r.readMu.Lock()
	defer r.readMu.Unlock()
	j := r.j
	for {
		j.mu.Lock()
		if j.closed {
			j.mu.Unlock()
			return nil, queue.ErrClosed
		}
		notify := j.notify
		r.mu.Lock()
		if len(r.ahead) > 0 {
			n := min(limit, len(r.ahead))
			recs := r.handOut(r.ahead[:n])
			m := copy(r.ahead, r.ahead[n:])
			clear(r.ahead[m:])
			r.ahead = r.ahead[:m]
			r.mu.Unlock()
			j.mu.Unlock()
			return recs, nil
		}
		if r.unsettled == r.outLive {
			// Nothing unread is for this reader: skip to the end.
			r.pos = max(r.pos, j.next)
		}
		if r.pos >= j.tail.start(j.next) {
			recs := r.fromTail(limit)
			r.mu.Unlock()
			j.trimTail()
			j.mu.Unlock()
			// Caught up: let go of the segment read last, which the
			// journal may delete meanwhile.
			r.closeFile()
			if len(recs) > 0 {
				return recs, nil
			}
			select {
			case <-notify:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-j.quit:
				return nil, queue.ErrClosed
			}
		}
		r.mu.Unlock()
		j.mu.Unlock()
		n, err := r.fill()
		if err != nil {
			return nil, err
		}
		if n == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// trimTail drops from the tail the records every reader has read: they
// are held in memory by the readers that still need them, and a reader
// going back to one reads it from disk. j.mu is held.
func (j *Journal) trimTail() {
	low := j.next
	for _, r := range j.readers {
		r.mu.Lock()
		low = min(low, r.pos)
		r.mu.Unlock()
	}
	j.tail.dropBefore(low)
}

// fromTail hands out up to limit records from the in-memory tail, from pos
// on. j.mu and r.mu are held.
func (r *reader) fromTail(limit int) []queue.Record {
	t := &r.j.tail
	i := sort.Search(t.n, func(i int) bool { return t.at(i).Seq >= r.pos })
	var got []queue.Record
	for ; i < t.n && len(got) < limit; i++ {
		if rec := t.at(i); slices.Contains(rec.Targets, r.name) {
			got = append(got, *rec)
		}
	}
	if i < t.n {
		r.pos = t.at(i).Seq
	} else {
		r.pos = r.j.next
	}
	return r.handOut(got)
}

// handOut records recs as handed out and returns them, marked. r.mu is
// held.
func (r *reader) handOut(recs []queue.Record) []queue.Record {
	out := make([]queue.Record, len(recs))
	for i, rec := range recs {
		rec.Redelivered = rec.Seq < r.redeliverBelow
		out[i] = rec
		r.out = append(r.out, handed{seq: rec.Seq, size: rec.Size, appended: rec.Appended})
		r.outLive++
	}
	return out
}

// fill reads the next records for this reader from disk into ahead: at most
// ReadAhead of them, looking at no more than scanLimit bytes, within one
// segment. It returns how many it read. readMu is held.
func (r *reader) fill() (int, error) {
	j := r.j
	j.mu.Lock()
	r.mu.Lock()
	pos := r.pos
	r.mu.Unlock()
	i := slices.IndexFunc(j.segs, func(s *segment) bool { return s.last >= pos })
	if i < 0 {
		// Nothing on disk at or after pos.
		r.mu.Lock()
		r.pos = max(r.pos, j.next)
		r.mu.Unlock()
		j.mu.Unlock()
		return 0, nil
	}
	seg, end, segLast := j.segs[i], j.segs[i].size, j.segs[i].last
	isLast, next := i == len(j.segs)-1, j.next
	j.mu.Unlock()

	if r.fileSeg != seg {
		r.closeFile()
		f, err := os.Open(seg.path)
		if errors.Is(err, os.ErrNotExist) {
			r.lost(seg, segLast)
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("journal: read %s: %w", seg.path, err)
		}
		r.file, r.fileSeg = f, seg
	}
	if r.fr == nil {
		r.fr = newFrameReader(nil, 0, 0, 0)
	}
	if r.frPos != pos || r.fr.r != r.file {
		r.fr.reset(r.file, segmentHeaderSize, end, seg.base-min(seg.base, 1))
	}
	r.fr.end = end
	r.fr.onCorrupt = func(e *errCorrupt) { j.reportCorrupt(seg.path, e) }

	var got []queue.Record
	var dropped int
	var droppedBytes int64
	scanned := 0
	var held int64 // memory the decoded events hold
	for len(got) < j.opts.ReadAhead && scanned < scanLimit && held < readAheadBytes {
		f, err := r.fr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("journal: read %s: %w", seg.path, err)
		}
		scanned += frameHeaderSize + len(f.payload)
		if f.seq < pos {
			continue
		}
		pos = f.seq + 1
		h, raw, err := queue.DecodeRecordHeader(f.payload)
		if err != nil {
			r.fr.skip(f, err.Error())
			continue
		}
		if !slices.Contains(h.Targets, r.name) {
			continue
		}
		e, err := spec.DecodeStored(raw, h.ReceivedAt) // raw is what the event's MarshalJSON wrote
		if err != nil {
			// Counted when it was appended or recovered: uncount it.
			r.fr.skip(f, err.Error())
			dropped++
			droppedBytes += int64(len(raw))
			continue
		}
		held += int64(e.Fields().Size())
		got = append(got, queue.Record{
			Seq:         f.seq,
			Event:       e,
			Targets:     h.Targets,
			Size:        len(raw),
			Appended:    h.Appended,
			TraceParent: h.TraceParent,
		})
	}
	if r.fr.off >= r.fr.end {
		if isLast {
			pos = max(pos, next)
		} else {
			pos = max(pos, segLast+1)
		}
	}
	r.mu.Lock()
	r.ahead = append(r.ahead, got...)
	r.pos = pos
	r.unsettled -= dropped
	r.bytes -= droppedBytes
	r.mu.Unlock()
	r.frPos = pos
	return len(got), nil
}

// lost handles a segment file that vanished while still listed: deleted
// from outside the journal. Its records cannot be read; the reader moves
// past them.
func (r *reader) lost(seg *segment, last uint64) {
	j := r.j
	j.mu.Lock()
	listed := slices.Contains(j.segs, seg)
	j.mu.Unlock()
	if listed {
		j.log.Error("journal: a segment file is missing; its records are lost", "file", seg.path, "reader", r.name)
		r.mu.Lock()
		r.pos = max(r.pos, last+1)
		r.mu.Unlock()
	}
	// Otherwise the journal deleted it: pos is behind every cursor, and
	// the next look finds a later segment.
}

// Settle marks records Next returned as done with; see [queue.Reader].
// Seqs that are not handed out, or already settled, are ignored.
func (r *reader) Settle(seqs ...uint64) {
	r.mu.Lock()
	live := r.out[r.outHead:]
	for _, seq := range seqs {
		i, ok := slices.BinarySearchFunc(live, seq, func(h handed, s uint64) int {
			switch {
			case h.seq < s:
				return -1
			case h.seq > s:
				return 1
			}
			return 0
		})
		if !ok || live[i].settled {
			continue
		}
		live[i].settled = true
		r.outLive--
		r.unsettled--
		r.bytes -= int64(live[i].size)
	}
	for r.outHead < len(r.out) && r.out[r.outHead].settled {
		r.outHead++
	}
	if r.outHead > 64 && r.outHead > len(r.out)/2 {
		n := copy(r.out, r.out[r.outHead:])
		r.out = r.out[:n]
		r.outHead = 0
	}
	r.mu.Unlock()
	r.j.markDirty()
}

// cursorLocked returns the Seq below which every record for this reader
// is settled. j.mu and r.mu are held.
func (r *reader) cursorLocked(next uint64) uint64 {
	switch {
	case r.outLive > 0:
		return r.out[r.outHead].seq
	case len(r.ahead) > 0:
		return r.ahead[0].Seq
	case r.unsettled == 0:
		return next
	}
	return r.pos
}

// Stats returns the reader's cursor and backlog. Oldest is exact when the
// oldest unsettled record is handed out, read ahead or in the tail; for a
// reader that has not read that far, Stats reads ahead a little if no Next
// is reading, and otherwise gives the time of the first record of the
// segment it is in, which is never later than the truth.
func (r *reader) Stats() queue.ReaderStats {
	st, ok := r.stats()
	if ok {
		return st
	}
	if r.readMu.TryLock() {
		r.j.mu.Lock()
		closed := r.j.closed
		r.j.mu.Unlock()
		if !closed {
			_, _ = r.fill() // an error shows again to Next
		}
		r.readMu.Unlock()
		if st, ok = r.stats(); ok {
			return st
		}
	}
	j := r.j
	j.mu.Lock()
	r.mu.Lock()
	for _, s := range j.segs {
		if s.last >= r.pos {
			st.Oldest = s.appended
			break
		}
	}
	r.mu.Unlock()
	j.mu.Unlock()
	return st
}

// stats returns the reader's stats; ok is false when Oldest is unknown.
func (r *reader) stats() (queue.ReaderStats, bool) {
	j := r.j
	j.mu.Lock()
	defer j.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	st := queue.ReaderStats{Cursor: r.cursorLocked(j.next), Unsettled: r.unsettled, Bytes: r.bytes}
	switch {
	case r.outLive > 0:
		st.Oldest = r.out[r.outHead].appended
	case len(r.ahead) > 0:
		st.Oldest = r.ahead[0].Appended
	case r.unsettled == 0:
	case r.pos >= j.tail.start(j.next):
		t := &j.tail
		for i := sort.Search(t.n, func(i int) bool { return t.at(i).Seq >= r.pos }); i < t.n; i++ {
			if rec := t.at(i); slices.Contains(rec.Targets, r.name) {
				st.Oldest = rec.Appended
				break
			}
		}
	default:
		return st, false
	}
	return st, true
}

func (r *reader) closeFile() {
	if r.file != nil {
		r.file.Close()
		r.file, r.fileSeg, r.frPos = nil, nil, 0
	}
}

// close releases the reader's file once no Next is reading.
func (r *reader) close() {
	r.readMu.Lock()
	r.closeFile()
	r.readMu.Unlock()
}
