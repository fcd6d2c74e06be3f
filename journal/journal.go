package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opentrackhq/opentrack/queue"
)

// ErrLocked is wrapped by the error of [Open] when another process, or
// another Journal in this one, has the directory open.
var ErrLocked = errors.New("journal directory is locked")

const lockFile = "LOCK"

// Journal is an embedded, durable [queue.Queue]: an append-only log of
// segment files in one directory. Its methods are safe for concurrent use.
type Journal struct {
	dir  string
	opts Options
	log  *slog.Logger
	lock *os.File

	reqs       chan *request // to the writer goroutine
	quit       chan struct{} // closed by Close
	writerDone chan struct{}
	w          *writer

	dirty       chan struct{} // a cursor moved, or a segment may be deletable
	persistDone chan struct{}
	bg          sync.WaitGroup // spare preparation

	rec recovery // what Open found on disk

	mu       sync.Mutex
	segs     []*segment // oldest first; the last one is the writer's
	next     uint64     // Seq of the next record; all below are committed
	bytes    int64      // size of the segments
	tail     tail
	notify   chan struct{} // closed and replaced when records are committed
	readers  []*reader
	byName   map[string]*reader
	opened   bool
	closed   bool
	broken   error // a failed fdatasync: nothing more is appended
	corrupt  int
	seen     map[corruptAt]bool // bad stretches already reported
	syncs    uint64
	appended uint64
	// spareReady says the spare file exists; sparing that it is being
	// made (see spare.go).
	spareReady, sparing bool
	prewritten          bool // the active segment was written ahead

	persistMu sync.Mutex        // serialises cursor writes and segment deletion
	saved     map[string]uint64 // the cursors last written; guarded by persistMu
	savedNext uint64

	closeOnce sync.Once
	closeErr  error
}

var (
	_ queue.Queue = (*Journal)(nil)
	_ queue.Ender = (*Journal)(nil)
)

// Open opens the journal in dir, creating dir if it does not exist, and
// recovers what a crash left: a torn last record is cut off, a corrupt
// record elsewhere is skipped (logged, with its file and offset, and
// counted in [Stats]). It locks dir: a second Open of the same directory,
// from this process or another, fails with an error wrapping [ErrLocked]
// until the first Journal is closed. A directory that cannot be used (not a
// directory, not writable) is an error here, not later. nil opts means the
// defaults.
//
// Besides a directory it cannot use, Open refuses one thing only: a
// segment written by a newer format version, which this build cannot read.
func Open(dir string, opts *Options) (*Journal, error) {
	return open(dir, opts, nil)
}

// open is Open with the writer's syncer given, for tests; nil means the
// platform's.
func open(dir string, opts *Options, s groupSyncer) (*Journal, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", dir, err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("journal: open %s: not a directory", dir)
	}
	lock, err := lockDir(dir, filepath.Join(dir, lockFile))
	if err != nil {
		return nil, err
	}
	j := &Journal{
		dir:         dir,
		opts:        o,
		log:         o.Logger,
		lock:        lock,
		reqs:        make(chan *request),
		quit:        make(chan struct{}),
		writerDone:  make(chan struct{}),
		dirty:       make(chan struct{}, 1),
		persistDone: make(chan struct{}),
		notify:      make(chan struct{}),
		tail:        newTail(o.TailRecords, o.TailBytes),
		seen:        map[corruptAt]bool{},
	}
	if err := j.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	f, err := j.openActive()
	if err != nil {
		lock.Close()
		return nil, err
	}
	if s == nil {
		ls, err := newSyncer(j.log, f)
		if err != nil {
			ls.close()
			f.Close()
			lock.Close()
			return nil, fmt.Errorf("journal: open %s: fdatasync %s: %w", dir, f.Name(), err)
		}
		s = ls
	}
	j.w = &writer{j: j, syncer: s, f: f, seg: j.segs[len(j.segs)-1], next: j.next}
	go j.w.loop()
	return j, nil
}

