package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// Values are read with jsontext's tokenizer and built here into what
// encoding/json's Decoder with UseNumber builds (map[string]any, []any,
// string, json.Number, bool, nil), with the same rules: the last of
// duplicate names wins, invalid UTF-8 and lone surrogates become U+FFFD.
// It takes half the time of encoding/json's reflection on the same values
// (BenchmarkDecodeValue), and decoding is most of what a request costs.

// valueOptions are encoding/json's rules for names and text.
var valueOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

// valueReader is a pooled tokenizer reading in; empty lets it drop the
// data it read.
type valueReader struct {
	dec   jsontext.Decoder
	in    bytes.Buffer
	empty bytes.Buffer
}

var valueReaders = sync.Pool{New: func() any { return new(valueReader) }}

// decodeValue decodes the one JSON value in data (numbers as json.Number).
// Its error is encoding/json's for the same data, which names the syntax
// error and its offset.
func decodeValue(data []byte) (any, error) {
	r := valueReaders.Get().(*valueReader)
	r.in = *bytes.NewBuffer(data) // the decoder reads a bytes.Buffer's bytes in place
	r.dec.Reset(&r.in, valueOptions...)
	v, err := r.value()
	if err == nil {
		if _, end := r.dec.ReadToken(); end != io.EOF {
			err = errors.New("data after the value")
		}
	}
	r.dec.Reset(&r.empty) // keep no reference to data in the pool
	r.in = bytes.Buffer{}
	valueReaders.Put(r)
	if err != nil {
		if uerr := json.Unmarshal(data, new(any)); uerr != nil {
			err = uerr
		}
		return nil, err
	}
	return v, nil
}

func (r *valueReader) value() (any, error) {
	switch r.dec.PeekKind() {
	case '{':
		if _, err := r.dec.ReadToken(); err != nil {
			return nil, err
		}
		m := make(map[string]any)
		for r.dec.PeekKind() != '}' {
			k, err := r.dec.ReadToken()
			if err != nil {
				return nil, err
			}
			name := k.String() // before the next read voids k
			v, err := r.value()
			if err != nil {
				return nil, err
			}
			m[name] = v
		}
		_, err := r.dec.ReadToken()
		return m, err
	case '[':
		if _, err := r.dec.ReadToken(); err != nil {
			return nil, err
		}
		a := make([]any, 0)
		for r.dec.PeekKind() != ']' {
			v, err := r.value()
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := r.dec.ReadToken()
		return a, err
	case '0':
		raw, err := r.dec.ReadValue()
		return json.Number(raw), err
	}
	t, err := r.dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch t.Kind() {
	case '"':
		return t.String(), nil
	case 't', 'f':
		return t.Bool(), nil
	case 'n':
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected %v", t.Kind())
}
