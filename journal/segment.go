package journal

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A segment file starts with a header:
//
//	[0:8]   magic "OTJOURNL"
//	[8:10]  format version, little endian (segmentVersion)
//	[10:12] zero
//	[12:20] base: the lowest Seq the segment may hold, little endian
//	[20:24] CRC-32C of [0:20]
//
// and is named after its base, in 20 digits, with the suffix ".seg", so
// that names sort as segments do.
const (
	segmentMagic      = "OTJOURNL"
	segmentVersion    = 1
	segmentHeaderSize = 24
	segmentSuffix     = ".seg"
)

func segmentName(base uint64) string { return fmt.Sprintf("%020d%s", base, segmentSuffix) }

func encodeSegmentHeader(base uint64) []byte {
	h := make([]byte, segmentHeaderSize)
	copy(h, segmentMagic)
	binary.LittleEndian.PutUint16(h[8:10], segmentVersion)
	binary.LittleEndian.PutUint64(h[12:20], base)
	binary.LittleEndian.PutUint32(h[20:24], payloadCRC(h[:20]))
	return h
}

// errVersion is returned for a segment written by a newer format: it is not
// corrupt, and this build cannot read it.
type errVersion struct {
	path    string
	version uint16
}

func (e *errVersion) Error() string {
	return fmt.Sprintf("journal: %s has segment format version %d; this build reads version %d",
		e.path, e.version, segmentVersion)
}

// checkSegmentHeader returns "" for a valid header of a segment with the
// given base, or why it is not one. A header with a newer version is an
// *errVersion.
func checkSegmentHeader(path string, h []byte, base uint64) (string, error) {
	switch {
	case len(h) < segmentHeaderSize:
		return "short header", nil
	case string(h[:8]) != segmentMagic:
		return "bad magic", nil
	case binary.LittleEndian.Uint32(h[20:24]) != payloadCRC(h[:20]):
		return "header checksum mismatch", nil
	}
	if v := binary.LittleEndian.Uint16(h[8:10]); v != segmentVersion {
		return "", &errVersion{path: path, version: v}
	}
	if b := binary.LittleEndian.Uint64(h[12:20]); b != base {
		return fmt.Sprintf("header base %d does not match the file name", b), nil
	}
	return "", nil
}

// segment describes one segment file. Its fields are guarded by
// Journal.mu once the journal is open.
type segment struct {
	base  uint64
	path  string
	size  int64  // bytes committed (fsynced); readers read no further
	first uint64 // Seq of the first record; 0 while there is none
	last  uint64 // Seq of the last record; 0 while there is none
	// appended is when the first record was appended.
	appended time.Time
}

// listSegments returns the segments in dir, oldest first, with their base
// and path set.
func listSegments(dir string) ([]*segment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var segs []*segment
	for _, e := range entries {
		name := e.Name()
		digits, ok := strings.CutSuffix(name, segmentSuffix)
		if !ok || len(digits) != 20 || !e.Type().IsRegular() {
			continue
		}
		base, err := strconv.ParseUint(digits, 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, &segment{base: base, path: filepath.Join(dir, name)})
	}
	slices.SortFunc(segs, func(a, b *segment) int {
		switch {
		case a.base < b.base:
			return -1
		case a.base > b.base:
			return 1
		}
		return 0
	})
	return segs, nil
}

// createSegment creates the segment file for base with its header, and
// makes both the file and its name durable before it returns.
func createSegment(dir string, base uint64) (*os.File, *segment, error) {
	s := &segment{base: base, path: filepath.Join(dir, segmentName(base)), size: segmentHeaderSize}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: create segment: %w", err)
	}
	if _, err := f.Write(encodeSegmentHeader(base)); err == nil {
		err = fdatasync(f)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		f.Close()
		os.Remove(s.path)
		return nil, nil, fmt.Errorf("journal: create segment %s: %w", s.path, err)
	}
	return f, s, nil
}

// syncDir makes the directory's entries (created, renamed files) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
