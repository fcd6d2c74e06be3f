package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// stdValue is what decodeValue replaces: encoding/json's Decoder with
// UseNumber, on exactly one value.
func stdValue(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the value")
	}
	return v, nil
}

func TestDecodeValueLikeEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{"a":1,"a":2}`, `{"a":"\ud800","\udfff":"x"}`, "{\"a\":\"\xff\xfe\",\"\xc3\":1}",
		`[1, -0.5e-3, 12345678901234567890123, true, false, null, "", {}, []]`,
		`{"a":{"b":[{"c":"\u00e9\n\"\\\/"}]}}`, ` 1 `, `"x"`, `null`,
		`{"a":1}x`, `{"a":1} {}`, `{"a":}`, `{"a" 1}`, `[1,]`, `{`, ``, `01`, `{"a":NaN}`, `"\x"`,
		// Surrogates: a pair, a lone half before text, a low half first,
		// a high half before a broken or short escape.
		`"\ud83d\ude00"`, `"\ud800\u0041"`, `"\udc00\ud800"`, `"\ud800\\"`, `"\ud800\u12"`, `"\ud800"`,
		"\"a\xed\xa0\x80\xf0\x9f\x98\x80\"", `"\uD83D\uDE00\uFFFD"`, "\"\x01\"", `"\'"`,
		// Numbers.
		`-`, `-0`, `1.`, `1e`, `1e+`, `.5`, `1.5E+3`, `-01`, `0.0e-0`, `2x`, `[1 2]`, `{"a":1,}`, `{,}`,
		`tru`, `nul`, `[true,false,null]`, "\t\r\n[ ]\n",
		// Objects as events are read: names repeated, past 32 members.
		`{"a":1,"b":2,"a":3}`, `{"a":{},"a":[],"a":null}`, ` {"a":1} `, `{"a":1,"a":2}{`,
		`{` + strings.Repeat(`"k":1,`, 40) + `"k":2,"z":0}`,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
	} {
		want, wantErr := stdValue([]byte(in))
		got, err := decodeValue([]byte(in))
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%q: error %v, encoding/json: %v", in, err, wantErr)
			continue
		}
		if uerr := json.Unmarshal([]byte(in), new(any)); err != nil && err.Error() != uerr.Error() {
			t.Errorf("%q: error %q, want encoding/json's %q", in, err, uerr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: got %#v, encoding/json: %#v", in, got, want)
		}
		checkFields(t, []byte(in), want, wantErr)
	}
}

// checkFields checks that decodeFields reads an object as encoding/json
// does: each name once, with its last value, and an error exactly when
// encoding/json has one.
func checkFields(t *testing.T, data []byte, want any, wantErr error) {
	t.Helper()
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return
	}
	fs, err := decodeFields(data, nil)
	if (err != nil) != (wantErr != nil) {
		t.Errorf("%q: decodeFields error %v, encoding/json: %v", data, err, wantErr)
		return
	}
	if err != nil {
		return
	}
	m := make(map[string]any, len(fs))
	for _, f := range fs {
		if _, dup := m[f.key]; dup {
			t.Errorf("%q: decodeFields gave %q twice", data, f.key)
			return
		}
		m[f.key] = f.value
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("%q: decodeFields gave %#v, encoding/json: %#v", data, m, want)
	}
}

// TestEscapedStringsCostTheirSize: a value of many short strings with
// escapes allocates in proportion to its size. A buffer sized by the rest
// of the input, not by the string, made 8,000 of them cost 300 MB.
func TestEscapedStringsCostTheirSize(t *testing.T) {
	data := []byte(`{"a":[` + strings.TrimSuffix(strings.Repeat(`"\n",`, 8000), ",") + `]}`)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	if _, err := decodeValue(data); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&m1)
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 32*uint64(len(data)) {
		t.Errorf("decoding %d bytes allocated %d", len(data), alloc)
	}
}

// FuzzDecodeValue checks decodeValue against encoding/json on any input:
// the same values, and an error exactly when encoding/json has one.
func FuzzDecodeValue(f *testing.F) {
	addFuzzSeeds(f, func(data []byte) { f.Add(data) })
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantErr := stdValue(data)
		got, err := decodeValue(data)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%q: error %v, encoding/json: %v", data, err, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: got %#v, encoding/json: %#v", data, got, want)
		}
		checkFields(t, data, want, wantErr)
	})
}

// BenchmarkDecodeValue compares decodeValue with the encoding/json Decoder
// it replaces, on the 600-byte track call.
func BenchmarkDecodeValue(b *testing.B) {
	data := []byte(benchTrack)
	b.Run("spec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeValue(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("spec-escaped", func(b *testing.B) {
		// The same call with every string escaped where JSON allows it.
		escaped := bytes.ReplaceAll(data, []byte("/"), []byte(`\/`))
		escaped = bytes.ReplaceAll(escaped, []byte("e"), []byte(`\u0065`))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeValue(escaped); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
