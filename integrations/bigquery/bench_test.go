package bigquery

import (
	"fmt"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/fakebigquery"
	"github.com/opentrackhq/opentrack/spec"
)

// benchEvents returns n events of a kind:
//   - pages: page views, one row each;
//   - tracks: one track event name, two rows each (tracks and its table);
//   - mixed: 60% tracks over 5 names, 30% pages, 10% identifies.
func benchEvents(b *testing.B, kind string, n int) []spec.Event {
	const ctx = `"context":{"ip":"203.0.113.7","library":{"name":"analytics.js","version":"1.84.0"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)","page":{"path":"/checkout","url":"https://shop.example/checkout"}}`
	out := make([]spec.Event, n)
	for i := range out {
		var js string
		track := func(name string) string {
			return fmt.Sprintf(`{"type":"track","messageId":"m%d","userId":"u%d","anonymousId":"a%d","event":%q,"timestamp":"2024-01-02T03:04:05Z","sentAt":"2024-01-02T03:04:06Z",%s,"properties":{"orderId":"o-%d","revenue":25.5,"itemCount":3,"currency":"EUR","gift":false,"shipping":{"method":"UPS","address":{"city":"Paris","zip":"75001"}},"products":[{"sku":"A1"},{"sku":"B2"}]}}`,
				i, i%977, i, name, ctx, i)
		}
		page := func() string {
			return fmt.Sprintf(`{"type":"page","messageId":"m%d","anonymousId":"a%d","name":"Checkout","timestamp":"2024-01-02T03:04:05Z",%s,"properties":{"url":"https://shop.example/checkout","path":"/checkout","title":"Checkout","referrer":"https://search.example/"}}`, i, i, ctx)
		}
		switch kind {
		case "pages":
			js = page()
		case "tracks":
			js = track("Order Completed")
		default:
			switch r := i % 10; {
			case r < 6:
				js = track(fmt.Sprint("Event ", i%5))
			case r < 9:
				js = page()
			default:
				js = fmt.Sprintf(`{"type":"identify","messageId":"m%d","userId":"u%d","timestamp":"2024-01-02T03:04:05Z",%s,"traits":{"email":"u%d@example.com","plan":"pro","seats":5,"address":{"city":"Paris"}}}`, i, i, ctx, i)
			}
		}
		e, err := spec.Decode([]byte(js), "")
		if err != nil {
			b.Fatal(err)
		}
		out[i] = e
	}
	return out
}

// BenchmarkMapEvent measures the mapping of one track event (with context
// and nested properties) to its two rows.
func BenchmarkMapEvent(b *testing.B) {
	var m mapper
	ev := benchEvents(b, "tracks", 1)[0]
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		out := make(map[string][]*row, 2)
		var order []string
		if err := m.mapEvent(ev, 0, now, out, &order); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatch measures Batch of 500 events
// into the stand-in through the real client, in steady state (tables and
// columns exist). It reports rows per second, insertAll calls per 10,000
// events and metadata calls per batch.
func BenchmarkBatch(b *testing.B) {
	for _, kind := range []string{"pages", "tracks", "mixed"} {
		b.Run(kind, func(b *testing.B) {
			e := newEnv(b, nil, &fakebigquery.Options{DiscardRows: true})
			events := benchEvents(b, kind, 500)
			if err := e.in.Batch(e.ctx, events); err != nil {
				b.Fatal(err)
			}
			before := e.in.Stats()
			b.ReportAllocs()
			for b.Loop() {
				if err := e.in.Batch(e.ctx, events); err != nil {
					b.Fatal(err)
				}
			}
			after := e.in.Stats()
			rows := float64(after.RowsInserted - before.RowsInserted)
			b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(after.InsertAllCalls-before.InsertAllCalls)/float64(b.N)/500*10000, "insertAll/10k-events")
			b.ReportMetric(float64(after.MetadataCalls-before.MetadataCalls)/float64(b.N), "metadata/batch")
		})
	}
}

// BenchmarkManager10k sends 10,000 events through a Manager (queue,
// batching by the integration's settings, workers) into the stand-in, and
// reports insertAll calls per 10,000 events and metadata calls in steady
// state. The batch500 case lowers Options.Delivery.Batch.MaxEvents from the
// default 5000, which is the lever on calls when events spread over many
// tables.
func BenchmarkManager10k(b *testing.B) {
	for _, tc := range []struct {
		name, kind string
		maxEvents  int
	}{
		{"pages", "pages", 0},
		{"tracks", "tracks", 0},
		{"mixed", "mixed", 0},
		{"mixed-batch500", "mixed", 500},
	} {
		b.Run(tc.name, func(b *testing.B) {
			kind := tc.kind
			opts := &Options{Delivery: opentrack.Delivery{Batch: opentrack.BatchOptions{MaxEvents: tc.maxEvents}}}
			e := newEnv(b, opts, &fakebigquery.Options{DiscardRows: true})
			m, err := opentrack.New(opentrack.Options{
				Integrations: []opentrack.Integration{e.in},
				Delivery:     opentrack.Delivery{QueueSize: 20000},
				DisableDedup: true,
				Logger:       quiet,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Shutdown(e.ctx)
			events := benchEvents(b, kind, 10000)
			// Warm up: tables and columns.
			if err := m.Enqueue(e.ctx, events...); err != nil {
				b.Fatal(err)
			}
			if err := m.Flush(e.ctx); err != nil {
				b.Fatal(err)
			}
			before := e.in.Stats()
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Enqueue(e.ctx, events...); err != nil {
					b.Fatal(err)
				}
				if err := m.Flush(e.ctx); err != nil {
					b.Fatal(err)
				}
			}
			after := e.in.Stats()
			if st := m.Stats()[0]; st.Failed != 0 {
				b.Fatalf("%d events failed", st.Failed)
			}
			b.ReportMetric(float64(after.RowsInserted-before.RowsInserted)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(after.InsertAllCalls-before.InsertAllCalls)/float64(b.N), "insertAll/10k-events")
			b.ReportMetric(float64(after.MetadataCalls-before.MetadataCalls)/float64(b.N), "metadata/10k-events")
		})
	}
}
