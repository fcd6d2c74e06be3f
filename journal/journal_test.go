package journal

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"weak"

	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

func TestOptions(t *testing.T) {
	for _, c := range []struct {
		opts  Options
		field string
	}{
		{Options{MaxBytes: -1}, "MaxBytes"},
		{Options{SegmentBytes: -1}, "SegmentBytes"},
		{Options{TailRecords: -1}, "TailRecords"},
		{Options{ReadAhead: -1}, "ReadAhead"},
		{Options{CursorInterval: -1}, "CursorInterval"},
		{Options{SegmentBytes: 100}, "SegmentBytes"},
		{Options{MaxBytes: 1 << 20, SegmentBytes: 1<<19 + 1}, "SegmentBytes"},
	} {
		_, err := Open(t.TempDir(), &c.opts)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "journal.Options."+c.field {
			t.Errorf("Open with %+v: %v, want a ConfigError for %s", c.opts, err, c.field)
		}
	}
	o, err := (*Options)(nil).withDefaults()
	if err != nil || o.MaxBytes != DefaultMaxBytes || o.SegmentBytes != DefaultSegmentBytes ||
		o.TailRecords != DefaultTailRecords || o.CursorInterval != DefaultCursorInterval || o.Logger == nil {
		t.Errorf("nil Options: %+v, %v", o, err)
	}
	o, _ = (&Options{MaxBytes: 1 << 20}).withDefaults()
	if o.SegmentBytes != 1<<16 {
		t.Errorf("SegmentBytes for MaxBytes 1 MiB = %d, want MaxBytes/16", o.SegmentBytes)
	}
}

func TestUnusableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirs := []string{file, filepath.Join(file, "sub")}
	if runtime.GOOS == "linux" {
		dirs = append(dirs, "/proc/self/journal") // not writable, even by root
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, ro)
	}
	for _, dir := range dirs {
		j, err := Open(dir, &Options{Logger: quiet()})
		if err == nil {
			j.Close()
			t.Errorf("Open(%s): no error", dir)
			continue
		}
		if !strings.HasPrefix(err.Error(), "journal: ") || !strings.Contains(err.Error(), dir) {
			t.Errorf("Open(%s) = %q; want an error naming the directory", dir, err)
		}
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir, nil)
	_, err := Open(dir, &Options{Logger: quiet()})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), lockFile) {
		t.Fatalf("second Open = %v; want ErrLocked naming the directory and the lock file", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2, err := Open(dir, &Options{Logger: quiet()})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	j2.Close()
}

func TestAppendBeforeOpen(t *testing.T) {
	j := openJournal(t, t.TempDir(), nil)
	err := j.Append(context.Background(), []queue.Record{{Event: track("x", 0), Targets: []string{"a"}}})
	if err == nil {
		t.Fatal("Append before Open: no error")
	}
	if _, err := j.Open([]string{"a", "a"}); err == nil {
		t.Fatal("Open with a name twice: no error")
	}
}

// failingSyncer syncs with fdatasync until told to fail.
type failingSyncer struct{ failing atomic.Bool }

func (s *failingSyncer) sync(f *os.File) error {
	if s.failing.Load() {
		return syscall.EIO
	}
	return fdatasync(f)
}

func (*failingSyncer) close() {}

// TestFailedSyncStopsAppends: an Append whose sync fails gets the error,
// and every Append after it is refused until a restart.
func TestFailedSyncStopsAppends(t *testing.T) {
	dir := t.TempDir()
	s := &failingSyncer{}
	j, err := open(dir, &Options{Logger: quiet()}, s)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	rs := openReaders(t, j, "a")
	appendN(t, j, 1, "before-", "a")
	s.failing.Store(true)
	err = j.Append(context.Background(), []queue.Record{{Event: track("failed", 0), Targets: []string{"a"}}})
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "fdatasync") {
		t.Fatalf("Append whose sync fails = %v, want the fdatasync's EIO", err)
	}
	s.failing.Store(false)
	err = j.Append(context.Background(), []queue.Record{{Event: track("refused", 0), Targets: []string{"a"}}})
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "appends stopped until restart") {
		t.Fatalf("Append after a failed sync = %v, want it refused", err)
	}
	if got := readN(t, rs[0], 1); got[0].Event.Fields().MessageID != "before-0" {
		t.Fatalf("read %q", got[0].Event.Fields().MessageID)
	}
	if err := j.Close(); err != nil {
		t.Logf("Close after a failed sync: %v", err)
	}

	j = openJournal(t, dir, nil)
	rs = openReaders(t, j, "a")
	appendN(t, j, 1, "after-", "a")
	var ids []string
	for !slices.Contains(ids, "after-0") {
		for _, r := range readN(t, rs[0], 1) {
			ids = append(ids, r.Event.Fields().MessageID)
		}
	}
	// The failed Append's record was written before its sync failed: it
	// may be read back (the sender, answered an error, sends it again).
	if ids[0] != "before-0" || slices.Contains(ids, "refused") {
		t.Errorf("after the restart the reader read %q", ids)
	}
}

