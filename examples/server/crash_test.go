package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// crashChildEnv makes the test binary run the server itself: the crash test
// starts it as a child process it can kill.
const crashChildEnv = "OPENTRACK_CRASH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestKilledServerLosesNothingAccepted runs the example server as a child
// process under load from several clients, kills it with SIGKILL at random
// moments, restarts it on the same journal folder, and finally stops it with
// SIGTERM. Every event answered 2xx must be in the JSON-lines sink; the
// duplicates that at-least-once redelivery causes are counted and reported.
func TestKilledServerLosesNothingAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills processes")
	}
	dir := t.TempDir()
	sink := filepath.Join(dir, "events.jsonl")
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	start := func() *exec.Cmd {
		return startChild(t, "PORT="+port, "ADMIN_ADDR=127.0.0.1:0", "WRITE_KEY=wk",
			"OPENTRACK_DATA_DIR="+filepath.Join(dir, "data"), "OPENTRACK_FILE="+sink, "SHUTDOWN_TIMEOUT=20s")
	}

	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		seq      atomic.Int64
	)
	client := &http.Client{Timeout: 5 * time.Second}
	load := func(ctx context.Context) {
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for ctx.Err() == nil {
					n := seq.Add(1)
					id := fmt.Sprintf("crash-%d", n)
					body := fmt.Sprintf(`{"userId":"u%d","event":"Crash Test","messageId":%q,"properties":{"n":%d}}`, w, id, n)
					req, _ := http.NewRequest("POST", "http://"+addr+"/v1/track", strings.NewReader(body))
					req.SetBasicAuth("wk", "")
					res, err := client.Do(req)
					if err != nil {
						continue // killed mid-request: not accepted, as far as the client knows
					}
					res.Body.Close()
					if res.StatusCode == 200 {
						mu.Lock()
						accepted[id] = true
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
	}

	const kills = 5
	for round := range kills + 1 {
		cmd := start()
		// The signal lands while the clients are sending.
		ctx, cancel := context.WithCancel(context.Background())
		loaded := make(chan struct{})
		go func() {
			load(ctx)
			close(loaded)
		}()
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		sig := syscall.SIGKILL
		if round == kills {
			sig = syscall.SIGTERM
		}
		if err := syscall.Kill(cmd.Process.Pid, sig); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		cancel()
		<-loaded
		if round == kills && err != nil {
			t.Fatalf("the last server, stopped with SIGTERM, exited with %v", err)
		}
	}

	data, err := os.ReadFile(sink)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	torn := 0
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e struct {
			MessageID string `json:"messageId"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			torn++
			continue
		}
		seen[e.MessageID]++
	}
	lost, dups := 0, 0
	for id := range accepted {
		if seen[id] == 0 {
			lost++
		}
	}
	for _, n := range seen {
		dups += n - 1
	}
	t.Logf("%d kills; %d requests sent, %d answered 2xx; the sink holds %d events, %d of them redelivered duplicates, %d torn lines",
		kills, seq.Load(), len(accepted), len(seen), dups, torn)
	if len(accepted) == 0 {
		t.Fatal("no request was accepted")
	}
	if lost > 0 {
		t.Errorf("%d events answered 2xx never reached the sink", lost)
	}
	if torn > 0 {
		t.Errorf("%d lines of the sink are not JSON", torn)
	}
}

// startChild starts this test binary as the server, with env added to the
// environment, and returns once it listens. The child's race reports, if
// any, are copied to the test's log.
func startChild(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), crashChildEnv+"=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the server to listen: it logs a line saying so.
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "opentrack listening") {
				said = true
				listening <- true
			}
			if raceReport(sc.Text()) {
				t.Log(sc.Text())
			}
		}
		if !said {
			listening <- false
		}
	}()
	select {
	case ok := <-listening:
		if !ok {
			t.Fatal("the server exited before listening")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not listen within 30s")
	}
	return cmd
}

// inRace is set while a child's race report is being copied to the log.
var inRace atomic.Bool

// raceReport reports whether a line of a child's stderr belongs to a report
// of the race detector, which the test then shows.
func raceReport(line string) bool {
	switch {
	case strings.Contains(line, "WARNING: DATA RACE"):
		inRace.Store(true)
	case strings.HasPrefix(line, "=================="):
		return inRace.Swap(false)
	}
	return inRace.Load()
}
