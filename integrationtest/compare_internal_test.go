package integrationtest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

type errs []string

func (e *errs) Helper() {}
func (e *errs) Errorf(format string, args ...any) {
	*e = append(*e, fmt.Sprintf(format, args...))
}

// TestCompareCatchesMangledEvents: the suite compares content, not counts.
// Each backend below holds one event per event sent, but gets one thing
// wrong, and the comparison must say what.
func TestCompareCatchesMangledEvents(t *testing.T) {
	events := Events("cmp")
	want := expectation{}.expect(t, events...)
	good := func() []Record {
		var out []Record
		for _, e := range events {
			raw, err := e.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			r, err := RecordFromJSON(raw)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	var ok errs
	compare(&ok, good(), want)
	if len(ok) != 0 {
		t.Fatalf("an exact copy was reported: %q", ok)
	}
	tests := []struct {
		name   string
		mangle func([]Record) []Record
		want   string
	}{
		{"a changed value", func(r []Record) []Record {
			r[0].Fields["event"] = "order completed"
			return r
		}, `event = "order completed" in the backend, want "Order Completed"`},
		{"a number changed", func(r []Record) []Record {
			r[0].Fields["properties.revenue"] = "12"
			return r
		}, `properties.revenue = "12" in the backend, want "12.5"`},
		{"a field the event did not have", func(r []Record) []Record {
			r[1].Fields["traits.plan"] = "pro"
			return r
		}, "which the event sent did not have"},
		{"the wrong type", func(r []Record) []Record {
			r[2].Type = "track"
			return r
		}, "stored as track, want page"},
		{"an event twice", func(r []Record) []Record { return append(r, r[3]) }, "event cmp-3 2 times"},
		{"an event missing", func(r []Record) []Record { return r[1:] }, "cmp-0 0 times"},
		{"an event not sent", func(r []Record) []Record {
			r[4].MessageID = "other"
			return r
		}, "not expected there"},
		{"no fields read back", func(r []Record) []Record {
			r[5].Fields = nil
			return r
		}, "read back no fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got errs
			compare(&got, tt.mangle(good()), want)
			if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, tt.want) }) {
				t.Errorf("reported %q, want an error containing %q", got, tt.want)
			}
		})
	}
}
