package spec

import (
	"encoding/json"
)

// The batch envelope is read without decoding its events twice: the body is
// checked once with json.Valid, then cut into its members and the batch into
// its items by the small scanner below, which may assume valid JSON. Each
// item is decoded (and checked again) by Decode.

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// valueEnd returns the index just past the JSON value starting at i.
func valueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = stringEnd(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // a number, true, false or null
		for i < len(data) {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return i
			}
			i++
		}
		return i
	}
}

// stringEnd returns the index just past the JSON string starting at i.
func stringEnd(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// members calls fn with each member of the valid JSON object data, the key
// unquoted and the value as raw JSON (a sub-slice of data).
func members(data []byte, fn func(key string, value []byte)) {
	i := skipSpace(data, 0) + 1 // past '{'
	for {
		i = skipSpace(data, i)
		if i >= len(data) || data[i] == '}' {
			return
		}
		end := stringEnd(data, i)
		var key string
		if err := json.Unmarshal(data[i:end], &key); err != nil {
			return // not reached for valid JSON
		}
		i = skipSpace(data, end) + 1 // past ':'
		i = skipSpace(data, i)
		end = valueEnd(data, i)
		fn(key, data[i:end])
		i = skipSpace(data, end)
		if i < len(data) && data[i] == ',' {
			i++
		}
	}
}

// elements returns the items of the valid JSON array data, as sub-slices.
func elements(data []byte) []json.RawMessage {
	var out []json.RawMessage
	i := skipSpace(data, 0) + 1 // past '['
	for {
		i = skipSpace(data, i)
		if i >= len(data) || data[i] == ']' {
			return out
		}
		end := valueEnd(data, i)
		out = append(out, data[i:end:end])
		i = skipSpace(data, end)
		if i < len(data) && data[i] == ',' {
			i++
		}
	}
}
