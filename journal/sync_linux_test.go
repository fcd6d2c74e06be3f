package journal

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestSyncerSyncs(t *testing.T) {
	s := newSyncer(slog.New(slog.DiscardHandler))
	defer s.close()
	if s.ctx == 0 {
		t.Skip("no Linux AIO here: the journal syncs with fdatasync(2)")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range 3 { // each sync reads its own completion
		if _, err := f.WriteString("record\n"); err != nil {
			t.Fatal(err)
		}
		if err := s.sync(f); err != nil {
			t.Fatalf("sync %d: %v", i+1, err)
		}
	}
	if s.ctx == 0 {
		t.Error("the syncs fell back to fdatasync(2)")
	}

	// A sync the kernel refuses is an error, and the syncer goes on with
	// fdatasync(2).
	bad, err := os.Open(filepath.Join(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	bad.Close()
	if err := s.sync(bad); err == nil {
		t.Error("sync of a closed file: no error")
	}
	if s.ctx != 0 {
		t.Error("still using AIO after it refused a sync")
	}
	if err := s.sync(f); err != nil {
		t.Errorf("sync with fdatasync(2) after the fallback: %v", err)
	}
}