// openActive opens the newest segment for appending, creating the first
// one in an empty directory.
func (j *Journal) openActive() (*os.File, error) {
	if len(j.segs) == 0 {
		f, s, err := createSegment(j.dir, j.next, "")
		if err != nil {
			return nil, err
		}
		j.segs = append(j.segs, s)
		j.bytes += s.size
		return f, nil
	}
	s := j.segs[len(j.segs)-1]
	f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", j.dir, err)
	}
	return f, nil
}

// Append stores recs, all or none, and returns once they are written and
// fdatasynced. Concurrent Appends share one write and one fdatasync (group
// commit). It sets each record's Seq, Size (the event's JSON length) and
// Appended; records with no Targets are dropped and keep Seq 0. The
// journal keeps the events (readers hand them out while they are in the
// in-memory tail): the caller must not change them afterwards.
//
// It returns queue.ErrFull when the records would take the journal past
// Options.MaxBytes, or the disk is full; queue.ErrTooLarge when they alone
// would, or when one record's payload passes 1 MiB (an event accepted
// over HTTP is at most 32 KB); queue.ErrClosed after Close; ctx's error if ctx ends first, in
// which case the records may or may not have been stored. Append must not
// be called before [Journal.Open].
func (j *Journal) Append(ctx context.Context, recs []queue.Record) error {
	j.mu.Lock()
	closed, opened, broken := j.closed, j.opened, j.broken
	j.mu.Unlock()
	switch {
	case closed:
		return queue.ErrClosed
	case !opened:
		return errors.New("journal: Append before Open")
	case broken != nil:
		return brokenError(broken)
	}
	req, err := newRequest(recs)
	if err != nil || len(req.items) == 0 {
		return err
	}
	if int64(req.size)+segmentHeaderSize > j.opts.MaxBytes {
		return fmt.Errorf("journal: %d records of %d bytes, MaxBytes %d: %w",
			len(req.items), req.size, j.opts.MaxBytes, queue.ErrTooLarge)
	}
	select {
	case j.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-j.quit:
		return queue.ErrClosed
	}
	select {
	case err := <-req.done:
		if err == nil {
			for k, it := range req.items {
				recs[it.index].Seq = req.first + uint64(k)
			}
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Open returns the readers of the integrations called names, in that order;
// see [queue.Queue]. A reader resumes at its saved cursor and reads again,
// marked Redelivered, what follows it. A name the cursors file does not
// know starts at the end of the log; if there was no cursors file but
// there were segments, every reader starts at the oldest retained record. A
// saved cursor whose name is not among names is dropped, with a log line,
// and no longer holds segments. Open writes the cursors file before it
// returns.
func (j *Journal) Open(names []string) ([]queue.Reader, error) {
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		switch {
		case name == "":
			return nil, errors.New("journal: Open: empty reader name")
		case len(name) > maxNameLen:
			return nil, fmt.Errorf("journal: Open: reader name longer than %d bytes", maxNameLen)
		case seen[name]:
			return nil, fmt.Errorf("journal: Open: reader %q named twice", name)
		}
		seen[name] = true
	}
	j.mu.Lock()
	switch {
	case j.closed:
		j.mu.Unlock()
		return nil, queue.ErrClosed
	case j.opened:
		j.mu.Unlock()
		return nil, errors.New("journal: Open called twice")
	}
	j.opened = true
	j.byName = make(map[string]*reader, len(names))
	out := make([]queue.Reader, len(names))
	for i, name := range names {
		r := j.newReader(name)
		j.readers = append(j.readers, r)
		j.byName[name] = r
		out[i] = r
	}
	j.mu.Unlock()
	for name, c := range j.rec.saved {
		if !seen[name] {
			// Its undelivered records are given up: say so loudly, with
			// how many there may be, since a forgotten variable at one
			// restart is enough.
			j.log.Warn("journal: an integration with a saved cursor is not configured; the records not yet delivered to it are given up",
				"dir", j.dir, "reader", name, "cursor", c, "recordsAfterCursor", j.next-min(c, j.next))
		}
	}
	go j.persistLoop()
	if err := j.persist(); err != nil {
		return nil, err
	}
	return out, nil
}

// Sync writes the readers' cursors to the cursors file now, and deletes the
// segments every cursor has passed. Appended records need no Sync: Append
// returns once they are on disk.
func (j *Journal) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return queue.ErrClosed
	}
	return j.persist()
}