// gatedSyncer holds the first sync until gate is closed and fails the
// second. Only the writer calls it.
type gatedSyncer struct {
	calls int
	gate  chan struct{}
}

func (s *gatedSyncer) sync(f *os.File) error {
	s.calls++
	switch s.calls {
	case 1:
		<-s.gate
	case 2:
		return syscall.EIO
	}
	return fdatasync(f)
}

func (*gatedSyncer) close() {}

// TestFailedSyncStopsItsBatch: when a batch rolls to a new segment and the
// sync of the part written before the roll fails, the requests after it
// are refused, not written and synced into the next segment.
func TestFailedSyncStopsItsBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &gatedSyncer{gate: make(chan struct{})}
		// Two 30 KB records fill a 64 KiB segment: a third rolls.
		j, err := open(t.TempDir(), &Options{SegmentBytes: 64 << 10, Logger: quiet()}, s)
		if err != nil {
			t.Fatal(err)
		}
		openReaders(t, j, "a")
		appendOne := func(id string) error {
			return j.Append(context.Background(), []queue.Record{{Event: track(id, 30<<10), Targets: []string{"a"}}})
		}
		first := make(chan error, 1)
		go func() { first <- appendOne("first") }()
		synctest.Wait() // the writer waits in the first sync
		errs := make(chan error, 3)
		for i := range 3 {
			go func() { errs <- appendOne(fmt.Sprint("batch-", i)) }()
		}
		synctest.Wait() // the three wait for the writer: one batch
		close(s.gate)
		if err := <-first; err != nil {
			t.Fatalf("first Append: %v", err)
		}
		var failed, stopped int
		for range 3 {
			switch err := <-errs; {
			case err == nil:
				t.Error("an Append of the batch succeeded after its batch's sync failed")
			case strings.Contains(err.Error(), "appends stopped until restart"):
				stopped++
			case errors.Is(err, syscall.EIO):
				failed++
			default:
				t.Errorf("Append: %v", err)
			}
		}
		j.Close()
		if failed != 1 || stopped != 2 || s.calls != 2 {
			t.Errorf("%d Appends failed in the sync, %d were refused after it, %d syncs; want 1, 2, 2", failed, stopped, s.calls)
		}
	})
}

// TestEnd: End is the Seq of the newest record, before and after a
// restart; 0 on an empty journal.
func TestEnd(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir, nil)
	if e := j.End(); e != 0 {
		t.Errorf("End of an empty journal = %d", e)
	}
	openReaders(t, j, "a")
	recs := appendN(t, j, 3, "m", "a")
	last := recs[len(recs)-1].Seq
	if e := j.End(); e != last || last == 0 {
		t.Errorf("End = %d, the last Seq appended %d", e, last)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if e := openJournal(t, dir, nil).End(); e != last {
		t.Errorf("End after a restart = %d, want %d", e, last)
	}
}

func TestGroupCommit(t *testing.T) {
	j := openJournal(t, t.TempDir(), nil)
	rs := openReaders(t, j, "a")
	const producers, each = 64, 10
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() { appendN(t, j, each, fmt.Sprintf("p%d-", p), "a") })
	}
	wg.Wait()
	st := j.Stats()
	if st.Appended != producers*each || st.Syncs == 0 || st.Syncs >= st.Appended {
		t.Fatalf("Appended %d with %d syncs; want concurrent Appends to share syncs", st.Appended, st.Syncs)
	}
	t.Logf("%d records, %d syncs: %.1f records per sync", st.Appended, st.Syncs, float64(st.Appended)/float64(st.Syncs))
	if got := readN(t, rs[0], producers*each); len(got) != producers*each {
		t.Fatal(len(got))
	}
}

