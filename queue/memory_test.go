package queue_test

import (
	"testing"

	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/queue/queuetest"
)

type memoryHarness struct{}

func (memoryHarness) Open(t *testing.T, maxBytes int64) queue.Queue {
	if maxBytes == 0 {
		return queue.NewMemory(nil)
	}
	return queue.NewMemory(&queue.MemoryOptions{Default: queue.Limit{Bytes: maxBytes}})
}

func (memoryHarness) Reopen(t *testing.T) queue.Queue {
	t.Fatal("a Memory queue does not survive Close")
	return nil
}

func (memoryHarness) Durable() bool { return false }

func TestMemoryConformance(t *testing.T) { queuetest.Run(t, memoryHarness{}) }
