package spec

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Before an object is decoded (decodeValue), scanObject reads its structure in
// one pass over the bytes, without recursion and without allocating:
//   - it refuses nesting deeper than MaxDepth, so a deep value is never
//     decoded (decodeValue would recurse up to 10,000 levels);
//   - it refuses invalid UTF-8 inside strings, which decoding would
//     silently replace with U+FFFD;
//   - it estimates the heap that the decoded values will hold;
//   - it cuts the object into its members, so unknown fields are kept as
//     the sender wrote them and batch-level fields can be measured.
//
// The scanner is tolerant: on malformed JSON its results mean nothing, but
// it neither panics nor loops, and the caller reports the syntax error that
// encoding/json finds.

// member is one member of a scanned object.
type member struct {
	key   []byte // as written, quotes included
	value []byte // as written
	mem   int    // heap estimate of the decoded value
	deep  bool   // the value nests deeper than MaxDepth and was not measured
}

// scan is the result of scanObject.
type scan struct {
	members []member
	mem     int // heap estimate of the whole object
	// depth and utf8 are the first problems of each kind, or nil.
	depth, utf8 *FieldError
}

// fail returns the problems found, depth first.
func (s *scan) fail() []FieldError {
	var out []FieldError
	if s.depth != nil {
		out = append(out, *s.depth)
	}
	if s.utf8 != nil {
		out = append(out, *s.utf8)
	}
	return out
}

// frame is an object or array being scanned.
type frame struct {
	array     bool
	expectKey bool
	deep      bool   // a value inside was too deep to scan
	start     int    // offset of the opening bracket
	key       []byte // an object's current member key, as written
	keyLen    int    // the length of key once decoded, at most
	n         int    // members or elements finished
	mem       int    // heap estimate of the keys and values finished
}

// scanObject scans the JSON object data (trimmed, starting with '{'), whose
// own nesting level is level (1 for an event, 2 for a batch-level context,
// which sits at level 2 of each event). prefix names the object in field
// paths ("" for an event). members is appended to and returned in the scan.
func scanObject(data []byte, level int, prefix string, members []member) scan {
	var s scan
	var stack [MaxDepth]frame
	sp := 0
	for i := 0; i < len(data); {
		switch c := data[i]; c {
		case ' ', '\t', '\r', '\n', ':':
			i++
		case ',':
			if sp > 0 && !stack[sp-1].array {
				stack[sp-1].expectKey = true
			}
			i++
		case '{', '[':
			if sp > 0 && level+sp > MaxDepth {
				// Too deep: skip the value without looking inside.
				if s.depth == nil {
					s.depth = &FieldError{Field: fieldPath(prefix, stack[:sp], nil), Rule: "depth",
						Message: "nests objects and arrays more than " + strconv.Itoa(MaxDepth) + " levels deep"}
				}
				end := valueEnd(data, i)
				members = value(stack[:sp], members, data[i:end], 0, true)
				i = end
				continue
			}
			stack[sp] = frame{array: c == '[', expectKey: c == '{', start: i}
			sp++
			i++
		case '}', ']':
			i++
			if sp == 0 {
				continue
			}
			sp--
			f := &stack[sp]
			var cost int
			if f.array {
				cost = costArray(f.n) + f.mem
			} else {
				cost = costObject(f.n) + f.mem
			}
			if sp == 0 {
				s.mem, s.members = cost, members
				return s
			}
			members = value(stack[:sp], members, data[f.start:i], cost, f.deep)
		case '"':
			end, valid, n := scanString(data, i)
			if sp == 0 {
				i = end
				continue
			}
			top := &stack[sp-1]
			if !top.array && top.expectKey {
				top.key, top.keyLen = data[i:end], n
				top.expectKey = false
				if !valid && s.utf8 == nil {
					s.utf8 = utf8Error(fieldPath(prefix, stack[:sp], top.key))
				}
			} else {
				if !valid && s.utf8 == nil {
					s.utf8 = utf8Error(fieldPath(prefix, stack[:sp], nil))
				}
				members = value(stack[:sp], members, data[i:end], costString(n), false)
			}
			i = end
		default: // a number, true, false, null, or a byte that is not JSON
			end := literalEnd(data, i)
			cost := 0
			if c == '-' || c >= '0' && c <= '9' {
				cost = costString(end - i) // a json.Number
			}
			if sp > 0 {
				members = value(stack[:sp], members, data[i:end], cost, false)
			}
			i = end
		}
	}
	s.members = members
	return s
}

// value records a finished value, as written in raw, of cost bytes in the
// innermost frame of stack, and in members when it is a member of the
// scanned object.
func value(stack []frame, members []member, raw []byte, cost int, deep bool) []member {
	f := &stack[len(stack)-1]
	if !f.array {
		cost += costBytes(f.keyLen) // the key string
	}
	f.n++
	f.mem += cost
	f.deep = f.deep || deep
	if len(stack) == 1 && !f.array {
		members = append(members, member{key: f.key, value: raw, mem: cost, deep: deep})
	}
	return members
}