func TestStats(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir, &Options{SegmentBytes: 4 << 10, MaxBytes: 1 << 20})
	rs := openReaders(t, j, "a", "b")
	recs := appendN(t, j, 30, "s", "a")
	st := j.Stats()
	onDisk := func() (n int64) {
		for _, f := range segmentFiles(t, dir) {
			n += fileSize(t, f)
		}
		return n
	}
	// The active segment may be written ahead (a spare); Close trims it.
	if st.Bytes > onDisk() || st.Segments != len(segmentFiles(t, dir)) || st.Segments < 2 {
		t.Errorf("Stats Bytes %d in %d segments; on disk %d bytes in %d files", st.Bytes, st.Segments, onDisk(), len(segmentFiles(t, dir)))
	}
	defer func() {
		j.Close()
		if n := onDisk(); n != st.Bytes {
			t.Errorf("Stats Bytes %d; after Close %d bytes on disk", st.Bytes, n)
		}
	}()
	if !st.Oldest.Equal(recs[0].Appended) || st.Next != recs[29].Seq+1 || st.Appended != 30 {
		t.Errorf("Stats %+v", st)
	}
	if a := st.Readers["a"]; a.Unsettled != 30 || !a.Oldest.Equal(recs[0].Appended) {
		t.Errorf("reader a: %+v", a)
	}
	if b := st.Readers["b"]; b.Unsettled != 0 || b.Cursor != st.Next {
		t.Errorf("reader b, for which there is nothing: %+v, want its cursor at %d", b, st.Next)
	}
	_ = rs
}

// Size and Oldest are what the metrics gauges and /stats call: they answer
// from the journal's own counters, without making a reader that is behind
// read ahead from disk.
func TestSizeAndOldestAreCheap(t *testing.T) {
	j := openJournal(t, t.TempDir(), &Options{TailRecords: 4})
	rs := openReaders(t, j, "a")
	recs := appendN(t, j, 200, "m", "a") // the tail keeps 4: reader a reads the rest from disk
	r := rs[0].(*reader)
	ahead := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.ahead)
	}
	size, oldest := j.Size(), j.Oldest()
	if n := ahead(); n != 0 {
		t.Errorf("Size and Oldest made the reader read %d records ahead", n)
	}
	st := j.Stats() // Stats does ask the readers
	if size != st.Bytes || size == 0 {
		t.Errorf("Size %d, Stats Bytes %d", size, st.Bytes)
	}
	if !oldest.Equal(recs[0].Appended) || !oldest.Equal(st.Oldest) {
		t.Errorf("Oldest %v, first record appended %v, Stats Oldest %v", oldest, recs[0].Appended, st.Oldest)
	}
	if n := ahead(); n == 0 {
		t.Errorf("Stats left the reader's read-ahead empty: the check above cannot fail")
	}
}

// A reader that read a backlog from disk and then caught up with the tail
// closes the segment it read last, so that a deleted segment's space is
// not held by an open file.
func TestCaughtUpReaderClosesItsSegment(t *testing.T) {
	j := openJournal(t, t.TempDir(), &Options{TailRecords: 4})
	rs := openReaders(t, j, "a")
	appendN(t, j, 50, "m", "a") // the tail keeps 4: reader a reads the rest from disk
	r := rs[0].(*reader)
	open := func() bool {
		r.readMu.Lock()
		defer r.readMu.Unlock()
		return r.file != nil
	}
	readN(t, r, 10)
	if !open() {
		t.Fatal("reading from disk left no segment open: the check below cannot fail")
	}
	readN(t, r, 40)
	appendN(t, j, 1, "n", "a")
	readN(t, r, 1) // from the tail
	if open() {
		t.Error("a reader that caught up still holds its last segment open")
	}
}

