//go:build !unix

package journal

import (
	"fmt"
	"os"
)

// lockDir creates the lock file but cannot lock it on this platform: the
// caller must make sure that only one Journal uses dir.
func lockDir(dir, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: lock file: %w", dir, err)
	}
	return f, nil
}
