package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

// request is one Append on its way to the writer.
type request struct {
	items []item
	size  int        // of the items' frames together
	first uint64     // Seq of the first record; set by the writer
	done  chan error // buffered: the writer never waits on it
}

// item is one record of a request.
type item struct {
	index int // in the caller's slice
	// frame is the record's frame, its header not yet sealed. Each record
	// has a buffer of its own, as its event keeps its JSON in it: an
	// event handed out does not hold the memory of a whole batch.
	frame []byte
	crc   uint32       // of the payload
	rec   queue.Record // what the tail hands out: Seq is set on commit
}

// newRequest encodes recs as frames, in the caller's goroutine, so that
// producers marshal and checksum in parallel and the writer only copies. It
// sets Appended and Size on recs.
func newRequest(recs []queue.Record) (*request, error) {
	now := time.Now()
	req := &request{done: make(chan error, 1)}
	head := make([]byte, 0, 256) // the frame's and the record's headers, for each record in turn
	for i := range recs {
		r := &recs[i]
		if len(r.Targets) == 0 {
			continue // nobody would read it
		}
		if r.Event == nil {
			return nil, fmt.Errorf("journal: record %d: no event", i)
		}
		targets := slices.Clone(r.Targets)
		slices.Sort(targets)
		targets = slices.Compact(targets)
		var err error
		if head, err = queue.AppendRecord(appendFrameHeader(head[:0], 0), targets, now, r.Event.Fields(), r.TraceParent, nil); err != nil {
			return nil, fmt.Errorf("journal: record %d: %w", i, err)
		}
		// The event's JSON follows, written in place: the tail hands out a
		// copy of the event that keeps it, so that the integrations that
		// write it again need not encode it. head is passed full, so the
		// JSON's append moves the headers to a new array, the frame's own:
		// for a decoded event one allocation, sized by the encoder's
		// estimate.
		start := len(head)
		var e spec.Event
		var frame []byte
		if e, frame, err = spec.AppendWithJSON(head[:len(head):len(head)], r.Event); err != nil {
			return nil, fmt.Errorf("journal: record %d: %w", i, err)
		}
		size := len(frame) - start
		n := len(frame) - frameHeaderSize
		if n > maxPayload {
			return nil, fmt.Errorf("journal: record %d: %d bytes, at most %d: %w", i, n, maxPayload, queue.ErrTooLarge)
		}
		binary.LittleEndian.PutUint32(frame[4:], uint32(n))
		r.Appended, r.Size = now, size
		req.size += len(frame)
		req.items = append(req.items, item{
			index: i,
			frame: frame,
			crc:   payloadCRC(frame[frameHeaderSize:]),
			rec:   queue.Record{Event: e, Targets: targets, Size: size, Appended: now, TraceParent: r.TraceParent},
		})
	}
	return req, nil
}

// writer is the one goroutine that writes segments: it takes every request
// waiting, writes them with one write, fdatasyncs once and releases them
// all (group commit). While it syncs, the next group queues up.
type writer struct {
	j      *Journal
	syncer groupSyncer
	f      *os.File // the active segment, opened for writing
	seg    *segment
	room   int64  // the size f was written to ahead (a spare); 0 if none
	next   uint64 // Seq of the next record
	buf    []byte
	batch  []*request
	group  []*request
}

// groupSyncer syncs the active segment after each group's write: a
// *syncer, or a test's.
type groupSyncer interface {
	sync(f *os.File) error
	close()
}

// maxBatchBytes bounds one write, and so the writer's buffer.
const maxBatchBytes = 8 << 20

// appendModeBytes is how much an active segment that grows as it is
// written (no spare was ready) takes before a spare is made for it to move
// to: enough that short-lived journals never write one.
const appendModeBytes = 1 << 20

