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

// Size returns the bytes the journal's segments take on disk; the Manager's
// metrics report it as opentrack.queue.storage.size.
func (j *Journal) Size() int64 { return j.Stats().Bytes }

// Oldest returns when the oldest record the journal keeps was appended;
// zero when it keeps none.
func (j *Journal) Oldest() time.Time { return j.Stats().Oldest }