// scanString returns the index just past the JSON string at i, whether its
// bytes are UTF-8, and the length of its text once decoded, at most.
func scanString(data []byte, i int) (end int, valid bool, n int) {
	ascii := true
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return j + 1, ascii || utf8.Valid(data[i+1:j]), n
		case c == '\\':
			if j+1 < len(data) && data[j+1] == 'u' {
				j += 5 // \uXXXX: at most 3 bytes of UTF-8
				n += 3
			} else {
				j++
				n++
			}
		case c >= utf8.RuneSelf:
			ascii = false
			n++
		default:
			n++
		}
	}
	return len(data), ascii || utf8.Valid(data[i+1:]), n
}

// literalEnd returns the index just past the number or literal at i; it
// always moves past i.
func literalEnd(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case ',', '}', ']', ':', '"', '{', '[', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

func utf8Error(path string) *FieldError {
	return &FieldError{Field: path, Rule: "utf8", Message: "must be valid UTF-8"}
}

// maxPathLength bounds the field path named in an error, so that the answer
// to a hostile event stays small.
const maxPathLength = 200

// fieldPath names the value being read in stack, or the member key of its
// innermost object when key is not nil: keys joined with dots, array
// elements as [i] ("properties.products[2].sku").
func fieldPath(prefix string, stack []frame, key []byte) string {
	b := make([]byte, 0, 64)
	b = append(b, prefix...)
	for i, f := range stack {
		var k []byte
		switch {
		case f.array:
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(f.n), 10)
			b = append(b, ']')
			continue
		case i == len(stack)-1 && key != nil:
			k = key
		case f.expectKey:
			continue // between members: nothing to name
		default:
			k = f.key
		}
		if len(b) > 0 {
			b = append(b, '.')
		}
		b = append(b, unquoteKey(k)...)
		if len(b) > maxPathLength {
			break
		}
	}
	if len(b) > maxPathLength {
		cut := maxPathLength
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		b = append(b[:cut], "…"...)
	}
	return string(b)
}

// unquoteKey returns the text of a key as written (quotes included), with
// invalid UTF-8 replaced by U+FFFD.
func unquoteKey(raw []byte) string {
	if len(raw) < 2 {
		return ""
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(bytes.ToValidUTF8(inner, []byte("\uFFFD")))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return string(bytes.ToValidUTF8(inner, []byte("\uFFFD")))
	}
	return s
}

// The heap estimate: what encoding/json (with UseNumber) allocates for the
// values it decodes into interfaces, as upper bounds for Go 1.26 on 64-bit
// platforms, size classes and growth slack included. TestSizeBoundsHeap
// checks them against the heap that decoded events really hold.
const (
	// costEvent is an event struct (the largest, Page, is 320 bytes with
	// its size class) and its type string.
	costEvent = 336
	// costLocation is the *time.Location that time.Parse allocates for an
	// offset that is not a whole number of hours.
	costLocation = 192
)

// costBytes is the heap a string or []byte of n bytes occupies: allocations
// under 16 bytes share 16-byte blocks, larger ones are rounded up to a size
// class (at most a quarter more).
func costBytes(n int) int {
	switch {
	case n <= 0:
		return 0
	case n <= 16:
		return 16
	default:
		return n + n/4 + 8
	}
}

// costString is a decoded string or number of n bytes held in an interface,
// which boxes its 16-byte header; the empty string costs nothing.
func costString(n int) int {
	if n == 0 {
		return 0
	}
	return 16 + costBytes(n)
}

// costObject is a map[string]any of n entries, without its keys and values.
func costObject(n int) int { return costMap(n, 32) }

// costExtra is the map[string][]byte of n unknown fields, without its keys
// and values.
func costExtra(n int) int {
	if n == 0 {
		return 0
	}
	return costMap(n, 40)
}

// costMap is a map of n entries of slot bytes each, as Go's maps lay them
// out: a 48-byte header; up to 8 entries in one group of 8 slots and 8
// control bytes; beyond, tables of up to 1024 slots, grown by doubling at
// 7/8 load.
func costMap(n, slot int) int {
	group := 8 + 8*slot
	switch {
	case n == 0:
		return 48
	case n <= 8:
		return 48 + group + group/8
	}
	c := 16
	for c*7 < n*8 {
		c *= 2
	}
	tables := max(1, c/1024)
	return 48 + 48*tables + c/8*group*5/4
}

// costArray is a []any of n elements held in an interface (a 24-byte
// header), without the elements' own values: 16 bytes each, up to twice
// over as append grows it.
func costArray(n int) int { return 24 + 32*n }

// memOf estimates, by the same model, the heap a value built in Go holds
// (for a Batch built in Go rather than decoded). Values nested deeper than
// MaxDepth, or in a cycle, are not counted.
func memOf(v any) int { return memAt(v, 1) }

func memAt(v any, level int) int {
	if level > MaxDepth {
		return 0
	}
	switch v := v.(type) {
	case nil, bool:
		return 0
	case string:
		return costString(len(v))
	case json.Number:
		return costString(len(v))
	case map[string]any:
		n := costObject(len(v))
		for k, x := range v {
			n += costBytes(len(k)) + memAt(x, level+1)
		}
		return n
	case []any:
		n := costArray(len(v))
		for _, x := range v {
			n += memAt(x, level+1)
		}
		return n
	default:
		return 16 + 64 // another Go value, boxed: a guess
	}
}