// Close waits for the Append in progress, stops the writer, writes the
// cursors, and releases the directory. Readers' Next calls return
// queue.ErrClosed. Close is idempotent.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		j.mu.Lock()
		j.closed = true
		opened := j.opened
		j.mu.Unlock()
		close(j.quit)
		<-j.writerDone
		j.bg.Wait()
		var errs []error
		if opened {
			<-j.persistDone
			errs = append(errs, j.persist())
		}
		errs = append(errs, j.w.trim(), j.w.f.Close())
		for _, r := range j.readers {
			r.close()
		}
		errs = append(errs, j.lock.Close())
		if err := errors.Join(errs...); err != nil {
			j.closeErr = fmt.Errorf("journal: close %s: %w", j.dir, err)
		}
	})
	return j.closeErr
}

// Stats describe the journal.
type Stats struct {
	// Bytes is the size of the segments up to their last record, what
	// Options.MaxBytes bounds. The active segment's file, written ahead,
	// and the spare take up to 2*SegmentBytes more.
	Bytes int64
	// Segments counts the segment files.
	Segments int
	// Next is the Seq the next record will get.
	Next uint64
	// Oldest is when the oldest record still on disk was appended; zero
	// when there is none.
	Oldest time.Time
	// Appended counts the records appended since Open.
	Appended uint64
	// Syncs counts the fdatasyncs of appends since Open: Appended/Syncs
	// is how many records one sync carried on average.
	Syncs uint64
	// Corrupt counts the corrupt records and stretches skipped since
	// Open, by recovery and by readers.
	Corrupt int
	// Truncated is how many bytes Open cut from the end of segments: a
	// torn last write, an Append a crash interrupted, or space written
	// ahead.
	Truncated int64
	// Prewritten says that the active segment was written ahead to its
	// full size (a recycled segment, or zeros), so that an append's
	// fdatasync flushes data only; otherwise the file grows with each
	// append, and each fdatasync also commits its size.
	Prewritten bool
	// Readers holds each reader's stats by name; their lag is Unsettled
	// records and time.Since(Oldest).
	Readers map[string]queue.ReaderStats
}

// Stats returns the journal's size, age and readers' backlogs.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	s := Stats{
		Bytes:      j.bytes,
		Segments:   len(j.segs),
		Next:       j.next,
		Appended:   j.appended,
		Syncs:      j.syncs,
		Corrupt:    j.corrupt,
		Truncated:  j.rec.truncated,
		Prewritten: j.prewritten,
		Readers:    make(map[string]queue.ReaderStats, len(j.readers)),
	}
	s.Oldest = j.oldestLocked()
	readers := j.readers
	j.mu.Unlock()
	for _, r := range readers {
		s.Readers[r.name] = r.Stats()
	}
	return s
}

// oldestLocked returns when the oldest record kept was appended, or zero.
// j.mu is held.
func (j *Journal) oldestLocked() time.Time {
	for _, seg := range j.segs {
		if seg.first != 0 {
			return seg.appended
		}
	}
	return time.Time{}
}

// End returns the Seq of the newest record appended, in this process or
// before a restart; 0 when none was. It implements [queue.Ender].
func (j *Journal) End() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.next - 1
}

// Dir returns the journal's directory.
func (j *Journal) Dir() string { return j.dir }

// corruptAt identifies a bad stretch, so that it is reported once.
type corruptAt struct {
	path string
	off  int64
}

// reportCorrupt logs and counts a bad stretch the first time it is met.
func (j *Journal) reportCorrupt(path string, e *errCorrupt) {
	j.mu.Lock()
	key := corruptAt{path, e.off}
	first := !j.seen[key]
	if first {
		j.seen[key] = true
		j.corrupt++
	}
	j.mu.Unlock()
	if first {
		j.log.Warn("journal: skipped a corrupt record", "file", path, "offset", e.off, "reason", e.reason)
	}
}