func TestTornTail(t *testing.T) {
	for _, c := range []struct {
		name string
		tear func(frames []byte, ends []int) []byte
	}{
		{"half a frame", func(b []byte, ends []int) []byte { return b[:ends[0]/2] }},
		{"half a header", func(b []byte, ends []int) []byte { return b[:frameHeaderSize/2] }},
		// Two whole records of a three-record Append, and half the third:
		// the Append was never acknowledged, and goes as a whole.
		{"unfinished Append", func(b []byte, ends []int) []byte { return b[:ends[1]+5] }},
		{"Append without its last record", func(b []byte, ends []int) []byte { return b[:ends[1]] }},
		{"zeros", func(b []byte, ends []int) []byte { return make([]byte, 4096) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			j := openJournal(t, dir, nil)
			rs := openReaders(t, j, "a")
			want := appendN(t, j, 5, "m", "a")
			readN(t, rs[0], 2)
			j.Close()
			seg := segmentFiles(t, dir)[0]
			size := fileSize(t, seg)

			frames, ends := testFrames(t, want[4].Seq+1, "torn", 3)
			torn := c.tear(frames, ends)
			f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(torn)
			f.Close()

			var logs logBuffer
			j = openJournal(t, dir, &Options{Logger: logs.logger()})
			if got := fileSize(t, seg); got != size {
				t.Errorf("segment is %d bytes after recovery, want %d", got, size)
			}
			if st := j.Stats(); st.Truncated != int64(len(torn)) || st.Corrupt != 0 || st.Next != want[4].Seq+1 {
				t.Errorf("Stats %+v; want %d bytes truncated, nothing corrupt", st, len(torn))
			}
			if !strings.Contains(logs.String(), "truncated") {
				t.Errorf("nothing logged about the truncation:\n%s", logs.String())
			}
			rs = openReaders(t, j, "a")
			got := readN(t, rs[0], 5)
			if !slices.Equal(messageIDs(got), messageIDs(want)) {
				t.Errorf("read %q, want %q", messageIDs(got), messageIDs(want))
			}
			if rest := readRest(t, rs[0]); len(rest) != 0 {
				t.Errorf("read %q past the acknowledged records", messageIDs(rest))
			}
			more := appendN(t, j, 2, "after", "a")
			j.Close()

			j = openJournal(t, dir, nil)
			rs = openReaders(t, j, "a")
			got = readN(t, rs[0], 7)
			if !slices.Equal(messageIDs(got), messageIDs(append(want, more...))) {
				t.Errorf("after a second reopening read %q", messageIDs(got))
			}
		})
	}
}

// testFrames returns n sealed frames of one Append from Seq first on, and
// the offset where each ends.
func testFrames(t *testing.T, first uint64, prefix string, n int) ([]byte, []int) {
	t.Helper()
	var recs []queue.Record
	for i := range n {
		recs = append(recs, queue.Record{Event: track(fmt.Sprint(prefix, i), 200), Targets: []string{"a"}})
	}
	req, err := newRequest(recs)
	if err != nil {
		t.Fatal(err)
	}
	var frames []byte
	var ends []int
	for k, it := range req.items {
		var flags byte
		if k == n-1 {
			flags = flagLast
		}
		sealFrame(it.frame, first+uint64(k), flags, it.crc)
		frames = append(frames, it.frame...)
		ends = append(ends, len(frames))
	}
	return frames, ends
}

// TestRecordsOfARequestHaveBuffersOfTheirOwn checks that an event the tail
// hands out, which keeps its JSON in its record's frame, holds that frame
// alone in memory, not the frames of every other record of its batch.
func TestRecordsOfARequestHaveBuffersOfTheirOwn(t *testing.T) {
	var recs []queue.Record
	for i := range 100 {
		recs = append(recs, queue.Record{Event: track(fmt.Sprint("own-", i), 600), Targets: []string{"a"}})
	}
	req, err := newRequest(recs)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	frames := make([]weak.Pointer[byte], len(req.items))
	for k, it := range req.items {
		total += len(it.frame)
		frames[k] = weak.Make(&it.frame[len(it.frame)-1])
	}
	if total != req.size {
		t.Errorf("the frames hold %d bytes, the request counts %d", total, req.size)
	}
	const keep = 50
	kept := req.items[keep].rec.Event
	req, recs = nil, nil
	runtime.GC()
	for k, p := range frames {
		if alive := p.Value() != nil; alive != (k == keep) {
			t.Errorf("record %d's frame in memory: %v; want only record %d's, whose event is kept", k, alive, keep)
		}
	}
	if _, err := kept.MarshalJSON(); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(kept)
}

// writesNothing is an Event type of another package whose MarshalJSON
// writes nothing.
type writesNothing struct{ spec.Track }

func (*writesNothing) MarshalJSON() ([]byte, error) { return nil, nil }

func TestAppendRefusesAnEventThatWritesNothing(t *testing.T) {
	if _, err := newRequest([]queue.Record{{Event: &writesNothing{}, Targets: []string{"a"}}}); err == nil {
		t.Error("an event whose MarshalJSON wrote nothing was framed")
	}
}

