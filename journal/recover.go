package journal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/opentrackhq/opentrack/queue"
)

// recovery is what Open found on disk.
type recovery struct {
	next       uint64            // Seq of the next record
	oldest     uint64            // Seq of the oldest record on disk; 0 if none
	saved      map[string]uint64 // the cursors file's cursors
	hadCursors bool              // there was a readable cursors file
	// names holds, for each target name seen, the records at or after
	// where that name's reader will start.
	names     map[string]*backlog
	truncated int64
}

type backlog struct {
	count int
	bytes int64
}

// starts reports whether the reader called name, when opened, will count
// the record seq as unsettled.
func (rec *recovery) starts(name string, seq uint64) bool {
	if c, ok := rec.saved[name]; ok {
		return seq >= c
	}
	// A new name starts at the end, unless no cursors were saved at all:
	// then every reader starts at the oldest record.
	return !rec.hadCursors
}

// recover reads the cursors file and every segment: it checks each frame,
// cuts a torn or unfinished last write, skips corrupt records, and sets the
// journal's segments, next Seq and the readers' starting backlogs.
func (j *Journal) recover() error {
	if err := os.Remove(filepath.Join(j.dir, cursorsTemp)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: open %s: %w", j.dir, err)
	}
	st, ok, err := readCursors(j.dir)
	if err != nil {
		j.log.Warn("journal: ignoring an unreadable cursors file; every reader restarts at the oldest record",
			"dir", j.dir, "err", err)
	}
	j.rec = recovery{saved: st.cursors, hadCursors: ok, names: map[string]*backlog{}}
	segs, err := listSegments(j.dir)
	if err != nil {
		return err
	}
	var last uint64
	for i, s := range segs {
		if err := j.recoverSegment(s, i == len(segs)-1, &last); err != nil {
			return err
		}
		j.bytes += s.size
		if j.rec.oldest == 0 && s.first != 0 {
			j.rec.oldest = s.first
		}
	}
	next := max(last+1, st.next, 1)
	if len(segs) > 0 {
		next = max(next, segs[len(segs)-1].base)
	}
	for _, c := range st.cursors {
		next = max(next, c)
	}
	j.segs, j.next, j.rec.next = segs, next, next
	if !ok && j.rec.oldest != 0 {
		j.log.Warn("journal: no cursors file; every reader starts at the oldest record", "dir", j.dir, "seq", j.rec.oldest)
	}
	return nil
}

// pendingRecord is a record of an Append whose last record is not read yet.
type pendingRecord struct {
	seq      uint64
	targets  []string
	size     int
	appended time.Time
}

// recoverSegment checks one segment and sets its size, first and last
// Seq. last is the Seq of the last good record before it, and is moved on.
func (j *Journal) recoverSegment(s *segment, isLast bool, last *uint64) error {
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("journal: open %s: %w", s.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("journal: open %s: %w", s.path, err)
	}
	size := fi.Size()
	hdr := make([]byte, segmentHeaderSize)
	n, _ := f.ReadAt(hdr, 0)
	reason, err := checkSegmentHeader(s.path, hdr[:n], s.base)
	if err != nil {
		return err
	}
	if reason != "" {
		// The frames carry their own Seq and checksum; the header is
		// rewritten from the file name.
		j.reportCorrupt(s.path, &errCorrupt{off: 0, reason: "segment header: " + reason + "; rewritten"})
		if _, err := f.WriteAt(encodeSegmentHeader(s.base), 0); err != nil {
			return fmt.Errorf("journal: rewrite header of %s: %w", s.path, err)
		}
		if err := fdatasync(f); err != nil {
			return fmt.Errorf("journal: rewrite header of %s: %w", s.path, err)
		}
		size = max(size, segmentHeaderSize)
	}

	prev := max(*last, s.base-min(s.base, 1))
	fr := newFrameReader(f, segmentHeaderSize, size, prev)
	fr.onCorrupt = func(e *errCorrupt) { j.reportCorrupt(s.path, e) }
	var pending []pendingRecord
	complete := int64(segmentHeaderSize) // end of the last record that ends an Append
	for {
		fm, err := fr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("journal: read %s: %w", s.path, err)
		}
		h, raw, err := queue.DecodeRecordHeader(fm.payload)
		if err != nil {
			fr.skip(fm, err.Error())
			continue
		}
		pending = append(pending, pendingRecord{seq: fm.seq, targets: h.Targets, size: len(raw), appended: h.Appended})
		if fm.flags&flagLast != 0 {
			j.keep(s, pending, last)
			pending = pending[:0]
			complete = fm.end()
		}
	}

	cut := fr.tail
	if isLast && len(pending) > 0 {
		// The last Append was not written whole: it was never
		// acknowledged, and is all or nothing.
		cut = complete
		j.log.Info("journal: dropped the records of an Append that a crash interrupted",
			"file", s.path, "offset", complete, "records", len(pending))
	} else {
		j.keep(s, pending, last)
	}
	if cut >= 0 {
		if isLast {
			j.log.Info("journal: truncated the torn end of the journal", "file", s.path, "offset", cut, "bytes", size-cut)
		} else {
			j.reportCorrupt(s.path, &errCorrupt{off: cut, reason: fmt.Sprintf("no valid record in the last %d bytes; truncated", size-cut)})
		}
		if err := f.Truncate(cut); err != nil {
			return fmt.Errorf("journal: truncate %s: %w", s.path, err)
		}
		if err := fdatasync(f); err != nil {
			return fmt.Errorf("journal: truncate %s: %w", s.path, err)
		}
		j.rec.truncated += size - cut
		size = cut
	}
	s.size = size
	return nil
}

// keep counts recovered records into their segment and the readers'
// starting backlogs.
func (j *Journal) keep(s *segment, recs []pendingRecord, last *uint64) {
	for _, p := range recs {
		if s.first == 0 {
			s.first, s.appended = p.seq, p.appended
		}
		s.last, *last = p.seq, p.seq
		for i, t := range p.targets {
			if slices.Contains(p.targets[:i], t) || !j.rec.starts(t, p.seq) {
				continue
			}
			b := j.rec.names[t]
			if b == nil {
				b = &backlog{}
				j.rec.names[t] = b
			}
			b.count++
			b.bytes += int64(p.size)
		}
	}
}
