package jsonl

import "io"

// WrapWriter makes in write through wrap(w), where w is its writer; a file
// opened with Open is still the one truncated after a failed write.
func WrapWriter(in *Integration, wrap func(w io.Writer) io.Writer) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.w = wrap(in.w)
}
