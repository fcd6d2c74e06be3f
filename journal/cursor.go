package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The cursors file holds every integration's cursor and the next Seq:
//
//	[0:8]   magic "OTCURSOR"
//	[8:10]  format version, little endian (cursorsVersion)
//	[10:18] next: the Seq the next record gets, little endian
//	[18:22] count of entries, little endian
//	entries: name length (uint16), name, cursor (uint64), little endian
//	last 4  CRC-32C of everything before
//
// It is replaced as a whole: written to cursors.tmp, fsynced, renamed over
// cursors, and the directory fsynced, so a crash leaves the old file or the
// new one, never a mix.
const (
	cursorsMagic   = "OTCURSOR"
	cursorsVersion = 1
	cursorsFile    = "cursors"
	cursorsTemp    = "cursors.tmp"
	maxNameLen     = 1<<16 - 1
)

// cursorState is what the cursors file holds.
type cursorState struct {
	next    uint64
	cursors map[string]uint64
}

func encodeCursors(s cursorState) []byte {
	names := make([]string, 0, len(s.cursors))
	for name := range s.cursors {
		names = append(names, name)
	}
	slices.Sort(names)
	b := make([]byte, 0, 26+len(names)*32)
	b = append(b, cursorsMagic...)
	b = binary.LittleEndian.AppendUint16(b, cursorsVersion)
	b = binary.LittleEndian.AppendUint64(b, s.next)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(names)))
	for _, name := range names {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(name)))
		b = append(b, name...)
		b = binary.LittleEndian.AppendUint64(b, s.cursors[name])
	}
	return binary.LittleEndian.AppendUint32(b, payloadCRC(b))
}

var errBadCursors = errors.New("not a valid cursors file")

func decodeCursors(b []byte) (cursorState, error) {
	const fixed = 8 + 2 + 8 + 4
	if len(b) < fixed+4 || string(b[:8]) != cursorsMagic {
		return cursorState{}, errBadCursors
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if payloadCRC(body) != sum {
		return cursorState{}, fmt.Errorf("%w: checksum mismatch", errBadCursors)
	}
	if v := binary.LittleEndian.Uint16(body[8:10]); v != cursorsVersion {
		return cursorState{}, fmt.Errorf("%w: version %d", errBadCursors, v)
	}
	s := cursorState{next: binary.LittleEndian.Uint64(body[10:18]), cursors: map[string]uint64{}}
	n := binary.LittleEndian.Uint32(body[18:22])
	rest := body[fixed:]
	for range n {
		if len(rest) < 2 {
			return cursorState{}, fmt.Errorf("%w: truncated", errBadCursors)
		}
		l := int(binary.LittleEndian.Uint16(rest))
		if len(rest) < 2+l+8 {
			return cursorState{}, fmt.Errorf("%w: truncated", errBadCursors)
		}
		s.cursors[string(rest[2:2+l])] = binary.LittleEndian.Uint64(rest[2+l:])
		rest = rest[2+l+8:]
	}
	if len(rest) != 0 {
		return cursorState{}, fmt.Errorf("%w: trailing bytes", errBadCursors)
	}
	return s, nil
}

// readCursors reads dir's cursors file. ok is false when there is none, or
// when it cannot be read (which is logged by the caller).
func readCursors(dir string) (s cursorState, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, cursorsFile))
	if errors.Is(err, os.ErrNotExist) {
		return cursorState{}, false, nil
	}
	if err != nil {
		return cursorState{}, false, err
	}
	s, err = decodeCursors(b)
	if err != nil {
		return cursorState{}, false, err
	}
	return s, true, nil
}

// writeCursors replaces dir's cursors file with s, durably.
func writeCursors(dir string, s cursorState) error {
	tmp := filepath.Join(dir, cursorsTemp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(encodeCursors(s))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, cursorsFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	return err
}

// markDirty asks the persister to write the cursors soon.
func (j *Journal) markDirty() {
	select {
	case j.dirty <- struct{}{}:
	default:
	}
}

// persistLoop writes the cursors when they move, at most once per
// CursorInterval, until Close.
func (j *Journal) persistLoop() {
	defer close(j.persistDone)
	t := time.NewTimer(j.opts.CursorInterval)
	t.Stop()
	for {
		select {
		case <-j.dirty:
		case <-j.quit:
			return
		}
		if err := j.persist(); err != nil {
			j.log.Error("journal: writing cursors", "dir", j.dir, "err", err)
		}
		t.Reset(j.opts.CursorInterval)
		select {
		case <-t.C:
		case <-j.quit:
			t.Stop()
			return
		}
	}
}

// persist writes the readers' cursors if they changed, then deletes the
// segments that every cursor has passed: only cursors on disk may free a
// segment, or a crash could bring back a cursor that still needs it.
func (j *Journal) persist() error {
	j.persistMu.Lock()
	defer j.persistMu.Unlock()
	j.mu.Lock()
	if !j.opened {
		j.mu.Unlock()
		return nil
	}
	next := j.next
	cursors := make(map[string]uint64, len(j.readers))
	low := next
	for _, r := range j.readers {
		r.mu.Lock()
		c := r.cursorLocked(next)
		r.mu.Unlock()
		cursors[r.name] = c
		low = min(low, c)
	}
	j.mu.Unlock()
	if j.saved == nil || next != j.savedNext || !maps.Equal(cursors, j.saved) {
		if err := writeCursors(j.dir, cursorState{next: next, cursors: cursors}); err != nil {
			return fmt.Errorf("journal: write cursors in %s: %w", j.dir, err)
		}
		j.saved, j.savedNext = cursors, next
	}
	j.deleteSegments(low)
	return nil
}

// deleteSegments deletes the segments, but the active one, that hold no
// record at or above low. persistMu is held.
func (j *Journal) deleteSegments(low uint64) {
	j.mu.Lock()
	var gone []*segment
	for len(j.segs) > 1 && (j.segs[0].first == 0 || j.segs[0].last < low) {
		gone = append(gone, j.segs[0])
		j.bytes -= j.segs[0].size
		j.segs[0] = nil
		j.segs = j.segs[1:]
	}
	j.mu.Unlock()
	// A deleted segment that a crash brings back holds only records below
	// every saved cursor, which recovery counts and readers skip: the
	// directory need not be synced for it.
	for _, s := range gone {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			j.log.Error("journal: deleting a settled segment", "file", s.path, "err", err)
			continue
		}
		j.log.Debug("journal: deleted a settled segment", "file", s.path, "last", s.last)
	}
}
