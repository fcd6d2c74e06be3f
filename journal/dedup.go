package journal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/opentrackhq/opentrack/queue"
)

// RecentMessageIDs returns the messageIds of the newest n records on disk,
// oldest first, whatever their readers have settled. After a restart the
// Manager rebuilds its deduplication window from them, so that an SDK's
// retry of an event accepted just before a crash is still recognised. It
// reads only the segments it needs, newest first, and decodes no event.
func (j *Journal) RecentMessageIDs(n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	type span struct {
		s   *segment
		end int64
	}
	j.mu.Lock()
	spans := make([]span, len(j.segs))
	for i, s := range j.segs {
		spans[i] = span{s, s.size}
	}
	j.mu.Unlock()

	var chunks [][]string // newest segment first
	need := n
	fr := newFrameReader(nil, 0, 0, 0)
	for i := len(spans) - 1; i >= 0 && need > 0; i-- {
		s := spans[i].s
		f, err := os.Open(s.path)
		if errors.Is(err, os.ErrNotExist) {
			break // deleted as settled, and so are the older ones
		}
		if err != nil {
			return nil, fmt.Errorf("journal: recent messageIds: %w", err)
		}
		fr.reset(f, segmentHeaderSize, spans[i].end, s.base-min(s.base, 1))
		var ids []string
		for {
			fm, err := fr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("journal: recent messageIds: read %s: %w", s.path, err)
			}
			h, _, err := queue.DecodeRecordHeader(fm.payload)
			if err != nil || h.MessageID == "" {
				continue
			}
			ids = append(ids, h.MessageID)
			if len(ids) >= 2*need {
				ids = slices.Delete(ids, 0, len(ids)-need)
			}
		}
		f.Close()
		if len(ids) > need {
			ids = ids[len(ids)-need:]
		}
		chunks = append(chunks, ids)
		need -= len(ids)
	}
	out := make([]string, 0, n-need)
	for i := len(chunks) - 1; i >= 0; i-- {
		out = append(out, chunks[i]...)
	}
	return out, nil
}
