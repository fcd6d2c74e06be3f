package journal

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
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
// kernel through Linux AIO (IOCB_CMD_FDSYNC, which runs vfs_fsync with
// datasync set, as fdatasync(2) does, on a kernel worker) and waited for
// through the runtime's netpoller, on an eventfd the kernel signals when
// it is done.
//
// The reason is the Go scheduler. A goroutine in a blocking system call
// keeps its P (one of GOMAXPROCS slots for running Go code) until sysmon
// takes it back, at least 20 µs later, and the goroutines the writer just
// released wait on that P meanwhile. The writer spends most of its time in
// fdatasync (about 0.1 ms each here), so on a 2-core machine the handlers
// ran on one P for much of the time, and the cores idled while requests
// waited. Waiting in the netpoller holds no P. Measured with
// loadtest/run.sh's journal server on 2 cores, alternating 6-second runs:
// 20,200–22,200 requests/s with fdatasync(2), 24,300–25,500 with this.
//
// Where AIO is not there (a kernel without it, a sandbox, a file system
// whose files refuse it, aio-max-nr reached) it falls back to fdatasync(2).
type syncer struct {
	ctx   uintptr  // the AIO context; 0 to use fdatasync(2)
	efd   *os.File // the eventfd, read through the netpoller
	efdFD uint32   // its descriptor (File.Fd would make it blocking)
	log   *slog.Logger
}

// The kernel's struct iocb (linux/aio_abi.h). aio_key and aio_rw_flags
// swap places on big-endian machines; both are 0 here.
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

// The kernel's struct io_event.
type ioEvent struct {
	data, obj uint64
	res, res2 int64
}

const (
	iocbCmdFdsync = 3      // IOCB_CMD_FDSYNC
	iocbFlagResfd = 1 << 0 // IOCB_FLAG_RESFD: signal resfd when done
)

// newSyncer sets up AIO, or returns a syncer that uses fdatasync(2) when
// it cannot.
func newSyncer(log *slog.Logger) *syncer {
	s := &syncer{log: log}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		log.Debug("journal: no eventfd; syncing with fdatasync(2)", "err", err)
		return s
	}
	var ctx uintptr
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		unix.Close(efd)
		log.Debug("journal: no AIO; syncing with fdatasync(2)", "err", e)
		return s
	}
	// A non-blocking descriptor makes a File that reads through the
	// netpoller.
	s.ctx, s.efd, s.efdFD = ctx, os.NewFile(uintptr(efd), "eventfd"), uint32(efd)
	return s
}

// sync is fdatasync(f). Only one sync runs at a time: the writer's.
func (s *syncer) sync(f *os.File) error {
	if s.ctx == 0 {
		return fdatasync(f)
	}
	cbs := [1]*iocb{{opcode: iocbCmdFdsync, fildes: uint32(f.Fd()), flags: iocbFlagResfd, resfd: s.efdFD}}
	for {
		_, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, s.ctx, 1, uintptr(unsafe.Pointer(&cbs[0])))
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN: // no room in the kernel's queues just now
			return fdatasync(f)
		default: // EINVAL: this file cannot be synced so, nor the next
			s.log.Debug("journal: AIO refused a sync; syncing with fdatasync(2)", "err", e)
			s.close()
			return fdatasync(f)
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
		if e != 0 {
			// The sync's outcome is unknown: report it as failed.
			return fmt.Errorf("io_getevents: %w", e)
		}
		if got == 1 {
			break
		}
	}
	runtime.KeepAlive(f)
	runtime.KeepAlive(&cbs)
	if ev.res < 0 {
		return syscall.Errno(-ev.res)
	}
	return nil
}

// close releases the AIO context and the eventfd; sync uses fdatasync(2)
// from then on.
func (s *syncer) close() {
	if s.ctx == 0 {
		return
	}
	unix.Syscall(unix.SYS_IO_DESTROY, s.ctx, 0, 0)
	s.efd.Close()
	s.ctx, s.efd = 0, nil
}
