//go:build !linux

package journal

import "os"

// fdatasync is f.Sync where fdatasync(2) is not available (on macOS,
// File.Sync asks for F_FULLFSYNC).
func fdatasync(f *os.File) error { return f.Sync() }
