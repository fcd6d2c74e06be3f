//go:build unix

package journal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack/queue"
)

// The crash test runs this test binary again as a child process that
// appends from several goroutines and prints every acknowledged record. It
// kills the child with SIGKILL at a random point, several times over the
// same directory, and after each kill checks that every record the child
// saw acknowledged is read back.
const (
	crashDirEnv = "OPENTRACK_JOURNAL_CRASH_DIR"
	crashRunEnv = "OPENTRACK_JOURNAL_CRASH_RUN"
)

func crashOptions(logger *slog.Logger) *Options {
	return &Options{SegmentBytes: 64 << 10, MaxBytes: 64 << 20, TailRecords: 64, Logger: logger}
}

func TestCrash(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(dir, os.Getenv(crashRunEnv))
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	acked := map[uint64]string{} // every acknowledged record, over all runs
	var lastSeq uint64
	for run := range 6 {
		killAt := 1 + rand.IntN(1200) // acknowledged records to see before the kill
		cmd := exec.Command(exe, "-test.run=^TestCrash$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRunEnv+"="+strconv.Itoa(run))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		seen := 0
		for lines.Scan() {
			seq, id, ok := strings.Cut(lines.Text(), " ")
			if !ok {
				continue // the test framework's own output
			}
			n, err := strconv.ParseUint(seq, 10, 64)
			if err != nil {
				t.Fatalf("child printed %q", lines.Text())
			}
			if old, dup := acked[n]; dup {
				t.Fatalf("Seq %d acknowledged twice: %s and %s", n, old, id)
			}
			acked[n] = id
			if seen++; seen == killAt {
				// While the child runs, its directory is locked.
				if _, err := Open(dir, &Options{Logger: quiet()}); !errors.Is(err, ErrLocked) {
					t.Errorf("Open while the child holds the journal = %v, want ErrLocked", err)
				}
				if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("run %d: child ended with %v, not killed; stderr:\n%s", run, err, stderr.String())
		}
		if seen < killAt {
			t.Fatalf("run %d: child printed %d records before dying, want %d; stderr:\n%s", run, seen, killAt, stderr.String())
		}

		// Every acknowledged record is there, in order, once.
		var logs logBuffer
		j, err := Open(dir, crashOptions(logs.logger()))
		if err != nil {
			t.Fatalf("run %d: reopen: %v", run, err)
		}
		rs, err := j.Open([]string{"keep", "settle"})
		if err != nil {
			t.Fatal(err)
		}
		keep := rs[0]
		backlog := keep.Stats().Unsettled
		got := readN(t, keep, backlog)
		if rest := readRest(t, keep); len(rest) != 0 {
			t.Fatalf("run %d: %d records beyond the backlog of %d", run, len(rest), backlog)
		}
		bySeq := make(map[uint64]string, len(got))
		var prev uint64
		for _, r := range got {
			if r.Seq <= prev || !r.Redelivered {
				t.Fatalf("run %d: Seq %d after %d, Redelivered %v", run, r.Seq, prev, r.Redelivered)
			}
			prev = r.Seq
			bySeq[r.Seq] = r.Event.Fields().MessageID
		}
		for seq, id := range acked {
			if bySeq[seq] != id {
				t.Fatalf("run %d: acknowledged Seq %d (%s) read back as %q", run, seq, id, bySeq[seq])
			}
			lastSeq = max(lastSeq, seq)
		}
		if st := j.Stats(); st.Corrupt != 0 || st.Next <= lastSeq {
			t.Fatalf("run %d: %+v after a kill; log:\n%s", run, st, logs.String())
		}
		recent, err := j.RecentMessageIDs(20)
		if err != nil || len(recent) == 0 || recent[len(recent)-1] != bySeq[prev] {
			t.Fatalf("run %d: RecentMessageIDs = %q, %v; the newest record is %s", run, recent, err, bySeq[prev])
		}
		t.Logf("run %d: killed after %d acknowledged records; %d records read back, %d acknowledged in all, %d bytes truncated",
			run, seen, len(got), len(acked), j.Stats().Truncated)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// crashChild appends until it is killed, printing "Seq messageId" for each
// acknowledged record; a second reader settles what it reads, so that
// cursors are written while the kill comes.
func crashChild(dir, run string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	j, err := Open(dir, crashOptions(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	if err != nil {
		fail(err)
	}
	rs, err := j.Open([]string{"keep", "settle"})
	if err != nil {
		fail(err)
	}
	go func() {
		for {
			recs, err := rs[1].Next(context.Background(), 50)
			if err != nil {
				fail(err)
			}
			for _, r := range recs {
				rs[1].Settle(r.Seq)
			}
		}
	}()
	var out sync.Mutex
	for g := range 8 {
		go func() {
			for i := 0; ; i++ {
				recs := make([]queue.Record, 1+(g+i)%3)
				for k := range recs {
					recs[k] = queue.Record{Event: track(fmt.Sprintf("r%s-g%d-%d-%d", run, g, i, k), 300), Targets: []string{"keep", "settle"}}
				}
				if err := j.Append(context.Background(), recs); err != nil {
					fail(err)
				}
				var b strings.Builder
				for _, r := range recs {
					fmt.Fprintf(&b, "%d %s\n", r.Seq, r.Event.Fields().MessageID)
				}
				out.Lock()
				os.Stdout.WriteString(b.String())
				out.Unlock()
			}
		}()
	}
	// The parent kills the child long before this.
	time.Sleep(20 * time.Second)
	fail(errors.New("not killed within 20s"))
}
