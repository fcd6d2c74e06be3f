//go:build unix

package journal

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockDir takes an exclusive flock on dir's lock file. The lock belongs to
// the open file: a second Open, in this process or another, fails until
// the first is closed, and the kernel releases it when the process dies.
func lockDir(dir, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: lock file: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("journal: open %s: %w (%s is held by another process or Journal)", dir, ErrLocked, path)
		}
		return nil, fmt.Errorf("journal: open %s: lock %s: %w", dir, path, err)
	}
	return f, nil
}
