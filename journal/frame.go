package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// A frame holds one record in a segment:
//
//	[0:4]   CRC-32C (Castagnoli) of the payload followed by bytes [4:17]
//	[4:8]   payload length, little endian
//	[8:16]  Seq, little endian
//	[16]    flags: flagLast marks the last record of an Append
//	[17:]   payload (queue.EncodeRecord)
//
// The checksum covers the payload first so that a producer can checksum its
// payload in parallel and the writer, which assigns Seq, only extends it
// with the 13 header bytes.
const (
	frameHeaderSize = 17
	flagLast        = 1 << 0
	knownFlags      = flagLast
	// maxPayload bounds one record's payload; a frame header that claims
	// more is corrupt. Events are at most 32 KB as the handler accepts them.
	maxPayload = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// payloadCRC returns the checksum of a payload, to be finished by sealFrame.
func payloadCRC(payload []byte) uint32 { return crc32.Checksum(payload, castagnoli) }

// appendFrameHeader appends a header with room for a payload of n bytes;
// sealFrame fills in Seq, the flags and the checksum.
func appendFrameHeader(dst []byte, n int) []byte {
	var h [frameHeaderSize]byte
	binary.LittleEndian.PutUint32(h[4:8], uint32(n))
	return append(dst, h[:]...)
}

// sealFrame completes the header h of a frame whose payload has checksum
// crc.
func sealFrame(h []byte, seq uint64, flags byte, crc uint32) {
	binary.LittleEndian.PutUint64(h[8:16], seq)
	h[16] = flags
	binary.LittleEndian.PutUint32(h[0:4], crc32.Update(crc, castagnoli, h[4:frameHeaderSize]))
}

// frame is one record as read from a segment.
type frame struct {
	off     int64 // offset of the frame in its file
	seq     uint64
	flags   byte
	payload []byte // valid until the next call of the frameReader
}

// end returns the offset just past the frame.
func (f frame) end() int64 { return f.off + frameHeaderSize + int64(len(f.payload)) }

// errCorrupt describes a stretch of a segment that holds no valid frame.
type errCorrupt struct {
	off    int64 // where the bad stretch starts
	reason string
}

func (e *errCorrupt) Error() string { return fmt.Sprintf("at offset %d: %s", e.off, e.reason) }

// frameReader reads the frames of one segment file, from off up to end,
// through a buffer of its own. Where a frame does not check out it skips
// forward, byte by byte, to the next one that does (a frame whose length
// fits, whose flags are known, whose Seq follows the last good one and whose
// checksum matches), and reports the bad stretch to onCorrupt.
type frameReader struct {
	r         io.ReaderAt
	off, end  int64
	prev      uint64 // Seq of the last good frame; frames must go up
	onCorrupt func(*errCorrupt)

	buf    []byte
	bufOff int64 // file offset of buf[0]
	// tail is set when the segment ends in a bad stretch: the offset where
	// it starts. Recovery truncates a torn tail there.
	tail int64
}

const readBufSize = 256 << 10

func newFrameReader(r io.ReaderAt, off, end int64, prev uint64) *frameReader {
	return &frameReader{r: r, off: off, end: end, prev: prev, tail: -1}
}

// reset points fr at another stretch of a file, keeping its buffer.
func (fr *frameReader) reset(r io.ReaderAt, off, end int64, prev uint64) {
	fr.r, fr.off, fr.end, fr.prev, fr.tail = r, off, end, prev, -1
	fr.buf = fr.buf[:0]
}

// window returns the n bytes at off, or fewer when the file (or end) stops
// first. The slice is valid until the next call.
func (fr *frameReader) window(off int64, n int) ([]byte, error) {
	if rem := fr.end - off; int64(n) > rem {
		n = int(max(rem, 0))
	}
	if off >= fr.bufOff && off+int64(n) <= fr.bufOff+int64(len(fr.buf)) {
		i := off - fr.bufOff
		return fr.buf[i : i+int64(n)], nil
	}
	size := max(n, readBufSize)
	if rem := fr.end - off; int64(size) > rem {
		size = int(rem)
	}
	if cap(fr.buf) < size {
		fr.buf = make([]byte, size)
	}
	fr.buf = fr.buf[:size]
	m, err := fr.r.ReadAt(fr.buf, off)
	fr.buf, fr.bufOff = fr.buf[:m], off
	if m < n {
		if err == nil || errors.Is(err, io.EOF) {
			return fr.buf, nil // the file is shorter than end said
		}
		return nil, err
	}
	return fr.buf[:n], nil
}

// at checks for a valid frame at off.
func (fr *frameReader) at(off int64) (frame, string, error) {
	h, err := fr.window(off, frameHeaderSize)
	if err != nil {
		return frame{}, "", err
	}
	if len(h) < frameHeaderSize {
		return frame{}, "short header", nil
	}
	n := binary.LittleEndian.Uint32(h[4:8])
	seq := binary.LittleEndian.Uint64(h[8:16])
	flags := h[16]
	sum := binary.LittleEndian.Uint32(h[0:4])
	switch {
	case n > maxPayload:
		return frame{}, "length out of range", nil
	case flags&^knownFlags != 0:
		return frame{}, "unknown flags", nil
	case seq == 0 || seq <= fr.prev:
		return frame{}, "sequence out of order", nil
	}
	b, err := fr.window(off, frameHeaderSize+int(n))
	if err != nil {
		return frame{}, "", err
	}
	if len(b) < frameHeaderSize+int(n) {
		return frame{}, "short frame", nil
	}
	payload := b[frameHeaderSize:]
	if crc32.Update(payloadCRC(payload), castagnoli, b[4:frameHeaderSize]) != sum {
		return frame{}, "checksum mismatch", nil
	}
	return frame{off: off, seq: seq, flags: flags, payload: payload}, "", nil
}

// next returns the next valid frame, or io.EOF at the end.
func (fr *frameReader) next() (frame, error) {
	if fr.off >= fr.end {
		return frame{}, io.EOF
	}
	f, reason, err := fr.at(fr.off)
	if err != nil {
		return frame{}, err
	}
	if reason == "" {
		fr.off, fr.prev = f.end(), f.seq
		return f, nil
	}
	bad := &errCorrupt{off: fr.off, reason: reason}
	for off := fr.off + 1; off < fr.end; off++ {
		f, _, err := fr.at(off)
		if err != nil {
			return frame{}, err
		}
		if f.payload != nil {
			if fr.onCorrupt != nil {
				bad.reason = fmt.Sprintf("%s; %d bytes skipped", bad.reason, off-bad.off)
				fr.onCorrupt(bad)
			}
			fr.off, fr.prev = f.end(), f.seq
			return f, nil
		}
	}
	fr.tail, fr.off = bad.off, fr.end
	return frame{}, io.EOF
}

// skip moves past the frame f returned by next whose payload turned out
// not to be a record: it counts as corrupt, but its length is trusted.
func (fr *frameReader) skip(f frame, reason string) {
	if fr.onCorrupt != nil {
		fr.onCorrupt(&errCorrupt{off: f.off, reason: reason})
	}
}
