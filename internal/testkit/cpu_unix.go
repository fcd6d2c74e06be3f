//go:build unix

package testkit

import (
	"syscall"
	"time"
)

// CPUTime returns the CPU time, user and system, that the process has
// used so far, for benchmarks that report CPU per event; 0 where the
// system does not tell.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
