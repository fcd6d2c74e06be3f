package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The spare is a file written to a segment's full size, waiting to become
// the next segment. Overwriting written blocks, an fdatasync flushes data
// only; appending, it must also commit the file's new size to the
// filesystem's journal, which on the disk measured for this package
// halved throughput and doubled the wait (see the package doc). A spare
// is a segment every reader has passed, recycled instead of deleted, or,
// when there is none, a file of zeros written in the background once the
// active segment is half full (or holds appendModeBytes, if it is not
// written ahead: the writer then moves to the spare at once). Old records in a recycled file have Seqs
// below the new segment's base, which recovery tells from new ones.
const spareFile = "spare"

// takeSpare returns the spare's path and gives it to the writer, or ""
// when there is none.
func (j *Journal) takeSpare() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.spareReady {
		return ""
	}
	j.spareReady = false
	return filepath.Join(j.dir, spareFile)
}

// claimSpare reports whether the caller may make the spare: there is none,
// and nobody is making one. It must call spareDone after.
func (j *Journal) claimSpare() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.spareReady || j.sparing || j.closed {
		return false
	}
	j.sparing = true
	return true
}

func (j *Journal) spareDone(ready bool) {
	j.mu.Lock()
	j.sparing, j.spareReady = false, ready
	j.mu.Unlock()
}

// recycle makes the deleted segment s the spare if there is none. It
// reports whether it did; if not, the caller removes the file.
func (j *Journal) recycle(s *segment) bool {
	if s.size < j.opts.SegmentBytes*3/4 || !j.claimSpare() {
		return false // a small file would make a small segment
	}
	// A rename that a crash undoes brings back a settled segment, which
	// recovery skips: no directory sync is needed.
	err := os.Rename(s.path, filepath.Join(j.dir, spareFile))
	j.spareDone(err == nil)
	return err == nil
}

// prepareSpare writes a spare of zeros in the background, unless there is
// one or one is being made.
func (j *Journal) prepareSpare() {
	if !j.claimSpare() {
		return
	}
	j.bg.Go(func() {
		err := j.writeZeros(filepath.Join(j.dir, spareFile), j.opts.SegmentBytes)
		if err != nil && !errors.Is(err, errQuit) {
			j.log.Warn("journal: preparing a spare segment", "dir", j.dir, "err", err)
		}
		j.spareDone(err == nil)
	})
}

var errQuit = errors.New("journal closed")

// writeZeros writes a file of size zero bytes at path, through a temporary
// name, and syncs it. It gives up when the journal closes.
func (j *Journal) writeZeros(path string, size int64) error {
	tmp := path + tempSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	zeros := make([]byte, min(size, 1<<20))
	for off := int64(0); off < size && err == nil; off += int64(len(zeros)) {
		select {
		case <-j.quit:
			err = errQuit
		default:
			_, err = f.Write(zeros[:min(int64(len(zeros)), size-off)])
		}
	}
	if err == nil {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}
