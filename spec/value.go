package spec

import (
	"encoding/json"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// Values are parsed here, by hand, into what encoding/json's Decoder with
// UseNumber builds (map[string]any, []any, string, json.Number, bool, nil),
// with the same rules: the last of duplicate names wins, invalid UTF-8 and
// lone surrogates become U+FFFD, nesting stops at 10,000 levels. Decoding is
// the largest part of what a request costs. On the 600-byte track call
// (BenchmarkDecodeValue) this parser, which knows only these types, takes
// 40% of the time of encoding/json's reflection and 75% of that of a
// general tokenizer (go-json-experiment's jsontext, used before); its 71
// allocations, as many as jsontext's, are most of what is left.
// FuzzDecodeValue holds it to encoding/json on any input. On an error the
// message is encoding/json's, which names the problem and its offset.

// maxNesting is encoding/json's limit on nested objects and arrays.
const maxNesting = 10000

// errSyntax is returned should encoding/json accept what the parser
// refused: for a value, never while the two agree; for decodeFields, JSON
// that is valid but not an object (which its caller refuses before).
var errSyntax = errors.New("spec: invalid JSON")

// decodeValue decodes the one JSON value in data (numbers as json.Number).
func decodeValue(data []byte) (any, error) {
	p := parser{data: data}
	v, ok := p.value()
	if err := p.end(ok); err != nil {
		return nil, err
	}
	return v, nil
}

// end checks that only whitespace follows a value read with success ok,
// and describes the syntax error otherwise.
func (p *parser) end(ok bool) error {
	if ok {
		p.space()
		if p.i == len(p.data) {
			return nil
		}
	}
	if err := json.Unmarshal(p.data, new(any)); err != nil {
		return err
	}
	return errSyntax
}

// field is one member of a decoded object.
type field struct {
	key   string
	value any
}

// decodeFields decodes the JSON object data into its members, appended to
// fs, as decodeValue would into a map: the last of duplicate names is
// kept. An event's own members are read once each, so a slice serves them
// with less work than a map (BenchmarkDecodeTrack).
func decodeFields(data []byte, fs []field) ([]field, error) {
	p := parser{data: data}
	ok := p.next() == '{'
	if ok {
		fs, ok = p.fields(fs)
	}
	if err := p.end(ok); err != nil {
		return nil, err
	}
	return lastOfEach(fs), nil
}

// lastOfEach drops the members whose name comes again later in fs.
func lastOfEach(fs []field) []field {
	out := fs[:0] // written at or before where it reads
	if len(fs) <= 32 {
	next:
		for i, f := range fs {
			for _, g := range fs[i+1:] {
				if g.key == f.key {
					continue next
				}
			}
			out = append(out, f)
		}
		return out
	}
	// No size hint: names given many times would size the map for all.
	last := make(map[string]int)
	for i, f := range fs {
		last[f.key] = i
	}
	for i, f := range fs {
		if last[f.key] == i {
			out = append(out, f)
		}
	}
	return out
}

// parser reads JSON from data at i; depth counts the objects and arrays
// open.
type parser struct {
	data  []byte
	i     int
	depth int
}

func (p *parser) space() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next skips whitespace and returns the next byte, 0 at the end.
func (p *parser) next() byte {
	p.space()
	if p.i < len(p.data) {
		return p.data[p.i]
	}
	return 0
}

func (p *parser) value() (any, bool) {
	switch c := p.next(); c {
	case '{':
		return p.object()
	case '[':
		return p.array()
	case '"':
		s, ok := p.str()
		return s, ok
	case 't':
		return true, p.literal("true")
	case 'f':
		return false, p.literal("false")
	case 'n':
		return nil, p.literal("null")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return p.number()
		}
		return nil, false
	}
}

func (p *parser) literal(word string) bool {
	if len(p.data)-p.i < len(word) || string(p.data[p.i:p.i+len(word)]) != word {
		return false
	}
	p.i += len(word)
	return true
}

func (p *parser) object() (any, bool) {
	m := make(map[string]any)
	if !p.members(func(k string, v any) { m[k] = v }) {
		return nil, false
	}
	return m, true
}

// fields is object appending the members to fs, duplicates included.
func (p *parser) fields(fs []field) ([]field, bool) {
	ok := p.members(func(k string, v any) { fs = append(fs, field{k, v}) })
	return fs, ok
}