func (w *writer) loop() {
	defer close(w.j.writerDone)
	defer w.syncer.close()
	for {
		var r *request
		select {
		case r = <-w.j.reqs:
		case <-w.j.quit:
			return
		}
		w.batch = append(w.batch[:0], r)
		n := r.size
	drain:
		for n < maxBatchBytes {
			select {
			case r := <-w.j.reqs:
				w.batch = append(w.batch, r)
				n += r.size
			default:
				break drain
			}
		}
		w.commit(w.batch)
		clear(w.batch)
	}
}

// commit writes the requests of a batch that fit, rolling to a new segment
// where the active one is full, and answers every request.
func (w *writer) commit(batch []*request) {
	j := w.j
	j.mu.Lock()
	broken, used, spare := j.broken, j.bytes, j.spareReady
	j.mu.Unlock()
	if broken != nil {
		err := brokenError(broken)
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	if spare && w.room == 0 && w.seg.first != 0 {
		// Appending to a file that grows: move to the spare now rather
		// than when the segment is full.
		if err := w.roll(); err != nil {
			j.log.Warn("journal: starting a segment in the spare", "dir", j.dir, "err", err)
		}
	}
	w.buf, w.group = w.buf[:0], w.group[:0]
	rollAfter := false
	for i, r := range batch {
		need := int64(r.size)
		pending := int64(len(w.buf))
		limit := j.opts.SegmentBytes
		if w.room > 0 {
			limit = min(limit, w.room) // a smaller recycled file
		}
		roll := w.seg.size+pending > segmentHeaderSize && w.seg.size+pending+need > limit
		extra := need
		if roll {
			extra += segmentHeaderSize
		}
		if used+pending+extra > j.opts.MaxBytes {
			r.done <- fmt.Errorf("journal: %d bytes on disk, MaxBytes %d: %w", used+pending, j.opts.MaxBytes, queue.ErrFull)
			// Once readers pass the active segment it can only be
			// deleted if it is no longer active.
			rollAfter = true
			continue
		}
		if roll {
			used += w.flush()
			if err := w.brokenErr(); err != nil {
				// The sync failed: this request and the rest of the
				// batch get no sync that could be trusted.
				for _, r := range batch[i:] {
					r.done <- err
				}
				return
			}
			if err := w.roll(); err != nil {
				r.done <- err
				continue
			}
			used += segmentHeaderSize
		}
		r.first = w.next
		for k, it := range r.items {
			var flags byte
			if k == len(r.items)-1 {
				flags = flagLast
			}
			sealFrame(it.frame, w.next, flags, it.crc)
			w.buf = append(w.buf, it.frame...)
			w.next++
		}
		w.group = append(w.group, r)
	}
	w.flush()
	if rollAfter && w.seg.first != 0 && w.brokenErr() == nil {
		if err := w.roll(); err != nil {
			j.log.Error("journal: starting a new segment", "dir", j.dir, "err", err)
		}
	}
}

// flush writes and syncs the group of requests in buf, publishes their
// records and releases them. It returns the bytes it added to the journal.
func (w *writer) flush() int64 {
	group := w.group
	if len(group) == 0 {
		return 0
	}
	j := w.j
	n := int64(len(w.buf))
	defer func() { w.buf, w.group = w.buf[:0], w.group[:0] }()
	if _, err := w.f.WriteAt(w.buf, w.seg.size); err != nil {
		w.next = group[0].first
		if errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("%w: %w", queue.ErrFull, err)
		}
		err = fmt.Errorf("journal: write %s: %w", w.seg.path, err)
		// Cut what the failed write may have left, so that the next write
		// starts at a frame boundary.
		if terr := w.f.Truncate(w.seg.size); terr != nil {
			w.fail(fmt.Errorf("journal: truncate %s after a failed write: %w", w.seg.path, terr))
		}
		for _, r := range group {
			r.done <- err
		}
		return 0
	}
	if err := w.syncer.sync(w.f); err != nil {
		// After a failed fdatasync the kernel may have dropped the dirty
		// pages: what is on disk is unknown until recovery reads it.
		err = fmt.Errorf("journal: fdatasync %s: %w", w.seg.path, err)
		w.fail(err)
		for _, r := range group {
			r.done <- err
		}
		return 0
	}
	j.mu.Lock()
	s := w.seg
	if s.first == 0 {
		s.first, s.appended = group[0].first, group[0].items[0].rec.Appended
	}
	s.last = w.next - 1
	s.size += n
	j.bytes += n
	j.next = w.next
	j.syncs++
	for _, r := range group {
		for k := range r.items {
			rec := r.items[k].rec
			rec.Seq = r.first + uint64(k)
			j.tail.push(rec)
			for _, t := range rec.Targets {
				if rd := j.byName[t]; rd != nil {
					rd.added(rec.Seq, rec.Size)
				}
			}
			j.appended++
		}
	}
	close(j.notify)
	j.notify = make(chan struct{})
	j.mu.Unlock()
	for _, r := range group {
		r.done <- nil
	}
	if s.size > j.opts.SegmentBytes/2 || (w.room == 0 && s.size > appendModeBytes) {
		j.prepareSpare() // for the next roll
	}
	return n
}