func TestCorruptRecord(t *testing.T) {
	for _, c := range []struct {
		name string
		at   int // offset in the second frame
	}{
		{"payload", frameHeaderSize + 40},
		{"checksum", 1},
		{"length", 5},
		{"seq", 9},
		{"flags", 16},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			j := openJournal(t, dir, nil)
			openReaders(t, j, "a")
			want := appendN(t, j, 3, "c", "a")
			j.Close()
			seg := segmentFiles(t, dir)[0]
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			// The three frames are alike in size.
			second := segmentHeaderSize + (len(b)-segmentHeaderSize)/3
			off := second + c.at
			b[off] ^= 0x5a
			if err := os.WriteFile(seg, b, 0o600); err != nil {
				t.Fatal(err)
			}

			var logs logBuffer
			j = openJournal(t, dir, &Options{Logger: logs.logger()})
			if st := j.Stats(); st.Corrupt != 1 || st.Truncated != 0 {
				t.Errorf("Stats %+v; want 1 corrupt, nothing truncated", st)
			}
			if l := logs.String(); !strings.Contains(l, "corrupt") || !strings.Contains(l, seg) ||
				!strings.Contains(l, fmt.Sprintf("offset=%d", second)) {
				t.Errorf("log does not name the file and offset %d:\n%s", second, l)
			}
			rs := openReaders(t, j, "a")
			got := readN(t, rs[0], 2)
			if ids := messageIDs(got); !slices.Equal(ids, []string{"c0", "c2"}) {
				t.Errorf("read %q, want c0 and c2", ids)
			}
			if rest := readRest(t, rs[0]); len(rest) != 0 {
				t.Errorf("read %q more", messageIDs(rest))
			}
			if st := rs[0].Stats(); st.Unsettled != 2 {
				t.Errorf("reader stats %+v: the corrupt record is not one to settle", st)
			}
			more := appendN(t, j, 1, "after", "a")
			if more[0].Seq != want[2].Seq+1 {
				t.Errorf("next Seq %d, want %d", more[0].Seq, want[2].Seq+1)
			}
		})
	}
}

func TestTruncatedSegment(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{SegmentBytes: MinSegmentBytes, MaxBytes: 1 << 20}
	j := openJournal(t, dir, opts)
	openReaders(t, j, "a")
	want := appendN(t, j, 12, "t", "a") // about 2 records per segment
	j.Close()
	segs := segmentFiles(t, dir)
	if len(segs) < 4 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	// The second segment loses the end of its last record.
	size := fileSize(t, segs[1])
	if err := os.Truncate(segs[1], size-10); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	opts.Logger = logs.logger()
	j = openJournal(t, dir, opts)
	st := j.Stats()
	if st.Corrupt != 1 || st.Truncated == 0 {
		t.Errorf("Stats %+v; want 1 corrupt stretch, truncated", st)
	}
	if !strings.Contains(logs.String(), segs[1]) {
		t.Errorf("log does not name %s:\n%s", segs[1], logs.String())
	}
	rs := openReaders(t, j, "a")
	got := readRest(t, rs[0])
	if len(got) != len(want)-1 {
		t.Fatalf("read %d records, want all but one of %d", len(got), len(want))
	}
	lost := 0
	for i, w := range want {
		if i-lost >= len(got) || got[i-lost].Seq != w.Seq {
			lost++
		}
	}
	if lost != 1 {
		t.Errorf("read %q", messageIDs(got))
	}
}

func TestMissingCursors(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(path string) error
	}{
		{"missing", os.Remove},
		{"garbage", func(p string) error { return os.WriteFile(p, []byte("OTCURSOR not really"), 0o600) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			j := openJournal(t, dir, nil)
			rs := openReaders(t, j, "a", "b")
			want := appendN(t, j, 10, "m", "a", "b", "c")
			rs[0].Settle(seqsOf(readN(t, rs[0], 10))...)
			if err := j.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			j.Close()
			if err := c.damage(filepath.Join(dir, cursorsFile)); err != nil {
				t.Fatal(err)
			}
			var logs logBuffer
			j = openJournal(t, dir, &Options{Logger: logs.logger()})
			rs = openReaders(t, j, "a", "b", "c")
			for i, r := range rs {
				got := readN(t, r, 10)
				if !slices.Equal(messageIDs(got), messageIDs(want)) {
					t.Errorf("reader %d read %q, want every retained record", i, messageIDs(got))
				}
			}
			if !strings.Contains(logs.String(), "oldest") {
				t.Errorf("not logged:\n%s", logs.String())
			}
		})
	}
}

