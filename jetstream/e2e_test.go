package jetstream_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	analytics "github.com/segmentio/analytics-go/v3"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/jetstream"
	"github.com/opentrackhq/opentrack/jetstream/jetstreamtest"
	"github.com/opentrackhq/opentrack/spec"
)

// TestAnalyticsGoThroughJetStream sends the six calls with analytics-go to
// a collector on a JetStream stream and checks that each reaches the
// integration once, and that the stream forgets them once delivered.
func TestAnalyticsGoThroughJetStream(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	sk := newSink()
	c := newCollector(t, &jetstream.Options{Servers: []string{s.ClientURL()}}, opentrack.Delivery{}, sk.integration("Sink"))

	cl, err := analytics.NewWithConfig("wk", analytics.Config{Endpoint: c.base, BatchSize: 6, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []analytics.Message{
		analytics.Identify{MessageId: "m-identify", UserId: "u1", Traits: analytics.NewTraits().SetEmail("ada@example.com")},
		analytics.Track{MessageId: "m-track", UserId: "u1", Event: "Order Completed", Properties: analytics.NewProperties().SetRevenue(42.5)},
		analytics.Page{MessageId: "m-page", UserId: "u1", Name: "Pricing"},
		analytics.Screen{MessageId: "m-screen", UserId: "u1", Name: "Checkout"},
		analytics.Group{MessageId: "m-group", UserId: "u1", GroupId: "acme"},
		analytics.Alias{MessageId: "m-alias", UserId: "u1", PreviousId: "a1"},
	}
	for _, m := range msgs {
		if err := cl.Enqueue(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]spec.Type{
		"m-identify": spec.TypeIdentify, "m-track": spec.TypeTrack, "m-page": spec.TypePage,
		"m-screen": spec.TypeScreen, "m-group": spec.TypeGroup, "m-alias": spec.TypeAlias,
	}
	var ids []string
	for id := range want {
		ids = append(ids, id)
	}
	if missing := sk.waitFor(ids, 10*time.Second); missing != nil {
		t.Fatalf("not delivered: %v", missing)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	for id, typ := range want {
		if n := sk.count(id); n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
		if sk.types[id] != typ {
			t.Errorf("%s delivered as %q, want %q", id, sk.types[id], typ)
		}
	}
	if tr, ok := sk.events["m-track"].(*spec.Track); !ok || tr.Event != "Order Completed" || fmt.Sprint(tr.Properties["revenue"]) != "42.5" || tr.ReceivedAt.IsZero() {
		t.Errorf("track delivered as %+v", sk.events["m-track"])
	}
	// Delivered and acknowledged: the stream keeps nothing.
	js := jetStreamAt(t, s.ClientURL())
	st, err := js.Stream(t.Context(), jetstream.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("the stream holds %d messages after every event was delivered", n)
	}
	if s := c.m.Stats()[0]; s.Delivered != 6 || s.Queued != 0 || s.Accepted != 6 {
		t.Errorf("stats %+v", s)
	}
}

// TestClusterNodeLossUnderLoad runs two collectors sharing an R3 stream on
// three servers, sends them load from several goroutines, and stops the
// stream's leader in the middle: every event answered 2xx is delivered.
// Senders resend a refused batch, as the SDKs do.
func TestClusterNodeLossUnderLoad(t *testing.T) {
	srvs := jetstreamtest.RunCluster(t, 3)
	urls := jetstreamtest.URLs(srvs)
	sk := newSink()
	opts := func(first int) *jetstream.Options {
		return &jetstream.Options{
			Servers:  append(append([]string(nil), urls[first:]...), urls[:first]...),
			Stream:   "LOAD",
			Replicas: 3,
			AckWait:  2 * time.Second,
		}
	}
	cs := []*collector{
		newCollector(t, opts(0), opentrack.Delivery{}, sk.integration("Sink")),
		newCollector(t, opts(1), opentrack.Delivery{}, sk.integration("Sink")),
	}

	const senders, batches, perBatch = 8, 25, 5
	var (
		mu        sync.Mutex
		accepted  []string
		afterKill atomic.Int64
		refused   atomic.Int64
		killed    atomic.Bool
		halfway   = make(chan struct{})
		once      sync.Once
		wg        sync.WaitGroup
	)
	for g := range senders {
		wg.Go(func() {
			// Half the batches before the leader stops; then load goes on
			// until it has stopped, and half the batches more after that.
			after := 0
			for b := 0; after < batches/2 && b < 4*batches; b++ { // bounded if the test stops early
				if b == batches/2 {
					once.Do(func() { close(halfway) })
				}
				if killed.Load() {
					after++
				}
				ids := make([]string, perBatch)
				for i := range ids {
					ids[i] = fmt.Sprintf("g%d-b%d-%d", g, b, i)
				}
				body := batchBody(fmt.Sprint("user-", g), ids...)
				c := cs[(g+b)%2]
				for attempt := 0; attempt < 50; attempt++ {
					status, _ := post(t, c.url+"/batch", body)
					if status == http.StatusOK {
						mu.Lock()
						accepted = append(accepted, ids...)
						mu.Unlock()
						if killed.Load() {
							afterKill.Add(perBatch)
						}
						break
					}
					refused.Add(1)
					time.Sleep(100 * time.Millisecond) // as an SDK backs off
				}
			}
		})
	}
	<-halfway
	leader := streamLeader(t, urls, "LOAD")
	for _, s := range srvs {
		if s.Name() == leader {
			s.Shutdown()
			killed.Store(true)
			t.Logf("stopped %s, the stream's leader", leader)
		}
	}
	if !killed.Load() {
		t.Fatalf("no server named %q", leader)
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(accepted) < senders*batches*perBatch/2 {
		t.Fatalf("only %d of %d events answered 2xx", len(accepted), senders*batches*perBatch)
	}
	if afterKill.Load() == 0 {
		t.Fatal("no event was accepted after the leader stopped")
	}
	if missing := sk.waitFor(accepted, 45*time.Second); missing != nil {
		t.Fatalf("%d of %d events answered 2xx were not delivered, such as %v", len(missing), len(accepted), missing[:min(5, len(missing))])
	}
	var byCollector []uint64
	for _, c := range cs {
		byCollector = append(byCollector, c.m.Stats()[0].Delivered)
	}
	t.Logf("%d events answered 2xx (%d after the leader stopped), %d requests refused and resent; all delivered; %d duplicate deliveries at the sink; delivered per collector %v",
		len(accepted), afterKill.Load(), refused.Load(), sk.duplicates(), byCollector)
}

// streamLeader returns the name of the server leading stream.
func streamLeader(t *testing.T, urls []string, stream string) string {
	t.Helper()
	nc, err := nats.Connect(urls[0], nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := njs.New(nc)
	s, err := js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Cluster; c != nil {
		return c.Leader
	}
	t.Fatal("stream has no cluster information")
	return ""
}

// TestCollectorLostRedelivers drops a collector in the middle of delivery,
// without Shutdown: its integration is stuck in calls and its connection
// to NATS is closed. While it lives, it keeps its records in progress past
// AckWait; once it is gone, the other collector delivers them.
func TestCollectorLostRedelivers(t *testing.T) {
	s := jetstreamtest.RunServer(t)
	const ackWait = time.Second
	const n = 20

	ncA, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer ncA.Close()
	release := make(chan struct{})
	defer close(release)
	calls := make(chan string, n)
	stuck := opentrack.Func("Sink", func(ctx context.Context, e spec.Event) error {
		calls <- e.Fields().MessageID
		select {
		case <-release:
			return nil // too late: its connection is gone, the ack is lost
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	a := newCollector(t, &jetstream.Options{Conn: ncA, AckWait: ackWait}, opentrack.Delivery{Workers: n, CallTimeout: time.Minute}, stuck)

	var ids []string
	var body []string
	for i := range n {
		ids = append(ids, fmt.Sprint("lost-", i))
		body = append(body, fmt.Sprintf(`{"type":"track","messageId":"lost-%d","userId":"u%d","event":"Load"}`, i, i))
	}
	if status, _ := post(t, a.url+"/batch", `{"batch":[`+join(body)+`]}`); status != http.StatusOK {
		t.Fatalf("batch answered %d", status)
	}
	for range n { // every event is in a call at A
		select {
		case <-calls:
		case <-time.After(10 * time.Second):
			t.Fatal("A did not take every event")
		}
	}

	sk := newSink()
	b := newCollector(t, &jetstream.Options{Servers: []string{s.ClientURL()}, AckWait: ackWait}, opentrack.Delivery{}, sk.integration("Sink"))
	// A holds its events in progress: B gets none, well past AckWait.
	sk.mu.Lock()
	changed := sk.changed
	sk.mu.Unlock()
	select {
	case <-changed:
		t.Fatalf("B received an event that A holds (A did not keep it in progress)")
	case <-time.After(3 * ackWait):
	}

	ncA.Close() // A is gone: no more signs of life, no acknowledgements
	gone := time.Now()
	if missing := sk.waitFor(ids, 10*time.Second); missing != nil {
		t.Fatalf("B did not deliver %v after A was lost", missing)
	}
	took := time.Since(gone)
	if st := b.m.Stats()[0]; st.Redelivered != n {
		t.Errorf("B counted %d redelivered events, want %d", st.Redelivered, n)
	}
	t.Logf("B delivered A's %d events %v after A lost its connection (AckWait %v)", n, took.Round(10*time.Millisecond), ackWait)
}

func join(parts []string) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += ","
		}
		out += p
	}
	return out
}

// TestNATSUnreachable stops the only NATS server: requests are answered
// 503 with Retry-After and nothing is answered 2xx that is not stored.
// When the server is back (same port, same storage), requests succeed
// again and everything answered 2xx, before and after, is delivered.
func TestNATSUnreachable(t *testing.T) {
	dir := t.TempDir()
	s := jetstreamtest.Start(t, jetstreamtest.Options(dir))
	port := s.Addr().(*net.TCPAddr).Port
	sk := newSink()
	// Records a pull request had taken when NATS stopped come back after
	// the ack wait: a short one keeps the test short.
	c := newCollector(t, &jetstream.Options{Servers: []string{s.ClientURL()}, AckWait: 3 * time.Second}, opentrack.Delivery{}, sk.integration("Sink"))

	var accepted []string
	for i := range 10 {
		id := fmt.Sprint("before-", i)
		if status, _ := post(t, c.url+"/track", trackBody(id, "u1")); status != http.StatusOK {
			t.Fatalf("%s answered %d", id, status)
		}
		accepted = append(accepted, id)
	}
	s.Shutdown()
	s.WaitForShutdown()

	for i := range 10 {
		id := fmt.Sprint("down-", i)
		status, retryAfter := post(t, c.url+"/track", trackBody(id, "u1"))
		if status != http.StatusServiceUnavailable || retryAfter == "" {
			t.Fatalf("%s with NATS down answered %d, Retry-After %q; want 503 with Retry-After", id, status, retryAfter)
		}
	}

	o := jetstreamtest.Options(dir)
	o.Port = port
	s2 := jetstreamtest.Start(t, o)
	// Senders retry, honouring Retry-After (shortened here), until NATS is
	// back.
	for i := range 10 {
		id := fmt.Sprint("after-", i)
		for attempt := 0; ; attempt++ {
			status, _ := post(t, c.url+"/track", trackBody(id, "u1"))
			if status == http.StatusOK {
				break
			}
			if status != http.StatusServiceUnavailable || attempt == 100 {
				t.Fatalf("%s answered %d after %d attempts with NATS back", id, status, attempt)
			}
			time.Sleep(100 * time.Millisecond)
		}
		accepted = append(accepted, id)
	}
	if missing := sk.waitFor(accepted, 15*time.Second); missing != nil {
		t.Fatalf("answered 2xx and not delivered: %v", missing)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if id := fmt.Sprint("down-", i); sk.count(id) != 0 {
			t.Errorf("%s was answered 503 and delivered", id)
		}
	}
	_ = s2
}
