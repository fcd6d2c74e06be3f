package queue_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

func testRecord(t testing.TB) queue.Record {
	t.Helper()
	raw := `{"type":"track","messageId":"m-1","userId":"u-1","event":"Order Completed",
		"properties":{"revenue":12.5,"n":9007199254740993,"items":[{"sku":"a"}]},
		"context":{"ip":"203.0.113.9","library":{"name":"analytics-go"}},
		"timestamp":"2026-01-02T03:04:05.123+01:00","custom":{"kept":true}}`
	e, err := spec.Decode([]byte(raw), "")
	if err != nil {
		t.Fatal(err)
	}
	spec.Enrich(e, time.Date(2026, 1, 2, 3, 4, 6, 789, time.FixedZone("", 2*3600)), "")
	return queue.Record{
		Seq:      7,
		Event:    e,
		Targets:  []string{"BigQuery", "Customer.io"},
		Appended: time.Date(2026, 1, 2, 3, 4, 6, 999, time.UTC),
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := testRecord(t)
	b, err := queue.EncodeRecord([]byte("prefix"), r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("prefix")) || b[len("prefix")] != queue.RecordVersion {
		t.Fatalf("EncodeRecord did not append to dst after a version byte: %q", b[:16])
	}
	got, err := queue.DecodeRecord(b[len("prefix"):])
	if err != nil {
		t.Fatal(err)
	}
	want, _ := r.Event.MarshalJSON()
	gotJSON, _ := got.Event.MarshalJSON()
	if !bytes.Equal(gotJSON, want) {
		t.Errorf("event:\n got %s\nwant %s", gotJSON, want)
	}
	if got.Size != len(want) {
		t.Errorf("Size = %d, want the JSON length %d", got.Size, len(want))
	}
	if !slices.Equal(got.Targets, r.Targets) {
		t.Errorf("Targets = %q, want %q", got.Targets, r.Targets)
	}
	if !got.Appended.Equal(r.Appended) {
		t.Errorf("Appended = %v, want %v", got.Appended, r.Appended)
	}
	// spec.Decode ignores receivedAt in the JSON; the payload restores it,
	// offset included.
	gr, wr := got.Event.Fields().ReceivedAt, r.Event.Fields().ReceivedAt
	if !gr.Equal(wr) || gr.Format(time.RFC3339Nano) != wr.Format(time.RFC3339Nano) {
		t.Errorf("ReceivedAt = %v, want %v", gr, wr)
	}
	if got.Seq != 0 || got.Redelivered {
		t.Errorf("Seq, Redelivered = %d, %v; the payload carries neither", got.Seq, got.Redelivered)
	}

	h, raw, err := queue.DecodeRecordHeader(b[len("prefix"):])
	if err != nil {
		t.Fatal(err)
	}
	if h.MessageID != "m-1" || !bytes.Equal(raw, want) || !slices.Equal(h.Targets, r.Targets) {
		t.Errorf("DecodeRecordHeader = %+v, %s", h, raw)
	}
}

func TestRecordZeroTimesAndNoTargets(t *testing.T) {
	e := spec.New(spec.TypeIdentify)
	e.Fields().UserID = "u"
	b, err := queue.EncodeRecord(nil, queue.Record{Event: e})
	if err != nil {
		t.Fatal(err)
	}
	got, err := queue.DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Appended.IsZero() || !got.Event.Fields().ReceivedAt.IsZero() || got.Targets != nil {
		t.Errorf("got %+v, want zero times and no targets", got)
	}
	if got.Event.Fields().UserID != "u" || got.Event.Fields().Type != spec.TypeIdentify {
		t.Errorf("event = %+v", got.Event)
	}
}

func TestEncodeRecordErrors(t *testing.T) {
	if _, err := queue.EncodeRecord(nil, queue.Record{}); err == nil {
		t.Error("EncodeRecord without an event: no error")
	}
	e := spec.New(spec.TypeTrack)
	e.Fields().Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := queue.EncodeRecord(nil, queue.Record{Event: e}); err == nil {
		t.Error("EncodeRecord of an event MarshalJSON refuses: no error")
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	good, err := queue.EncodeRecord(nil, testRecord(t))
	if err != nil {
		t.Fatal(err)
	}
	// A payload as EncodeRecord would write it but for a receivedAt in
	// year 10000, which the event's encoder could not write back.
	zero, _ := time.Time{}.MarshalBinary()
	far, _ := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).MarshalBinary()
	farFuture := append([]byte{queue.RecordVersion, 0, byte(len(zero))}, zero...)
	farFuture = append(append(farFuture, byte(len(far))), far...)
	farFuture = append(farFuture, 0)
	farFuture = append(farFuture, `{"type":"track"}`...)
	near, _ := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).MarshalBinary()
	if _, err := queue.DecodeRecord(bytes.Replace(farFuture, far, near, 1)); err != nil {
		t.Fatalf("the same payload with year 2000: %v", err)
	}

	for name, b := range map[string][]byte{
		"empty":          nil,
		"version":        append([]byte{2}, good[1:]...),
		"truncated":      good[:12],
		"no event":       good[:bytes.IndexByte(good, '{')],
		"bad event":      append(good[:bytes.IndexByte(good, '{')], `{"type":"nope"}`...),
		"target count":   {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"varint":         {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"bad time":       {1, 0, 3, 9, 9, 9},
		"year too large": farFuture,
	} {
		_, err := queue.DecodeRecord(b)
		if !errors.Is(err, queue.ErrBadRecord) {
			t.Errorf("%s: DecodeRecord error = %v, want ErrBadRecord", name, err)
		}
	}
}

// FuzzDecodeRecord checks that DecodeRecord never panics, and that a record
// it accepts re-encodes to a payload that decodes to an equal record, and
// whose next round trip is byte for byte the same.
func FuzzDecodeRecord(f *testing.F) {
	r := testRecord(f)
	b, err := queue.EncodeRecord(nil, r)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	files, _ := filepath.Glob(filepath.Join("..", "spec", "testdata", "*.json"))
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		e, err := spec.Decode(raw, "")
		if err != nil {
			continue
		}
		if b, err := queue.EncodeRecord(nil, queue.Record{Event: e, Targets: []string{"x"}}); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte{1, 0, 0, 0, 0, '{', '}'})
	f.Add([]byte{1, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r1, err := queue.DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, queue.ErrBadRecord) {
				t.Fatalf("error %v does not wrap ErrBadRecord", err)
			}
			return
		}
		b2, err := queue.EncodeRecord(nil, r1)
		if err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		r2, err := queue.DecodeRecord(b2)
		if err != nil {
			t.Fatalf("a re-encoded record does not decode: %v", err)
		}
		if !sameRecord(r1, r2) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", r1, r2)
		}
		b3, err := queue.EncodeRecord(nil, r2)
		if err != nil || !bytes.Equal(b2, b3) {
			t.Fatalf("second round trip differs (%v):\n%q\n%q", err, b2, b3)
		}
	})
}

func sameRecord(a, b queue.Record) bool {
	ja, erra := a.Event.MarshalJSON()
	jb, errb := b.Event.MarshalJSON()
	return erra == nil && errb == nil && bytes.Equal(ja, jb) &&
		a.Size == b.Size && slices.Equal(a.Targets, b.Targets) &&
		a.Appended.Equal(b.Appended) &&
		a.Event.Fields().ReceivedAt.Equal(b.Event.Fields().ReceivedAt)
}