func seqsOf(recs []queue.Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

func TestFull(t *testing.T) {
	dir := t.TempDir()
	const maxBytes = 32 << 10
	j := openJournal(t, dir, &Options{MaxBytes: maxBytes})
	rs := openReaders(t, j, "a")
	var kept []queue.Record
	for i := 0; ; i++ {
		recs := []queue.Record{
			{Event: track(fmt.Sprint("f", i, "a"), 400), Targets: []string{"a"}},
			{Event: track(fmt.Sprint("f", i, "b"), 400), Targets: []string{"a"}},
		}
		err := j.Append(context.Background(), recs)
		if errors.Is(err, queue.ErrFull) {
			if recs[0].Seq != 0 || recs[1].Seq != 0 {
				t.Errorf("refused records got Seqs %d, %d", recs[0].Seq, recs[1].Seq)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, recs...)
		if i > 100 {
			t.Fatal("no ErrFull")
		}
	}
	var onDisk int64
	for _, f := range append(segmentFiles(t, dir), filepath.Join(dir, spareFile)) {
		if fi, err := os.Stat(f); err == nil {
			onDisk += fi.Size()
		}
	}
	if st := j.Stats(); st.Bytes > maxBytes || st.Bytes < maxBytes/2 {
		t.Errorf("Stats Bytes %d when full, MaxBytes %d", st.Bytes, maxBytes)
	}
	if seg := j.opts.SegmentBytes; onDisk > maxBytes+2*seg {
		t.Errorf("%d bytes on disk when full; MaxBytes %d and 2 segments of %d", onDisk, maxBytes, seg)
	}
	big := make([]queue.Record, 40)
	for i := range big {
		big[i] = queue.Record{Event: track(fmt.Sprint("big", i), 1000), Targets: []string{"a"}}
	}
	if err := j.Append(context.Background(), big); !errors.Is(err, queue.ErrTooLarge) {
		t.Errorf("Append of 40 KB to a 32 KB journal = %v, want ErrTooLarge", err)
	}
	got := readN(t, rs[0], len(kept))
	if rest := readRest(t, rs[0]); len(rest) != 0 || !slices.Equal(messageIDs(got), messageIDs(kept)) {
		t.Fatalf("read %d+%d records, appended %d", len(got), len(rest), len(kept))
	}
	rs[0].Settle(seqsOf(got)...)
	if err := j.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(context.Background(), []queue.Record{{Event: track("room", 400), Targets: []string{"a"}}}); err != nil {
		t.Fatalf("Append once everything is settled: %v", err)
	}
}

func TestSegmentDeletion(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{SegmentBytes: MinSegmentBytes, MaxBytes: 1 << 20}
	j := openJournal(t, dir, opts)
	rs := openReaders(t, j, "a", "b")
	recs := appendN(t, j, 30, "d", "a", "b")
	all := len(segmentFiles(t, dir))
	if all < 8 {
		t.Fatalf("%d segments", all)
	}
	sync := func() {
		t.Helper()
		if err := j.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rs[0].Settle(seqsOf(readN(t, rs[0], 30))...)
	sync()
	if n := len(segmentFiles(t, dir)); n != all {
		t.Fatalf("%d segments left of %d while b has settled nothing", n, all)
	}
	got := readN(t, rs[1], 30)
	rs[1].Settle(seqsOf(got[:15])...)
	sync()
	half := len(segmentFiles(t, dir))
	if half >= all || half <= 1 {
		t.Fatalf("%d segments left of %d with b's cursor half way", half, all)
	}
	if st := j.Stats(); st.Segments != half || !st.Oldest.After(recs[0].Appended.Add(-1)) {
		t.Errorf("Stats %+v", st)
	}
	// A reader that is no longer configured stops holding segments.
	j.Close()
	var logs logBuffer
	opts.Logger = logs.logger()
	j = openJournal(t, dir, opts)
	openReaders(t, j, "a")
	if !strings.Contains(logs.String(), "reader=b") {
		t.Errorf("dropping b's cursor was not logged:\n%s", logs.String())
	}
	if n := len(segmentFiles(t, dir)); n != 1 {
		t.Errorf("%d segments left once every cursor passed them, want only the active one", n)
	}
	more := appendN(t, j, 1, "after", "a")
	if more[0].Seq != recs[29].Seq+1 {
		t.Errorf("Seq after deleting every record: %d, want %d", more[0].Seq, recs[29].Seq+1)
	}
	j.Close()
	j = openJournal(t, dir, opts)
	rs = openReaders(t, j, "a")
	if got := readN(t, rs[0], 1); got[0].Seq != more[0].Seq {
		t.Errorf("read Seq %d, want %d", got[0].Seq, more[0].Seq)
	}
}

func TestRecentMessageIDs(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{SegmentBytes: MinSegmentBytes, MaxBytes: 1 << 20}
	j := openJournal(t, dir, opts)
	rs := openReaders(t, j, "a")
	recs := appendN(t, j, 25, "r", "a")
	ids := messageIDs(recs)
	check := func(n int, want []string) {
		t.Helper()
		got, err := j.RecentMessageIDs(n)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("RecentMessageIDs(%d) = %q, %v; want %q", n, got, err, want)
		}
	}
	check(0, nil)
	check(1, ids[24:])
	check(7, ids[18:])
	check(25, ids)
	check(100, ids)
	// Settled and deleted records are gone from disk; the rest stays.
	rs[0].Settle(seqsOf(readN(t, rs[0], 10))...)
	j.Sync(context.Background())
	got, err := j.RecentMessageIDs(100)
	if err != nil || len(got) < 15 || len(got) == 25 || !slices.Equal(got, ids[25-len(got):]) {
		t.Errorf("after deleting settled segments: %q, %v", got, err)
	}
	j.Close()
	j = openJournal(t, dir, opts)
	check(5, ids[20:])
}

// TestTailAndDisk reads while appending with a tiny tail, so that readers
// move between the disk and the tail, and checks that every record comes
// once and in order.
func TestTailAndDisk(t *testing.T) {
	j := openJournal(t, t.TempDir(), &Options{TailRecords: 8, ReadAhead: 5, SegmentBytes: 4 << 10, MaxBytes: 4 << 20})
	rs := openReaders(t, j, "a", "b")
	const n = 400
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n / 4 {
			appendN(t, j, 1, fmt.Sprint("x", i, "-"), "a", "b")
			appendN(t, j, 1, fmt.Sprint("y", i, "-"), "b")
			appendN(t, j, 2, fmt.Sprint("z", i, "-"), "a")
		}
	})
	for i, r := range rs {
		want := map[int]int{0: 3 * n / 4, 1: n / 2}[i]
		wg.Go(func() {
			var last uint64
			got := 0
			for got < want {
				recs, err := r.Next(context.Background(), 3)
				if err != nil {
					t.Error(err)
					return
				}
				for _, rec := range recs {
					if rec.Seq <= last {
						t.Errorf("reader %d: Seq %d after %d", i, rec.Seq, last)
					}
					last = rec.Seq
					got++
				}
				r.Settle(seqsOf(recs)...)
			}
		})
	}
	wg.Wait()
	for i, r := range rs {
		if st := r.Stats(); st.Unsettled != 0 || st.Cursor != j.Stats().Next {
			t.Errorf("reader %d: %+v", i, st)
		}
	}
}