// brokenErr returns the error Appends get once a sync has failed, or nil.
func (w *writer) brokenErr() error {
	w.j.mu.Lock()
	defer w.j.mu.Unlock()
	if w.j.broken == nil {
		return nil
	}
	return brokenError(w.j.broken)
}

func brokenError(broken error) error {
	return fmt.Errorf("%w (appends stopped until restart)", broken)
}

// fail stops appends for good: only a restart, whose recovery reads the
// files again, can resume them.
func (w *writer) fail(err error) {
	w.j.mu.Lock()
	if w.j.broken == nil {
		w.j.broken = err
	}
	w.j.mu.Unlock()
	w.j.log.Error("journal: appends stopped until restart", "dir", w.j.dir, "err", err)
}

// roll closes the active segment and begins the next, from the spare when
// there is one.
func (w *writer) roll() error {
	j := w.j
	if err := w.trim(); err != nil {
		return err
	}
	f, s, room, err := w.create()
	if err != nil {
		return err
	}
	j.mu.Lock()
	j.segs = append(j.segs, s)
	j.bytes += s.size
	j.prewritten = room > 0
	j.mu.Unlock()
	old := w.f
	w.f, w.seg, w.room = f, s, room
	if err := old.Close(); err != nil {
		j.log.Warn("journal: closing a full segment", "dir", j.dir, "err", err)
	}
	j.markDirty() // the old segment may already be deletable
	return nil
}

// create makes the next segment, from the spare if there is one, and
// returns the size the spare was written to (0 without one).
func (w *writer) create() (*os.File, *segment, int64, error) {
	j := w.j
	if spare := j.takeSpare(); spare != "" {
		f, s, err := createSegment(j.dir, w.next, spare)
		if err == nil {
			fi, err := f.Stat()
			if err == nil {
				j.log.Debug("journal: began a segment in the spare", "file", s.path, "bytes", fi.Size())
				return f, s, fi.Size(), nil
			}
			f.Close()
			return nil, nil, 0, fmt.Errorf("journal: %w", err)
		}
		j.log.Warn("journal: using the spare segment", "dir", j.dir, "err", err)
	}
	f, s, err := createSegment(j.dir, w.next, "")
	return f, s, 0, err
}

// trim cuts the active segment's file to its records, when it was written
// to a larger size ahead (a spare): the file a roll or Close leaves ends
// with its last record.
func (w *writer) trim() error {
	fi, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if fi.Size() <= w.seg.size {
		return nil
	}
	if err := w.f.Truncate(w.seg.size); err != nil {
		return fmt.Errorf("journal: truncate %s: %w", w.seg.path, err)
	}
	if err := fdatasync(w.f); err != nil {
		return fmt.Errorf("journal: truncate %s: %w", w.seg.path, err)
	}
	return nil
}
