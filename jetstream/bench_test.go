package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/testkit"
	"github.com/opentrackhq/opentrack/jetstream"
	"github.com/opentrackhq/opentrack/jetstream/jetstreamtest"
	"github.com/opentrackhq/opentrack/queue"
	"github.com/opentrackhq/opentrack/spec"
)

// benchTrack is a ~600-byte track call as analytics.js sends it.
const benchTrack = `{"type":"track","event":"Product Viewed","userId":"user-1234567","anonymousId":"0f8e3c1a-5b2d-4e7f-9a6c-1d2e3f4a5b6c",` +
	`"properties":{"product_id":"507f1f77bcf86cd799439011","sku":"G-32","category":"Games","name":"Monopoly: 3rd Edition","price":18.99,"quantity":1,"currency":"USD"},` +
	`"context":{"library":{"name":"analytics.js","version":"next-1.81.0"},"page":{"path":"/products/g-32","referrer":"https://www.example.com/","title":"Monopoly","url":"https://shop.example.com/products/g-32"},` +
	`"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36","locale":"en-US"},` +
	`"messageId":"ajs-next-1732600000000-abcdef01-2345-6789","timestamp":"2026-11-26T10:00:00.000Z","sentAt":"2026-11-26T10:00:00.050Z"}`

// producers is the number of goroutines calling Enqueue at once.
const producers = 64

// BenchmarkEnqueue measures Manager.Enqueue of one ~600-byte track event
// from 64 goroutines at once, with a discarding integration reading the
// queue meanwhile: on the memory queue, and on a JetStream stream with one
// replica and with three (three servers in this process). It reports
// events/s and the wait of each Enqueue (p50, p99). An Enqueue refused
// because the queue is full (the integration has not caught up) is tried
// again at once and counted in full/op; its wait includes the retries.
//
//	go test -run '^$' -bench Enqueue -benchtime 5s ./jetstream
func BenchmarkEnqueue(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchEnqueue(b, nil) })
	b.Run("jetstream-R1", func(b *testing.B) {
		s := jetstreamtest.RunServer(b)
		benchEnqueue(b, benchQueue(b, &jetstream.Options{Servers: []string{s.ClientURL()}}))
	})
	b.Run("jetstream-R3", func(b *testing.B) {
		srvs := jetstreamtest.RunCluster(b, 3)
		benchEnqueue(b, benchQueue(b, &jetstream.Options{Servers: jetstreamtest.URLs(srvs), Replicas: 3}))
	})
}

func benchQueue(b *testing.B, o *jetstream.Options) queue.Queue {
	o.Logger = quiet
	q, err := jetstream.Open(b.Context(), o)
	if err != nil {
		b.Fatal(err)
	}
	return q
}

func benchEnqueue(b *testing.B, q queue.Queue) {
	tmpl, err := spec.Decode([]byte(benchTrack), "")
	if err != nil {
		b.Fatal(err)
	}
	tmpl.Fields().ReceivedAt = time.Now().UTC()
	discard := opentrack.Func("Discard", func(context.Context, spec.Event) error { return nil })
	m, err := opentrack.New(opentrack.Options{Integrations: []opentrack.Integration{discard}, Queue: q, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = m.Shutdown(ctx)
	}()
	var (
		n       atomic.Uint64
		mu      sync.Mutex
		all     []time.Duration
		fail    atomic.Int64
		refused atomic.Int64
		run     = fmt.Sprint(time.Now().UnixNano()) // messageIds unique across runs
	)
	b.SetParallelism((producers + 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	cpu0 := testkit.CPUTime()
	b.RunParallel(func(pb *testing.PB) {
		var lat []time.Duration
		for pb.Next() {
			e := *tmpl.(*spec.Track)
			e.MessageID = fmt.Sprintf("%s-%d", run, n.Add(1))
			t0 := time.Now()
			for {
				err := m.Enqueue(context.Background(), &e)
				if err == nil {
					break
				}
				if !errors.Is(err, opentrack.ErrQueueFull) {
					fail.Add(1)
					break
				}
				// Full: the integration has not caught up. Try again, as
				// a sender answered 503 would; the wait counts.
				refused.Add(1)
				runtime.Gosched()
			}
			lat = append(lat, time.Since(t0))
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	b.StopTimer()
	// Deliver what is left, so that the CPU counted is that of every
	// event's way through.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = m.Flush(ctx)
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	cpu := testkit.CPUTime() - cpu0
	if f := fail.Load(); f > 0 {
		b.Fatalf("%d Enqueues failed", f)
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(refused.Load())/float64(len(all)), "full/op")
	if len(all) > 0 {
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		b.ReportMetric(ms(all[len(all)/2]), "p50-ms")
		b.ReportMetric(ms(all[len(all)*99/100]), "p99-ms")
		// The NATS servers run in this process: their CPU counts too.
		b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "cpu-µs/event")
	}
}