func TestRedelivered(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir, &Options{TailRecords: 4})
	rs := openReaders(t, j, "a")
	before := appendN(t, j, 10, "b", "a")
	readN(t, rs[0], 3)
	j.Close()
	j = openJournal(t, dir, &Options{TailRecords: 4})
	rs = openReaders(t, j, "a")
	after := appendN(t, j, 10, "a", "a") // more than the tail: some are read from disk
	got := readN(t, rs[0], 20)
	for i, r := range got {
		if r.Redelivered != (i < len(before)) {
			t.Errorf("Seq %d (%s): Redelivered %v", r.Seq, r.Event.Fields().MessageID, r.Redelivered)
		}
	}
	if !slices.Equal(messageIDs(got), messageIDs(append(before, after...))) {
		t.Errorf("read %q", messageIDs(got))
	}
}

// TestGarbageTail opens a segment whose records are followed by megabytes
// of random bytes: recovery scans them for a frame, finds none, and cuts
// them.
func TestGarbageTail(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir, nil)
	openReaders(t, j, "a")
	want := appendN(t, j, 3, "g", "a")
	j.Close()
	seg := segmentFiles(t, dir)[0]
	garbage := make([]byte, 2<<20)
	rand.NewChaCha8([32]byte{1}).Read(garbage)
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(garbage)
	f.Close()
	j = openJournal(t, dir, nil)
	if st := j.Stats(); st.Truncated != int64(len(garbage)) || st.Corrupt != 0 {
		t.Errorf("Stats %+v; want the %d bytes cut", st, len(garbage))
	}
	rs := openReaders(t, j, "a")
	if got := readRest(t, rs[0]); !slices.Equal(messageIDs(got), messageIDs(want)) {
		t.Errorf("read %q", messageIDs(got))
	}
}

