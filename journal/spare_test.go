package journal

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// copyDir copies the journal's files as a crash would leave them: what the
// process wrote is in the files, whether synced or not.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == lockFile {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // a temporary file, renamed or removed meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		dst.Close()
	}
	return to
}

// TestSpareSegments runs rounds of appends and settles with small segments,
// so that segments are recycled as spares and zero-filled spares are made,
// and after each round recovers a copy of the live directory: what it reads
// is exactly what was appended and not settled, never a record left over
// in a recycled file.
func TestSpareSegments(t *testing.T) {
	dir := t.TempDir()
	var logs logBuffer
	opts := &Options{SegmentBytes: 4 << 10, MaxBytes: 1 << 20,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	j := openJournal(t, dir, opts)
	rs := openReaders(t, j, "a")
	for round := range 8 {
		settled := appendN(t, j, 20, "s", "a") // a few segments
		rs[0].Settle(seqsOf(readN(t, rs[0], len(settled)))...)
		if err := j.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		waiting := appendN(t, j, 3+round, "w", "a")

		crashed := copyDir(t, dir)
		c, err := Open(crashed, &Options{SegmentBytes: 4 << 10, MaxBytes: 1 << 20, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		crs, err := c.Open([]string{"a"})
		if err != nil {
			t.Fatal(err)
		}
		got := readRest(t, crs[0])
		if !slices.Equal(seqsOf(got), seqsOf(waiting)) || !slices.Equal(messageIDs(got), messageIDs(waiting)) {
			t.Fatalf("round %d: recovered %v %q, want %v", round, seqsOf(got), messageIDs(got), seqsOf(waiting))
		}
		if st := c.Stats(); st.Corrupt != 0 {
			t.Fatalf("round %d: recovery found %d corrupt records", round, st.Corrupt)
		}
		c.Close()
		rs[0].Settle(seqsOf(readN(t, rs[0], len(waiting)))...)
	}
	if !strings.Contains(logs.String(), "recycled a settled segment") {
		t.Errorf("no segment was recycled:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "began a segment in the spare") {
		t.Errorf("no spare was used:\n%s", logs.String())
	}
}
