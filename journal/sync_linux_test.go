package journal

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The layouts the kernel reads and writes (linux/aio_abi.h).
func TestSyncerLayout(t *testing.T) {
	var cb iocb
	var ev ioEvent
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(struct iocb)", unsafe.Sizeof(cb), 64},
		{"aio_lio_opcode", unsafe.Offsetof(cb.opcode), 16},
		{"aio_fildes", unsafe.Offsetof(cb.fildes), 20},
		{"aio_buf", unsafe.Offsetof(cb.buf), 24},
		{"aio_flags", unsafe.Offsetof(cb.flags), 56},
		{"aio_resfd", unsafe.Offsetof(cb.resfd), 60},
		{"sizeof(struct io_event)", unsafe.Sizeof(ev), 32},
		{"io_event.res", unsafe.Offsetof(ev.res), 16},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
}

// diskDir returns a directory on a file system with a page cache that
// writes back to a disk: not tmpfs, where a sync has nothing to do.
func diskDir(t *testing.T) string {
	t.Helper()
	onDisk := func(dir string) bool {
		var st unix.Statfs_t
		return unix.Statfs(dir, &st) == nil && uint32(st.Type) != unix.TMPFS_MAGIC && uint32(st.Type) != unix.RAMFS_MAGIC
	}
	if dir := t.TempDir(); onDisk(dir) {
		return dir
	}
	// The package's directory is on the checkout's file system.
	dir, err := os.MkdirTemp(".", "sync-test-")
	if err != nil {
		t.Skipf("no directory on a disk-backed file system: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if !onDisk(dir) {
		t.Skip("no directory on a disk-backed file system")
	}
	return dir
}

// resident writes 4 MiB to a new file in dir, calls sync (if not nil),
// asks the kernel to drop the file's clean pages from the page cache, and
// returns how many of its pages are still there: dirty pages, those that
// were never written back, stay.
func resident(t *testing.T, dir string, sync func(*os.File) error) (in, of int) {
	t.Helper()
	const size = 4 << 20
	f, err := os.CreateTemp(dir, "pages-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(bytes.Repeat([]byte("x"), size)); err != nil {
		t.Fatal(err)
	}
	if sync != nil {
		if err := sync(f); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Skipf("fadvise: %v", err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Skipf("mincore: %v", e)
	}
	for _, v := range vec {
		in += int(v & 1)
	}
	return in, len(vec)
}

func TestSyncerSyncs(t *testing.T) {
	dir := diskDir(t)
	probe, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	s, err := newSyncer(slog.New(slog.DiscardHandler), probe)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if s.ctx == 0 {
		t.Skip("no Linux AIO here: the journal syncs with fdatasync(2)")
	}

	// Without a sync the written pages stay dirty, and in the page cache;
	// after one they are clean, and go.
	if in, of := resident(t, dir, nil); in < of*3/4 {
		t.Skipf("%d of %d pages in the page cache without a sync: this system cannot tell", in, of)
	}
	for i := range 3 { // each sync reads its own completion
		seq := s.seq
		in, of := resident(t, dir, s.sync)
		if in > of/4 {
			t.Errorf("sync %d: %d of %d pages still in the page cache after it", i+1, in, of)
		}
		if s.ctx == 0 || s.seq != seq+1 {
			t.Fatalf("sync %d did not go through AIO", i+1)
		}
	}

	// A sync the kernel refuses is an error; the syncer goes on.
	bad, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	bad.Close()
	if err := s.sync(bad); err == nil {
		t.Error("sync of a closed file: no error")
	}
	if in, of := resident(t, dir, s.sync); in > of/4 || s.ctx == 0 {
		t.Errorf("after a refused sync: %d of %d pages still in the page cache, AIO in use: %v", in, of, s.ctx != 0)
	}
}
