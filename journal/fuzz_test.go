package journal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opentrackhq/opentrack/queue"
)

// segmentSeeds returns segment files as the journal writes them, and some
// broken ones.
func segmentSeeds(f *testing.F) [][]byte {
	dir := f.TempDir()
	j, err := Open(dir, &Options{Logger: quiet()})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := j.Open([]string{"a"}); err != nil {
		f.Fatal(err)
	}
	for i := range 3 {
		recs := []queue.Record{
			{Event: track(string(rune('a'+i)), 100), Targets: []string{"a"}},
			{Event: track(string(rune('A'+i)), 50), Targets: []string{"a", "b"}},
		}
		if err := j.Append(context.Background(), recs); err != nil {
			f.Fatal(err)
		}
	}
	j.Close()
	good, err := os.ReadFile(segmentFiles(f, dir)[0])
	if err != nil {
		f.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(good)/2] ^= 1
	return [][]byte{
		good,
		flipped,
		good[:len(good)-7],
		good[:segmentHeaderSize],
		good[:10],
		append(bytes.Clone(good[:segmentHeaderSize]), good[segmentHeaderSize+40:]...),
		append(bytes.Clone(good), make([]byte, 100)...),
		nil,
		[]byte("OTJOURNL\x02\x00"),
	}
}

// FuzzFrames feeds arbitrary bytes to the frame reader: it never panics,
// every frame it returns checks out, in rising Seq order, inside the input.
func FuzzFrames(f *testing.F) {
	for _, s := range segmentSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bytes.NewReader(data), 0, int64(len(data)), 0)
		var last uint64
		for i := 0; ; i++ {
			fm, err := fr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if fm.seq <= last || fm.end() > int64(len(data)) || fm.off < 0 {
				t.Fatalf("frame %d: Seq %d after %d, at %d..%d of %d", i, fm.seq, last, fm.off, fm.end(), len(data))
			}
			last = fm.seq
			if !bytes.Equal(fm.payload, data[fm.off+frameHeaderSize:fm.end()]) {
				t.Fatal("payload is not the input's")
			}
			_, _, _ = queue.DecodeRecordHeader(fm.payload)
		}
		if fr.tail > int64(len(data)) {
			t.Fatalf("tail %d past the end %d", fr.tail, len(data))
		}
	})
}

// FuzzSegment writes arbitrary bytes as a segment file and opens a journal
// on it: recovery never panics and never refuses (but for a newer format
// version); what it keeps reads back in order, counts as the reader's
// backlog, and is the same after a second recovery; the journal takes
// appends.
func FuzzSegment(f *testing.F) {
	for _, s := range segmentSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := memDir(t)
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := Open(dir, &Options{Logger: quiet()})
		var ev *errVersion
		if errors.As(err, &ev) {
			return
		}
		if err != nil {
			t.Fatalf("Open refused: %v", err)
		}
		rs, err := j.Open([]string{"a"})
		if err != nil {
			t.Fatal(err)
		}
		got := readRest(t, rs[0])
		var last uint64
		first := map[uint64]string{}
		for _, r := range got {
			if r.Seq <= last {
				t.Fatalf("Seq %d after %d", r.Seq, last)
			}
			last = r.Seq
			first[r.Seq] = r.Event.Fields().MessageID
		}
		if st := rs[0].Stats(); st.Unsettled != len(got) {
			t.Fatalf("read %d records, backlog says %d", len(got), st.Unsettled)
		}
		if _, err := j.RecentMessageIDs(10); err != nil {
			t.Fatal(err)
		}
		added := []queue.Record{{Event: track("added", 100), Targets: []string{"a"}}}
		if err := j.Append(context.Background(), added); err != nil {
			t.Fatalf("Append after recovery: %v", err)
		}
		if added[0].Seq <= last {
			t.Fatalf("appended Seq %d, not past the recovered %d", added[0].Seq, last)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}

		j, err = Open(dir, &Options{Logger: quiet()})
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		defer j.Close()
		rs, err = j.Open([]string{"a"})
		if err != nil {
			t.Fatal(err)
		}
		again := map[uint64]string{}
		for _, r := range readRest(t, rs[0]) {
			again[r.Seq] = r.Event.Fields().MessageID
		}
		first[added[0].Seq] = "added"
		if !maps.Equal(first, again) {
			t.Fatalf("first recovery kept %v, second %v", slices.Sorted(maps.Keys(first)), slices.Sorted(maps.Keys(again)))
		}
	})
}

// FuzzCursors checks that decoding a cursors file never panics and that
// what it accepts encodes back to the same bytes.
func FuzzCursors(f *testing.F) {
	f.Add(encodeCursors(cursorState{next: 42, cursors: map[string]uint64{"BigQuery": 7, "Customer.io": 41}}))
	f.Add(encodeCursors(cursorState{next: 1}))
	f.Add([]byte("OTCURSOR"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeCursors(b)
		if err != nil {
			if !errors.Is(err, errBadCursors) {
				t.Fatalf("error %v does not wrap errBadCursors", err)
			}
			return
		}
		if !bytes.Equal(encodeCursors(s), b) {
			t.Fatalf("%+v re-encodes differently", s)
		}
	})
}

// memDir returns a new directory in memory where there is one (/dev/shm),
// where fsync costs nothing: FuzzSegment checks parsing, not durability, and
// runs many times more inputs per second there.
func memDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "journal-fuzz-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
