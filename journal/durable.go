package journal

import (
	"time"

	"github.com/opentrackhq/opentrack/queue"
)

// Durable implements [queue.Durable]: it reports that an Append survives a crash: the Manager then leaves
// undelivered records in the journal at Shutdown, for the next start, and
// retries deliveries for hours by default.
func (j *Journal) Durable() bool { return true }

var (
	_ queue.Durable         = (*Journal)(nil)
	_ queue.MessageIDLister = (*Journal)(nil)
	_ queue.Storage         = (*Journal)(nil)
)

// Size returns the bytes of the journal's segments up to their last
// record, what [Options.MaxBytes] bounds; the Manager's metrics report it
// as opentrack.queue.storage.size. The directory holds up to two
// SegmentBytes more: the active segment's room written ahead and the
// spare. Size does not ask the readers, so it is cheap.
func (j *Journal) Size() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.bytes
}

// Oldest returns when the oldest record the journal keeps was appended;
// zero when it keeps none. Like Size, it does not ask the readers.
func (j *Journal) Oldest() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.oldestLocked()
}
