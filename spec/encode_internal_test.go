package spec

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// The encoder must write exactly what encoding/json writes.

func FuzzAppendStringMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", "<a href=\"x\">&</a>", "tab\tnl\ncr\r\b\f\x00\x1f", "\u2028\u2029", "\xff\xfe", "é日本🎉", `back\slash "quote"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Skip()
		}
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, encoding/json = %s", s, got, want)
		}
	})
}

func FuzzValueMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,-3e-7,1e21,"x<y",true,null,{"b":{}}],"c":12345678901234567890}`, `[]`, `"s"`, `0`, `{"z":1,"a":2,"m":{"y":[],"x":null}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			t.Skip()
		}
		want, err := json.Marshal(v)
		w := &writer{}
		w.value(v)
		if depthOf(v) > MaxDepth {
			// Deeper than an event may be: the writer refuses it.
			if w.err == nil {
				t.Fatalf("writer wrote a value %d levels deep", depthOf(v))
			}
			return
		}
		if (err != nil) != (w.err != nil) {
			t.Fatalf("errors differ: encoding/json %v, writer %v", err, w.err)
		}
		if err == nil && !bytes.Equal(w.b, want) {
			t.Errorf("writer = %s, encoding/json = %s", w.b, want)
		}
	})
}

// depthOf returns the nesting of objects and arrays in v (0 for a scalar).
func depthOf(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			d = max(d, depthOf(x))
		}
	case []any:
		for _, x := range v {
			d = max(d, depthOf(x))
		}
	default:
		return 0
	}
	return d + 1
}

// FuzzAppendCompactMatchesEncodingJSON checks that Extra values are
// written as encoding/json writes a json.RawMessage.
func FuzzAppendCompactMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`{"a" : [1, "<b>&</b>", "\u2028\u2029"]}`, "\"\u2028 \u2029 \xe2\x80\"", ` "x" `, `[{"k":"\"<"}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		raw = bytes.TrimSpace(raw)
		if !json.Valid(raw) {
			t.Skip()
		}
		want, err := json.Marshal(json.RawMessage(raw))
		if err != nil {
			t.Skip()
		}
		if got := appendCompact(nil, raw); !bytes.Equal(got, want) {
			t.Errorf("appendCompact(%q) = %q, encoding/json = %q", raw, got, want)
		}
	})
}

func TestValueFloatsMatchEncodingJSON(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 0.1, 1e-6, 9.9e-7, 1e20, 1e21, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64, -2.5e-9} {
		want, _ := json.Marshal(f)
		w := &writer{}
		w.value(f)
		if !bytes.Equal(w.b, want) {
			t.Errorf("%v: writer %s, encoding/json %s", f, w.b, want)
		}
	}
	w := &writer{}
	w.value(math.NaN())
	if w.err == nil {
		t.Error("NaN must be an error, as in encoding/json")
	}
}

func TestValueRefusesWhatEncodingJSONRefuses(t *testing.T) {
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	for name, v := range map[string]any{
		"cycle":              cyclic,
		"number with space":  json.Number(" 1"),
		"number then object": json.Number(" {\"admin\":true}"),
		"trailing newline":   json.Number("1\n"),
		"not a number":       json.Number("true"),
	} {
		_, jerr := json.Marshal(v)
		w := &writer{}
		w.value(v)
		if jerr == nil || w.err == nil {
			t.Errorf("%s: encoding/json error %v, writer error %v; want both to refuse", name, jerr, w.err)
		}
	}
}

func TestMarshalRefusesOffsetsOfADayOrMore(t *testing.T) {
	e := &Track{Common: Common{Type: TypeTrack, UserID: "u",
		Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 25*3600))}, Event: "E"}
	if _, err := e.MarshalJSON(); err == nil {
		t.Error("MarshalJSON wrote a +25:00 offset, which encoding/json refuses")
	}
}

// FuzzIsNumber checks isNumber, which decides whether a json.Number built
// in Go is written or refused, against encoding/json's grammar.
func FuzzIsNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "1.5e+3", "01", "1.", ".5", "-", "1e", " 1", "1 ", "0x1", "NaN", "", "9007199254740993"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := s != "" && strings.TrimSpace(s) == s && json.Valid([]byte(s)) && (s[0] == '-' || '0' <= s[0] && s[0] <= '9')
		if got := isNumber(s); got != want {
			t.Fatalf("isNumber(%q) = %v, want %v", s, got, want)
		}
	})
}
