package journal

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/opentrackhq/opentrack/queue"
)

// appendBacklog appends n records of about 600 bytes for the reader
// "down", in Appends of batch records.
func appendBacklog(tb testing.TB, j *Journal, prefix string, n, batch int) {
	tb.Helper()
	pad := strings.Repeat("x", 280) // makes each event's JSON about 600 bytes
	for b := range n / batch {
		recs := make([]queue.Record, batch)
		for i := range recs {
			e := track(fmt.Sprintf("%s%d-%d", prefix, b, i), 0)
			e.Fields().Context["page"] = map[string]any{"url": "https://example.com/checkout", "title": pad}
			recs[i] = queue.Record{Event: e, Targets: []string{"down"}}
		}
		if err := j.Append(context.Background(), recs); err != nil {
			tb.Fatal(err)
		}
		if b == 0 && (recs[0].Size < 550 || recs[0].Size > 650) {
			tb.Fatalf("events of %d bytes, want about 600", recs[0].Size)
		}
	}
}

// readBacklog reads and settles n records of "down", checking their order.
func readBacklog(tb testing.TB, r queue.Reader, n int) {
	tb.Helper()
	var last uint64
	for got := 0; got < n; {
		recs, err := r.Next(context.Background(), min(1000, n-got))
		if err != nil {
			tb.Fatal(err)
		}
		for _, rec := range recs {
			if last != 0 && rec.Seq != last+1 {
				tb.Fatalf("read Seq %d after %d", rec.Seq, last)
			}
			last = rec.Seq
		}
		got += len(recs)
		r.Settle(seqsOf(recs)...)
	}
}

// TestBacklogMemory checks that records waiting for a reader that reads
// none (a destination down for hours) cost disk, not memory: the live heap
// does not grow with the backlog, and stays the same while the reader,
// far behind the in-memory tail, reads from disk. BenchmarkBacklog shows
// it with a million records.
func TestBacklogMemory(t *testing.T) {
	n := 100_000
	if testing.Short() || raceEnabled {
		n = 20_000
	}
	j := openJournal(t, t.TempDir(), &Options{MaxBytes: 2 << 30})
	rs := openReaders(t, j, "down")
	appendBacklog(t, j, "a", n/2, 1000)
	half := liveHeap()
	appendBacklog(t, j, "b", n/2, 1000)
	full := liveHeap()
	readBacklog(t, rs[0], 20_000)
	reading := liveHeap()
	if got := rs[0].Stats().Unsettled; got != n-20_000 {
		t.Fatalf("%d unsettled, want %d", got, n-20_000)
	}
	t.Logf("live heap with %d records waiting: %.1f MB; with %d: %.1f MB; reading from disk: %.1f MB",
		n/2, mb(half), n, mb(full), mb(reading))
	// 40 bytes per record would show as 2 MB for 50,000 of them.
	if grow := int64(full) - int64(half); grow > 2<<20 {
		t.Errorf("live heap grew by %.1f MB for %d more records waiting", float64(grow)/(1<<20), n/2)
	}
	if full > 50<<20 || reading > 50<<20 {
		t.Errorf("live heap %.1f MB with the backlog, %.1f MB reading it", mb(full), mb(reading))
	}
}

// BenchmarkBacklog appends a million records of about 600 bytes that one
// reader does not read, then reads and settles some from disk, and reports
// the live heap and the process's RSS. Run it once:
//
//	go test -run '^$' -bench Backlog -benchtime 1x ./journal/
func BenchmarkBacklog(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		j := openJournal(b, b.TempDir(), &Options{MaxBytes: 2 << 30})
		rs := openReaders(b, j, "down")
		appendBacklog(b, j, "m", n, 5000)
		full := liveHeap()
		readBacklog(b, rs[0], 50_000)
		reading := liveHeap()
		b.ReportMetric(mb(full), "heap-MB-waiting")
		b.ReportMetric(mb(reading), "heap-MB-reading")
		b.ReportMetric(rssMB(), "RSS-MB")
		b.ReportMetric(float64(j.Stats().Bytes>>20), "disk-MB")
		j.Close()
	}
}

// liveHeap returns the bytes of heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// rssMB returns the process's resident set size as /proc reports it, or 0.
func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if kb, err := strconv.Atoi(strings.Fields(v)[0]); err == nil {
				return float64(kb) / 1024
			}
		}
	}
	return 0
}
