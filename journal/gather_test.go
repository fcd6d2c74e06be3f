package journal

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack/queue"
)

// appendConcurrently has producers append n records each, one at a
// time, as fast as their appends return.
func appendConcurrently(t *testing.T, j *Journal, producers, n int, prefix string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Go(func() {
			for i := range n {
				recs := []queue.Record{{Event: track(fmt.Sprint(prefix, p, "-", i), 300), Targets: []string{"a"}}}
				if err := j.Append(context.Background(), recs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestGroupsGrowToTheAppendersThereAre(t *testing.T) {
	// Without a wait, each group is what reached the writer while it
	// synced the one before: about half of 16 appenders that append as
	// fast as they can. With it, the writer holds a group open until it
	// is as large as recent ones, and groups climb to all 16. When the
	// appenders finish one by one, the last groups wait GroupWait.
	j := openJournal(t, t.TempDir(), &Options{GroupWait: 50 * time.Millisecond})
	openReaders(t, j, "a")
	appendConcurrently(t, j, 16, 60, "p")
	s := j.Stats()
	if s.Appended != 960 {
		t.Fatalf("appended %d records, want 960", s.Appended)
	}
	if perSync := float64(s.Appended) / float64(s.Syncs); perSync < 12 {
		t.Errorf("%d records in %d syncs, %.1f a sync; want groups near the 16 appenders", s.Appended, s.Syncs, perSync)
	}
}

func TestALoneAppenderIsNeverHeld(t *testing.T) {
	// One appender at a time: no group is held open for others (the peak
	// stays at one), or these appends would take an hour each.
	j := openJournal(t, t.TempDir(), &Options{GroupWait: time.Hour})
	openReaders(t, j, "a")
	appendN(t, j, 200, "m", "a")
	if s := j.Stats(); s.Syncs != 200 {
		t.Errorf("%d syncs for 200 appends one after another, want 200", s.Syncs)
	}
}

// setPeak sets the writer's peak group size, as if that many appenders
// had just been at work. It must run before any Append: the writer reads
// the peak only once it has received a request, and the go statement and
// the channel send that deliver it order this write before that read.
func setPeak(j *Journal, peak float64) { j.w.peak = peak }

func TestAppendersThatLeaveAreWaitedForAtMostGroupWait(t *testing.T) {
	// Groups of 16, then one appender is left. Its appends are held open
	// for GroupWait, each alone in its group, until the peak (decaying by
	// a sixteenth a group) is below four: 16*(15/16)^k < 4 from k = 22.
	const wait = 20 * time.Millisecond
	j := openJournal(t, t.TempDir(), &Options{GroupWait: wait})
	openReaders(t, j, "a")
	setPeak(j, 16)
	for i := range 60 {
		t0 := time.Now()
		appendN(t, j, 1, fmt.Sprint("alone", i, "-"), "a")
		if took := time.Since(t0); i < 22 && took < wait {
			t.Errorf("append %d took %v; want it held for GroupWait (%v)", i, took, wait)
		}
	}
	if s := j.Stats(); s.Syncs != 60 {
		t.Errorf("%d syncs for 60 appends one after another, want 60", s.Syncs)
	}
	// The writer set the peak before it answered the last append.
	if j.w.peak >= minGather {
		t.Errorf("peak %.1f after 60 lone appends; want below %d, so that nothing waits", j.w.peak, minGather)
	}
}

func TestCloseEndsAGroupHeldOpen(t *testing.T) {
	// A group held open (for an hour) ends when the journal closes: its
	// appends are written and acknowledged, and Close returns.
	dir := t.TempDir()
	j := openJournal(t, dir, &Options{GroupWait: time.Hour})
	openReaders(t, j, "a")
	setPeak(j, 8)
	done := make(chan error, 1)
	go func() {
		done <- j.Append(context.Background(), []queue.Record{{Event: track("last", 300), Targets: []string{"a"}}})
	}()
	// Wait until the writer holds it in a group.
	deadline := time.Now().Add(10 * time.Second)
	for !writerGathers() {
		if time.Now().After(deadline) {
			t.Fatal("the writer never held the append in a group")
		}
		time.Sleep(time.Millisecond)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Append held in a group when the journal closed: %v, want nil", err)
	}
	j2 := openJournal(t, dir, nil)
	ids, err := j2.RecentMessageIDs(1)
	if err != nil || len(ids) != 1 || ids[0] != "last" {
		t.Errorf("newest record after reopening: %v, %v; want [last]", ids, err)
	}
}

// writerGathers reports whether a journal's writer is holding a group open.
func writerGathers() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "journal.(*writer).gather(")
}

func TestGather(t *testing.T) {
	newWriter := func(wait time.Duration) *writer {
		j := &Journal{opts: Options{GroupWait: wait}, reqs: make(chan *request), quit: make(chan struct{})}
		return &writer{j: j, peak: 16, batch: []*request{{frames: make([]byte, 10)}}}
	}
	t.Run("off", func(t *testing.T) {
		// Negative: nothing is waited for, though the peak says 16.
		w := newWriter(-1)
		if n := w.gather(10); n != 10 || len(w.batch) != 1 {
			t.Errorf("gather took %d requests, %d bytes; want the 1 it had, 10", len(w.batch), n)
		}
	})
	t.Run("few", func(t *testing.T) {
		// A peak below minGather: nothing is waited for.
		w := newWriter(time.Hour)
		w.peak = minGather - 1
		if w.gather(10); len(w.batch) != 1 {
			t.Errorf("gather took %d requests, want 1", len(w.batch))
		}
	})
	t.Run("until the peak", func(t *testing.T) {
		w := newWriter(time.Hour)
		go func() {
			for range 20 {
				w.j.reqs <- &request{frames: make([]byte, 10)}
			}
		}()
		if n := w.gather(10); n != 160 || len(w.batch) != 16 {
			t.Errorf("gather took %d requests, %d bytes; want 16, 160", len(w.batch), n)
		}
		for range 4 {
			<-w.j.reqs // let the sender finish
		}
	})
	t.Run("until GroupWait", func(t *testing.T) {
		w := newWriter(time.Millisecond)
		if w.gather(10); len(w.batch) != 1 {
			t.Errorf("gather took %d requests, want 1", len(w.batch))
		}
		// The timer is reused: a second wait ends too.
		if w.gather(10); len(w.batch) != 1 {
			t.Errorf("gather took %d requests, want 1", len(w.batch))
		}
	})
	t.Run("late", func(t *testing.T) {
		// A timer that fires after twice the wait or more (here a wait of
		// 1 ns) means the CPU is taken: the peak is let go of.
		w := newWriter(time.Nanosecond)
		if w.gather(10); len(w.batch) != 1 || w.peak != 0 {
			t.Errorf("gather took %d requests and left the peak at %v; want 1 and 0", len(w.batch), w.peak)
		}
	})
	t.Run("until Close", func(t *testing.T) {
		w := newWriter(time.Hour)
		close(w.j.quit)
		if w.gather(10); len(w.batch) != 1 {
			t.Errorf("gather took %d requests, want 1", len(w.batch))
		}
	})
}

func TestGroupWaitDefault(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{{0, DefaultGroupWait}, {-1, -1}, {time.Second, time.Second}} {
		o, err := (&Options{GroupWait: c.in}).withDefaults()
		if err != nil || o.GroupWait != c.want {
			t.Errorf("GroupWait %v: %v, %v; want %v", c.in, o.GroupWait, err, c.want)
		}
	}
}
