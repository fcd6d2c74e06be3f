//go:build !linux

package journal

import (
	"log/slog"
	"os"
)

// fdatasync is f.Sync where fdatasync(2) is not available (on macOS,
// File.Sync asks for F_FULLFSYNC).
func fdatasync(f *os.File) error { return f.Sync() }

// syncer is how the writer syncs a group: fdatasync, here.
type syncer struct{}

// newSyncer syncs f once, as the Linux one does.
func newSyncer(_ *slog.Logger, f *os.File) (*syncer, error) { return &syncer{}, fdatasync(f) }

func (*syncer) sync(f *os.File) error { return fdatasync(f) }

func (*syncer) close() {}
