package queue_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
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
	e := spec.Event(&spec.Identify{Common: spec.Common{Type: spec.TypeIdentify}})
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
	// On error the buffer comes back as it was, whether the record's
	// header or the event's JSON failed.
	badJSON := spec.Event(&spec.Track{Common: spec.Common{Type: spec.TypeTrack}})
	badJSON.Fields().Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	badHeader := spec.Event(&spec.Track{Common: spec.Common{Type: spec.TypeTrack}})
	badHeader.Fields().ReceivedAt = time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 40000*60)) // no binary form
	for name, e := range map[string]spec.Event{"an event MarshalJSON refuses": badJSON, "a receivedAt with no binary form": badHeader} {
		dst := append(make([]byte, 0, 4096), "before"...)
		got, err := queue.EncodeRecord(dst, queue.Record{Event: e, Targets: []string{"a"}})
		if err == nil {
			t.Errorf("EncodeRecord of %s: no error", name)
		}
		if string(got) != "before" {
			t.Errorf("EncodeRecord of %s returned %q, want the buffer as it was", name, got)
		}
	}
	got, err := queue.AppendRecord(append(make([]byte, 0, 4096), "before"...), []string{"a"}, time.Now(), badHeader.Fields(), "", nil)
	if err == nil || string(got) != "before" {
		t.Errorf("AppendRecord with a receivedAt with no binary form = %q, %v; want the buffer as it was and an error", got, err)
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
		"version":        append([]byte{3}, good[1:]...),
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
// whose next round trip is byte for byte the same. Size, the length of the
// event's JSON, may change in the first round trip only: the input's JSON
// need not be what MarshalJSON writes (spacing, a receivedAt different from
// the header's).
func FuzzDecodeRecord(f *testing.F) {
	r := testRecord(f)
	b, err := queue.EncodeRecord(nil, r)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	r.TraceParent = testTraceParent
	if b, err = queue.EncodeRecord(nil, r); err != nil {
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
	f.Add([]byte{2, 0, 0, 0, 0, 0, '{', '}'})
	f.Add([]byte{2, 0, 0, 0, 0, 2, 'x', 'y', '{', '}'})
	f.Add([]byte{2, 0, 0, 0, 0, 9, '{', '}'})
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
		j1, _ := r1.Event.MarshalJSON()
		if r2.Size != len(j1) || !sameRecord(r1, r2, false) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", r1, r2)
		}
		b3, err := queue.EncodeRecord(nil, r2)
		if err != nil || !bytes.Equal(b2, b3) {
			t.Fatalf("second round trip differs (%v):\n%q\n%q", err, b2, b3)
		}
		if r3, err := queue.DecodeRecord(b3); err != nil || !sameRecord(r2, r3, true) {
			t.Fatalf("second round trip changed the record (%v):\n%+v\n%+v", err, r2, r3)
		}
	})
}

func sameRecord(a, b queue.Record, size bool) bool {
	ja, erra := a.Event.MarshalJSON()
	jb, errb := b.Event.MarshalJSON()
	return erra == nil && errb == nil && bytes.Equal(ja, jb) &&
		(!size || a.Size == b.Size) && slices.Equal(a.Targets, b.Targets) &&
		a.Appended.Equal(b.Appended) && a.TraceParent == b.TraceParent &&
		a.Event.Fields().ReceivedAt.Equal(b.Event.Fields().ReceivedAt)
}

const testTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestRecordTraceParent: a record with a TraceParent is written as version
// 2 and read back with it; one without is written as version 1, byte for
// byte as before the field existed, so that earlier releases read it.
func TestRecordTraceParent(t *testing.T) {
	r := testRecord(t)
	r.TraceParent = testTraceParent
	b, err := queue.EncodeRecord(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != queue.RecordVersionTrace {
		t.Errorf("version %d, want %d", b[0], queue.RecordVersionTrace)
	}
	got, err := queue.DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !sameRecord(got, r, false) || got.TraceParent != testTraceParent {
		t.Errorf("round trip: %+v, want %+v", got, r)
	}
	if h, _, err := queue.DecodeRecordHeader(b); err != nil || h.TraceParent != testTraceParent || h.MessageID != "m-1" {
		t.Errorf("DecodeRecordHeader = %+v, %v", h, err)
	}

	// Version 1, as written before: each field by hand.
	r.TraceParent = ""
	raw, _ := r.Event.MarshalJSON()
	appended, _ := r.Appended.MarshalBinary()
	received, _ := r.Event.Fields().ReceivedAt.MarshalBinary()
	v1 := []byte{1, 2, 8}
	v1 = append(v1, "BigQuery"...)
	v1 = append(append(v1, 11), "Customer.io"...)
	v1 = append(append(v1, byte(len(appended))), appended...)
	v1 = append(append(v1, byte(len(received))), received...)
	v1 = append(append(v1, 3), "m-1"...)
	v1 = append(v1, raw...)
	if b, err := queue.EncodeRecord(nil, r); err != nil || !bytes.Equal(b, v1) {
		t.Errorf("a record without TraceParent is not written as version 1 (%v):\n got %q\nwant %q", err, b, v1)
	}
	if got, err := queue.DecodeRecord(v1); err != nil || !sameRecord(got, r, false) || got.Size != len(raw) || got.TraceParent != "" {
		t.Errorf("version 1 payload: %+v, %v", got, err)
	}
	// A version 2 payload cut inside its traceparent is refused.
	if _, err := queue.DecodeRecord(b[:bytes.Index(b, []byte("00-4bf9"))+4]); !errors.Is(err, queue.ErrBadRecord) {
		t.Errorf("truncated traceparent: %v, want ErrBadRecord", err)
	}
}

// TestDecodeRecordKeepsTheEventsJSON checks that the JSON a decoded record
// keeps for its event is what the event's MarshalJSON writes afresh, for
// each of the SDK fixtures, with a receivedAt in a zone other than UTC.
func TestDecodeRecordKeepsTheEventsJSON(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "spec", "testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	received := time.Date(2026, 1, 2, 3, 4, 6, 789, time.FixedZone("CET", 3600))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var events []spec.Event
		if b, err := spec.DecodeBatch(data); err == nil && len(b.Items) > 0 {
			for _, item := range b.Items {
				e, err := spec.Decode(item, "")
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				b.Merge(e)
				events = append(events, e)
			}
		} else if e, err := spec.Decode(data, ""); err == nil {
			events = append(events, e)
		} else {
			continue
		}
		for _, e := range events {
			spec.Enrich(e, received, "203.0.113.9")
			payload, err := queue.EncodeRecord(nil, queue.Record{Event: e, Targets: []string{"X"}})
			if err != nil {
				t.Fatal(err)
			}
			rec, err := queue.DecodeRecord(payload)
			if err != nil {
				t.Fatal(err)
			}
			kept, err := rec.Event.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			// A copy of the event's struct keeps nothing: it is written afresh.
			fresh := reflect.New(reflect.TypeOf(rec.Event).Elem())
			fresh.Elem().Set(reflect.ValueOf(rec.Event).Elem())
			want, err := fresh.Interface().(spec.Event).MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(kept, want) {
				t.Errorf("%s: the record kept\n%s\nMarshalJSON writes\n%s", filepath.Base(name), kept, want)
			}
			// And it is kept: a change (against the rules) does not show.
			rec.Event.Fields().MessageID = "changed"
			if again, _ := rec.Event.MarshalJSON(); !bytes.Equal(again, kept) {
				t.Errorf("%s: the decoded record's event keeps no JSON: %s", filepath.Base(name), again)
			}
		}
	}
}
