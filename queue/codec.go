package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/opentrackhq/opentrack/spec"
)

// Versions of the record payload, its first byte. [EncodeRecord] writes
// RecordVersion for a record without a TraceParent, so that such a payload
// stays readable by earlier releases, and RecordVersionTrace for one with a
// TraceParent. [DecodeRecord] reads both.
const (
	RecordVersion      = 1
	RecordVersionTrace = 2
)

// ErrBadRecord is wrapped by the errors of [DecodeRecord] and
// [DecodeRecordHeader] for a payload they cannot read.
var ErrBadRecord = errors.New("queue: bad record")

// RecordHeader is what a record payload carries before its event, so that a
// reader can route or deduplicate a record without decoding the event.
type RecordHeader struct {
	// Targets are the record's Targets.
	Targets []string
	// Appended is the record's Appended time.
	Appended time.Time
	// ReceivedAt is the event's ReceivedAt: [spec.Decode] ignores a
	// receivedAt in the JSON (a sender's is not trusted), so the payload
	// keeps the collector's own beside the event.
	ReceivedAt time.Time
	// MessageID is the event's messageId.
	MessageID string
	// TraceParent is the record's TraceParent; empty in a version 1
	// payload.
	TraceParent string
}

// EncodeRecord appends to dst the payload that durable queues store for r,
// and returns the extended slice. The payload holds, in this order:
//
//	version     1 byte, RecordVersion, or RecordVersionTrace when r.TraceParent is set
//	targets     uvarint count, then each as uvarint length + bytes
//	appended    uvarint length + time.Time binary form (r.Appended)
//	receivedAt  uvarint length + time.Time binary form (the event's ReceivedAt)
//	messageId   uvarint length + bytes
//	traceParent uvarint length + bytes (r.TraceParent); RecordVersionTrace only
//	event       the rest: the event as Segment JSON (its MarshalJSON)
//
// On error it returns dst unchanged.
//
// The targets come first so that a reader can skip records that are not for
// it by reading a few bytes. Seq, Size and Redelivered are not part of the
// payload: the queue knows the first, the event's JSON length is the second,
// and the third is a reader's to set.
func EncodeRecord(dst []byte, r Record) ([]byte, error) {
	if r.Event == nil {
		return dst, fmt.Errorf("queue: encode record: no event")
	}
	b, err := AppendRecord(dst, r.Targets, r.Appended, r.Event.Fields(), r.TraceParent, nil)
	if err != nil {
		return dst, err
	}
	if b, err = spec.AppendJSON(b, r.Event); err != nil {
		return dst, fmt.Errorf("queue: encode record: %w", err)
	}
	return b, nil
}

// AppendRecord is [EncodeRecord] for a caller that already holds the event's
// JSON (raw, from its MarshalJSON) and its common fields c. With raw nil it
// appends the payload up to the event, for the caller to append the event's
// JSON itself ([spec.AppendJSON], [spec.AppendWithJSON]). On error it
// returns dst unchanged.
func AppendRecord(dst []byte, targets []string, appended time.Time, c *spec.Common, traceParent string, raw []byte) ([]byte, error) {
	n := len(dst)
	version := byte(RecordVersion)
	if traceParent != "" {
		version = RecordVersionTrace
	}
	dst = append(dst, version)
	dst = binary.AppendUvarint(dst, uint64(len(targets)))
	for _, t := range targets {
		dst = appendString(dst, t)
	}
	var err error
	if dst, err = appendTime(dst, appended); err != nil {
		return dst[:n], fmt.Errorf("queue: encode record: appended: %w", err)
	}
	if dst, err = appendTime(dst, c.ReceivedAt); err != nil {
		return dst[:n], fmt.Errorf("queue: encode record: receivedAt: %w", err)
	}
	dst = appendString(dst, c.MessageID)
	if traceParent != "" {
		dst = appendString(dst, traceParent)
	}
	return append(dst, raw...), nil
}

// DecodeRecord reads a payload written by [EncodeRecord]. The record's Event
// is decoded with [spec.Decode] and its ReceivedAt restored from the payload;
// it keeps the payload's JSON ([spec.DecodeStored]), so that integrations
// writing it again get those bytes rather than a second encoding;
// Size is the length of the event's JSON; Seq is zero. A payload that is not
// a whole, valid record is an error wrapping [ErrBadRecord].
func DecodeRecord(b []byte) (Record, error) {
	h, raw, err := DecodeRecordHeader(b)
	if err != nil {
		return Record{}, err
	}
	e, err := spec.DecodeStored(raw, h.ReceivedAt) // raw is what the event's MarshalJSON wrote
	if err != nil {
		return Record{}, fmt.Errorf("%w: event: %w", ErrBadRecord, err)
	}
	return Record{
		Event:       e,
		Targets:     h.Targets,
		Size:        len(raw),
		Appended:    h.Appended,
		TraceParent: h.TraceParent,
	}, nil
}

// DecodeRecordHeader reads the header of a payload written by
// [EncodeRecord] and returns it with the event's JSON, which is a sub-slice
// of b and is not checked.
func DecodeRecordHeader(b []byte) (RecordHeader, []byte, error) {
	var h RecordHeader
	d := decoder{b: b}
	v := d.byte()
	if d.err == nil && v != RecordVersion && v != RecordVersionTrace {
		return h, nil, fmt.Errorf("%w: version %d, want %d or %d", ErrBadRecord, v, RecordVersion, RecordVersionTrace)
	}
	n := d.uvarint()
	// Each target takes at least its one-byte length: a count larger
	// than what is left cannot be true and must not size an allocation.
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail("target count")
	}
	if d.err == nil && n > 0 {
		h.Targets = make([]string, n)
		for i := range h.Targets {
			h.Targets[i] = d.string()
		}
	}
	h.Appended = d.time()
	h.ReceivedAt = d.time()
	h.MessageID = d.string()
	if v == RecordVersionTrace {
		h.TraceParent = d.string()
	}
	if d.err == nil && len(d.b) == 0 {
		d.fail("event")
	}
	if d.err != nil {
		return RecordHeader{}, nil, d.err
	}
	// The event's encoder refuses years outside [0, 9999]: a receivedAt it
	// could not write back is not one EncodeRecord wrote.
	if y := h.ReceivedAt.Year(); !h.ReceivedAt.IsZero() && (y < 0 || y > 9999) {
		return RecordHeader{}, nil, fmt.Errorf("%w: receivedAt year %d out of range", ErrBadRecord, y)
	}
	if _, off := h.ReceivedAt.Zone(); off <= -24*60*60 || off >= 24*60*60 {
		return RecordHeader{}, nil, fmt.Errorf("%w: receivedAt offset out of range", ErrBadRecord)
	}
	return h, d.b, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendTime(dst []byte, t time.Time) ([]byte, error) {
	tb, err := t.MarshalBinary()
	if err != nil {
		return dst, err
	}
	dst = binary.AppendUvarint(dst, uint64(len(tb)))
	return append(dst, tb...), nil
}

// decoder reads the fields of a payload; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or invalid %s", ErrBadRecord, what)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail("version")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes("string")) }

func (d *decoder) time() time.Time {
	b := d.bytes("time")
	if d.err != nil {
		return time.Time{}
	}
	var t time.Time
	if err := t.UnmarshalBinary(b); err != nil {
		d.err = fmt.Errorf("%w: time: %w", ErrBadRecord, err)
		return time.Time{}
	}
	return t
}