// TestTailLetsGoOfWhatEveryReaderRead checks that the in-memory tail holds
// the records some reader has yet to read, and no more.
func TestTailLetsGoOfWhatEveryReaderRead(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir, nil)
	rs := openReaders(t, j, "A", "B")
	appendN(t, j, 10, "m", "A", "B")
	tailLen := func() int {
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.tail.n
	}
	if n := tailLen(); n != 10 {
		t.Fatalf("tail holds %d records after 10 appends, want 10", n)
	}
	readN(t, rs[0], 10)
	if n := tailLen(); n != 10 {
		t.Fatalf("tail holds %d records once A read them and B not, want 10", n)
	}
	readN(t, rs[1], 6)
	if n := tailLen(); n != 4 {
		t.Fatalf("tail holds %d records once B read 6, want 4", n)
	}
	got := readN(t, rs[1], 4)
	if ids := messageIDs(got); !slices.Equal(ids, []string{"m6", "m7", "m8", "m9"}) {
		t.Fatalf("B read %v, want m6 to m9", ids)
	}
	if n := tailLen(); n != 0 {
		t.Fatalf("tail holds %d records once both read all, want 0", n)
	}
	// Records appended after that are read from the tail as before.
	appendN(t, j, 3, "n", "A", "B")
	for _, r := range rs {
		if ids := messageIDs(readN(t, r, 3)); !slices.Equal(ids, []string{"n0", "n1", "n2"}) {
			t.Fatalf("read %v after the tail emptied, want n0 to n2", ids)
		}
	}
}

// TestEventsKeepTheirJSON checks that the events readers hand out, from
// the tail and from disk, keep the JSON the journal wrote, and that Append
// leaves the caller's events as they were.
func TestEventsKeepTheirJSON(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir, nil)
	rs := openReaders(t, j, "A")
	appended := appendN(t, j, 3, "m", "A")
	for _, r := range appended {
		r.Event.(*spec.Track).Event = "Changed by the caller"
		if b, _ := r.Event.MarshalJSON(); !strings.Contains(string(b), "Changed by the caller") {
			t.Fatalf("Append left the caller's event keeping JSON: %s", b)
		}
	}
	check := func(from string, recs []queue.Record) {
		t.Helper()
		for _, r := range recs {
			want, err := r.Event.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(want), "Changed") {
				t.Fatalf("%s: the journal's event took the caller's later change: %s", from, want)
			}
			r.Event.(*spec.Track).Event = "Changed by an integration" // against the rules: it does not show
			if got, _ := r.Event.MarshalJSON(); string(got) != string(want) {
				t.Errorf("%s: the event keeps no JSON: %s", from, got)
			}
		}
	}
	check("tail", readN(t, rs[0], 3))
	j.Close()
	j = openJournal(t, dir, nil)
	rs = openReaders(t, j, "A")
	check("disk", readN(t, rs[0], 3))
}

// TestEventsReadFromDiskKeepTheirOwnJSON reads back far more records than
// one read from disk takes, and checks that each event keeps its own JSON,
// not bytes of a buffer the reader has since used again.
func TestEventsReadFromDiskKeepTheirOwnJSON(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir, nil)
	openReaders(t, j, "A")
	const n = 3000
	appendN(t, j, n, "m", "A")
	j.Close()
	j = openJournal(t, dir, nil)
	rs := openReaders(t, j, "A")
	for i, r := range readN(t, rs[0], n) {
		b, err := r.Event.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if id := fmt.Sprintf(`"messageId":"m%d"`, i); !strings.Contains(string(b), id) {
			t.Fatalf("record %d (%s) writes %.120s", i, r.Event.Fields().MessageID, b)
		}
	}
}
