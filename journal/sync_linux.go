package journal

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdatasync flushes f's data, and the metadata needed to read it back (its
// size), to the disk; unlike fsync it skips timestamps.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// syncer is how the writer syncs a group: the same fdatasync, asked of the
// kernel through Linux AIO (IOCB_CMD_FDSYNC, which since Linux 4.18 runs
// vfs_fsync with datasync set on the same open file, as fdatasync(2) does,
// on a kernel worker) and waited for through the runtime's netpoller, on an
// eventfd the kernel signals when it is done.
//
// The reason is the Go scheduler. A goroutine in a blocking system call
// keeps its P (one of GOMAXPROCS slots for running Go code) until sysmon
// takes it back, at least 20 µs later, and the goroutines the writer just
// released wait on that P meanwhile. The writer spends most of its time in
// fdatasync (about 0.1 ms each here), so on a 2-core machine the handlers
// ran on one P for much of the time, and the cores idled while requests
// waited. Waiting in the netpoller holds no P. Measured on 2 cores with
// the example server on the journal (OPENTRACK_QUEUE=journal) under
// wrk -t2 -c64 -d6s -s loadtest/track.lua, five alternated pairs of runs:
// 17,994–21,946 requests/s with fdatasync(2), 20,428–25,757 with this, a
// median gain of 17 %.
//
// Where AIO is not there (a kernel without it or older than 4.18, a
// sandbox, aio-max-nr reached, a file system whose files refuse it), the
// writer calls fdatasync(2).
type syncer struct {
	ctx   uintptr  // the AIO context; 0 to use fdatasync(2)
	efd   *os.File // the eventfd, read through the netpoller
	efdFD uint32   // its descriptor (File.Fd would make it blocking)
	seq   uint64   // tags each request, checked in its completion
	log   *slog.Logger
}

// The kernel's struct iocb (linux/aio_abi.h): 64 bytes on every
// architecture. aio_key and aio_rw_flags swap places on big-endian
// machines; both are 0 here.
type iocb struct {
	data      uint64
	key       uint32
	rwFlags   uint32
	opcode    uint16
	reqprio   int16
	fildes    uint32
	buf       uint64
	nbytes    uint64
	offset    int64
	reserved2 uint64
	flags     uint32
	resfd     uint32
}

// The kernel's struct io_event: 32 bytes.
type ioEvent struct {
	data, obj uint64
	res, res2 int64
}

const (
	iocbCmdFdsync = 3      // IOCB_CMD_FDSYNC
	iocbFlagResfd = 1 << 0 // IOCB_FLAG_RESFD: signal resfd when done
)

// newSyncer sets up AIO and syncs f, the active segment, with it once,
// falling back to fdatasync(2) where AIO is not to be had. An error means
// the sync itself failed: f may hold what is not on disk.
func newSyncer(log *slog.Logger, f *os.File) (*syncer, error) {
	s := &syncer{log: log}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		log.Info("journal: no eventfd; syncing with fdatasync(2)", "err", err)
		return s, fdatasync(f)
	}
	var ctx uintptr
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		unix.Close(efd)
		log.Info("journal: no Linux AIO; syncing with fdatasync(2)", "err", e)
		return s, fdatasync(f)
	}
	// A non-blocking descriptor makes a File that reads through the
	// netpoller.
	s.ctx, s.efd, s.efdFD = ctx, os.NewFile(uintptr(efd), "eventfd"), uint32(efd)
	err = s.aioSync(f)
	var refused submitError
	if errors.As(err, &refused) {
		s.close()
		log.Info("journal: Linux AIO cannot sync the journal's files; syncing with fdatasync(2)", "err", refused.errno)
		return s, fdatasync(f)
	}
	// Synced, or failed: a writeback error is told to each open file
	// once, and this sync may have been the one to hear it.
	return s, err
}

// sync is fdatasync(f). Only one sync runs at a time: the writer's.
func (s *syncer) sync(f *os.File) error {
	if s.ctx == 0 {
		return fdatasync(f)
	}
	err := s.aioSync(f)
	var refused submitError
	if errors.As(err, &refused) {
		switch refused.errno {
		case unix.EINVAL, unix.ENOSYS, unix.EPERM, unix.EOPNOTSUPP:
			// It will not work for this file, nor for the next.
			s.log.Warn("journal: Linux AIO refused a sync; syncing with fdatasync(2) from now on", "err", refused.errno)
			s.close()
		}
		// Nothing was submitted (EAGAIN: no room in the kernel's queues
		// just now, ENOMEM): sync the plain way.
		return fdatasync(f)
	}
	return err
}

// submitError is io_submit's refusal: no request is in flight.
type submitError struct{ errno unix.Errno }

func (e submitError) Error() string { return "io_submit: " + e.errno.Error() }

// aioSync submits an IOCB_CMD_FDSYNC for f and waits for its completion.
func (s *syncer) aioSync(f *os.File) error {
	s.seq++
	// The kernel copies the iocb in io_submit and takes its own reference
	// to the file: neither needs to outlive the call.
	cbs := [1]*iocb{{data: s.seq, opcode: iocbCmdFdsync, fildes: uint32(f.Fd()), flags: iocbFlagResfd, resfd: s.efdFD}}
	for {
		_, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, s.ctx, 1, uintptr(unsafe.Pointer(&cbs[0])))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return submitError{e}
		}
		break
	}
	// The eventfd's counter comes in 8 bytes; if reading it fails, the
	// wait below blocks in the kernel instead.
	var n [8]byte
	_, _ = io.ReadFull(s.efd, n[:])
	var ev ioEvent
	for {
		got, _, e := unix.Syscall6(unix.SYS_IO_GETEVENTS, s.ctx, 1, 1, uintptr(unsafe.Pointer(&ev)), 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 || got != 1 || ev.data != s.seq {
			// The sync's outcome is unknown: report it as failed, and
			// stop using a context that may hold its completion
			// (io_destroy waits for what is in flight).
			s.close()
			if e != 0 {
				return fmt.Errorf("io_getevents: %w", e)
			}
			return fmt.Errorf("io_getevents: %d events, the first for request %d, not %d", got, ev.data, s.seq)
		}
		break
	}
	if ev.res < 0 {
		return syscall.Errno(-ev.res)
	}
	return nil
}

// close releases the AIO context, once nothing is in flight, and the
// eventfd; sync uses fdatasync(2) from then on.
func (s *syncer) close() {
	if s.ctx == 0 {
		return
	}
	unix.Syscall(unix.SYS_IO_DESTROY, s.ctx, 0, 0)
	s.efd.Close()
	s.ctx, s.efd = 0, nil
}
