package jetstream

import (
	"bytes"
	"sync"

	"github.com/opentrackhq/opentrack/queue"
)

// publishedBytes bounds the memory of the records a Queue keeps after
// publishing them (see published): about 4,000 decoded track events.
const publishedBytes = 16 << 20

// publishedCount bounds how many messageIds published lists in order,
// taken or not, so that one record nobody here takes cannot make the list
// grow without end.
const publishedCount = 1 << 16

// published keeps the records this collector appends, by messageId (the
// header Nats-Msg-Id), from before it publishes them until each of its
// readers that a record targets has taken it, so that
// the readers hand out the event they were given rather than decode the
// message again. Decoding a stored event is the largest part of a
// delivery: about 13 µs of the collector's 116 µs per event under
// loadtest/run-jetstream.sh, before this cache. A record that another
// collector delivers is never taken here: the oldest records leave once
// they hold more than publishedBytes, or publishedCount Seqs are listed.
// A miss costs only the decoding it would have cost anyway. Records are
// kept from before they are published because a reader may fetch one
// before JetStream's acknowledgement reaches Append.
type published struct {
	mu    sync.Mutex
	bytes int64
	recs  map[string]*publishedRec
	order []string // messageIds in the order they were added, some since taken
	head  int      // order[head:] are listed
}

type publishedRec struct {
	data []byte // the message's data as published
	rec  queue.Record
	left int   // readers here that have yet to take it
	mem  int64 // what it counts against publishedBytes
}

// add keeps rec, to be published as data under the messageId id, for
// the left readers of this collector that it targets.
func (p *published) add(id string, data []byte, rec queue.Record, left int) {
	if left <= 0 || id == "" {
		return
	}
	mem := int64(rec.Event.Fields().Size())
	if mem <= 0 {
		mem = 16 * int64(len(data)) // an event built in Go: the bound Decode allows
	}
	mem += int64(len(data))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.recs == nil {
		p.recs = make(map[string]*publishedRec)
	}
	if old := p.recs[id]; old != nil {
		// The same messageId again (a sender's retry): only one of them
		// is stored; take checks which.
		p.bytes -= old.mem
	} else {
		p.order = append(p.order, id)
	}
	p.recs[id] = &publishedRec{data: data, rec: rec, left: left, mem: mem}
	p.bytes += mem
	for p.head < len(p.order) {
		s := p.order[p.head]
		_, live := p.recs[s]
		if live && p.bytes <= publishedBytes && len(p.order)-p.head <= publishedCount {
			break
		}
		if live {
			p.dropLocked(s)
		}
		p.head++
	}
	if p.head > len(p.order)/2 {
		p.order = append(p.order[:0], p.order[p.head:]...)
		p.head = 0
	}
}

// take returns the record kept for the messageId id if data is what was
// published (another collector, or an earlier try, may have published
// other data under the same id), and forgets it once every reader here
// that it targets has taken it.
func (p *published) take(id string, data []byte) (queue.Record, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.recs[id]
	if r == nil || !bytes.Equal(r.data, data) {
		return queue.Record{}, false
	}
	if r.left--; r.left <= 0 {
		p.dropLocked(id)
	}
	return r.rec, true
}

// forget drops what add kept under id for data, when publishing it
// failed or JetStream kept an earlier message with that id instead.
func (p *published) forget(id string, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.recs[id]; r != nil && bytes.Equal(r.data, data) {
		p.dropLocked(id)
	}
}

func (p *published) dropLocked(id string) {
	p.bytes -= p.recs[id].mem
	delete(p.recs, id)
}