// members reads an object at its opening brace, giving each member to add.
func (p *parser) members(add func(k string, v any)) bool {
	if p.depth++; p.depth > maxNesting {
		return false
	}
	p.i++ // {
	if p.next() == '}' {
		p.i++
		p.depth--
		return true
	}
	for {
		if p.next() != '"' {
			return false
		}
		k, ok := p.str()
		if !ok || p.next() != ':' {
			return false
		}
		p.i++
		v, ok := p.value()
		if !ok {
			return false
		}
		add(k, v)
		switch p.next() {
		case ',':
			p.i++
		case '}':
			p.i++
			p.depth--
			return true
		default:
			return false
		}
	}
}

func (p *parser) array() (any, bool) {
	if p.depth++; p.depth > maxNesting {
		return nil, false
	}
	p.i++ // [
	a := make([]any, 0)
	if p.next() == ']' {
		p.i++
		p.depth--
		return a, true
	}
	for {
		v, ok := p.value()
		if !ok {
			return nil, false
		}
		a = append(a, v)
		switch p.next() {
		case ',':
			p.i++
		case ']':
			p.i++
			p.depth--
			return a, true
		default:
			return nil, false
		}
	}
}

// number reads a number as written, checked against JSON's grammar.
func (p *parser) number() (any, bool) {
	end := numberEnd(p.data, p.i)
	if end < 0 {
		return nil, false
	}
	n := json.Number(p.data[p.i:end])
	p.i = end
	return n, true
}

// numberEnd returns the offset just past the JSON number at i in d, or -1
// if d holds none there.
func numberEnd[T string | []byte](d T, i int) int {
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		i = digits(d, i)
	default:
		return -1
	}
	if i < len(d) && d[i] == '.' {
		if i++; i == len(d) || d[i] < '0' || d[i] > '9' {
			return -1
		}
		i = digits(d, i)
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		if i++; i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i == len(d) || d[i] < '0' || d[i] > '9' {
			return -1
		}
		i = digits(d, i)
	}
	return i
}

// digits returns the offset of the first non-digit at or after i.
func digits[T string | []byte](d T, i int) int {
	for i < len(d) && '0' <= d[i] && d[i] <= '9' {
		i++
	}
	return i
}

// str reads a string at its opening quote. A string without escapes in
// valid UTF-8, the common case, is copied once.
func (p *parser) str() (string, bool) {
	d := p.data
	start := p.i + 1
	for i := start; i < len(d); {
		switch c := d[i]; {
		case c == '"':
			p.i = i + 1
			return string(d[start:i]), true
		case c == '\\' || c < ' ':
			return p.unquote(start, i)
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size == 1 {
				return p.unquote(start, i)
			}
			i += size
		}
	}
	return "", false
}

// unquote reads the rest of a string whose bytes from start to i need no
// change, as encoding/json's unquote does.
func (p *parser) unquote(start, i int) (string, bool) {
	d := p.data
	// The string's own bytes as written bound what it decodes to, but for
	// invalid UTF-8 (each byte becomes three); the rest of data does not,
	// and sizing by it would make many short strings cost quadratic memory.
	end := i
	for end < len(d) && d[end] != '"' {
		if d[end] == '\\' {
			end++
		}
		end++
	}
	b := make([]byte, 0, min(end, len(d))-start)
	b = append(b, d[start:i]...)
	for i < len(d) {
		switch c := d[i]; {
		case c == '"':
			p.i = i + 1
			return string(b), true
		case c < ' ':
			return "", false
		case c == '\\':
			if i+1 == len(d) {
				return "", false
			}
			switch e := d[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := hex4(d[i+2:])
				if r < 0 {
					return "", false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// A pair is consumed whole; anything else leaves
					// U+FFFD and the next escape to be read on its own.
					if len(d)-i >= 2 && d[i] == '\\' && d[i+1] == 'u' {
						if pair := utf16.DecodeRune(r, hex4(d[i+2:])); pair != utf8.RuneError {
							b = utf8.AppendRune(b, pair)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
				continue
			default:
				return "", false
			}
			i += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(d[i:])
			b = utf8.AppendRune(b, r)
			i += size
		}
	}
	return "", false
}

// hex4 returns the value of the four hex digits that d starts with, or -1.
func hex4(d []byte) rune {
	if len(d) < 4 {
		return -1
	}
	var r rune
	for _, c := range d[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
