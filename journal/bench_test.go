//go:build unix

package journal

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/opentrackhq/opentrack/internal/testkit"
	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

// The Append benchmarks measure what the collector's handler waits for: a
// producer appends one event of about 600 bytes and waits until it is
// durable, with 1, 16, 64 and 256 producers at once. They report events/s,
// events per fdatasync, the producers' wait (p50, p99) and CPU time per
// event, for the journal and for pebble with Sync writes of the same
// payloads, the ready-made alternative. The journal runs as in steady use:
// warmed up, with a reader that settles everything (its CPU counts); pebble
// only takes the writes. On Linux the journal's syncs run on a kernel
// worker (see syncer), whose CPU is not the process's: the journal's
// cpu-µs/event leaves them out, pebble's counts its own.
//
//	go test -run '^$' -bench Append -benchtime 3s ./journal/

var producerCounts = []int{1, 16, 64, 256}

// benchEvent returns an event whose JSON is about 600 bytes.
func benchEvent(id string) spec.Event {
	e := track(id, 0)
	e.Fields().Context["page"] = map[string]any{"url": "https://example.com/checkout", "title": strings.Repeat("x", 280)}
	return e
}

// appendFunc makes one event durable.
type appendFunc func(ctx context.Context, rec queue.Record) error

// runProducers runs b.N appends from producers goroutines and reports the
// figures; syncs returns the number of syncs so far.
func runProducers(b *testing.B, producers int, appendOne appendFunc, syncs func() uint64) {
	events := make([]spec.Event, 1024)
	for i := range events {
		events[i] = benchEvent(fmt.Sprint("bench-", i))
	}
	var next atomic.Int64
	waits := make([][]time.Duration, producers)
	syncs0 := syncs()
	cpu0 := testkit.CPUTime()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				rec := queue.Record{Event: events[i%int64(len(events))], Targets: []string{"a"}}
				t0 := time.Now()
				if err := appendOne(context.Background(), rec); err != nil {
					b.Error(err)
					return
				}
				waits[p] = append(waits[p], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := testkit.CPUTime() - cpu0
	all := slices.Concat(waits...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	if n := syncs() - syncs0; n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "events/sync")
	}
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/event")
}

func BenchmarkAppend(b *testing.B) {
	for _, producers := range producerCounts {
		b.Run(fmt.Sprint("journal/producers=", producers), func(b *testing.B) {
			j := openJournal(b, b.TempDir(), &Options{MaxBytes: 64 << 30})
			rs := openReaders(b, j, "a")
			// A reader that keeps up settles everything, so that segments
			// are recycled as they are in steady use.
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					recs, err := rs[0].Next(ctx, 1000)
					if err != nil {
						return
					}
					rs[0].Settle(seqsOf(recs)...)
				}
			})
			defer func() { cancel(); wg.Wait() }()
			warmUp(b, j)
			runProducers(b, producers, func(ctx context.Context, rec queue.Record) error {
				return j.Append(ctx, []queue.Record{rec})
			}, func() uint64 { return j.Stats().Syncs })
		})
		b.Run(fmt.Sprint("pebble/producers=", producers), func(b *testing.B) {
			fs := &countingFS{FS: vfs.Default}
			db, err := pebble.Open(b.TempDir(), &pebble.Options{FS: fs, Logger: quietPebble{}})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var seq atomic.Uint64
			runProducers(b, producers, func(ctx context.Context, rec queue.Record) error {
				rec.Appended = time.Now()
				payload, err := queue.EncodeRecord(nil, rec)
				if err != nil {
					return err
				}
				key := binary.BigEndian.AppendUint64(nil, seq.Add(1))
				return db.Set(key, payload, pebble.Sync)
			}, fs.syncs.Load)
		})
	}
}

// warmUp appends until the journal writes into a segment written ahead,
// as it does in steady use; a new journal's first megabyte grows its file.
func warmUp(b *testing.B, j *Journal) {
	for i := 0; !j.Stats().Prewritten; i++ {
		if i == 100_000 {
			b.Fatal("no spare segment after 100,000 appends")
		}
		recs := make([]queue.Record, 100)
		for k := range recs {
			recs[k] = queue.Record{Event: benchEvent(fmt.Sprint("warm-", i, "-", k)), Targets: []string{"a"}}
		}
		if err := j.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
}

// countingFS counts the syncs of pebble's write-ahead log files (*.log),
// which are what a Sync write waits for; flushes and compactions sync
// their tables in the background.
type countingFS struct {
	vfs.FS
	syncs atomic.Uint64
}

func (fs *countingFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &countingFile{File: f, fs: fs}, nil
}

func (fs *countingFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	if err != nil || !strings.HasSuffix(newname, ".log") {
		return f, err
	}
	return &countingFile{File: f, fs: fs}, nil
}

type countingFile struct {
	vfs.File
	fs *countingFS
}

func (f *countingFile) Sync() error {
	f.fs.syncs.Add(1)
	return f.File.Sync()
}

func (f *countingFile) SyncData() error {
	f.fs.syncs.Add(1)
	return f.File.SyncData()
}

func (f *countingFile) SyncTo(length int64) (bool, error) {
	f.fs.syncs.Add(1)
	return f.File.SyncTo(length)
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// BenchmarkNewRequest measures what an Append costs its caller before the
// writer takes over: decoded track calls of about 600 bytes (the load
// test's) encoded and framed, one alone and a batch of 100.
//
//	go test -run '^$' -bench NewRequest -benchmem ./journal/
func BenchmarkNewRequest(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprint("records=", n), func(b *testing.B) {
			recs := make([]queue.Record, n)
			for i := range recs {
				e, err := spec.Decode(fmt.Appendf(nil, `{"type":"track","event":"Product Viewed","userId":"user-1234567","anonymousId":"0f8e3c1a-5b2d-4e7f-9a6c-1d2e3f4a5b6c",`+
					`"properties":{"product_id":"507f1f77bcf86cd799439011","sku":"G-32","category":"Games","name":"Monopoly: 3rd Edition","price":18.99,"quantity":1,"currency":"USD"},`+
					`"context":{"library":{"name":"analytics.js","version":"next-1.81.0"},"page":{"path":"/products/g-32","referrer":"https://www.example.com/","title":"Monopoly","url":"https://shop.example.com/products/g-32"},`+
					`"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36","locale":"en-US"},`+
					`"timestamp":"2026-11-26T10:00:00.000Z","sentAt":"2026-11-26T10:00:00.050Z","messageId":"bench-%d"}`, i), "")
				if err != nil {
					b.Fatal(err)
				}
				spec.Enrich(e, time.Now(), "127.0.0.1")
				recs[i] = queue.Record{Event: e, Targets: []string{"JSON Lines"}}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := newRequest(recs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
