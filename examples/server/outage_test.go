package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
)

// TestLongOutageThenKill: Customer.io (its stand-in) fails every call while
// clients keep sending; the server is killed during the outage and started
// again on its journal; once the destination is back, every event accepted
// reaches it, and the server's memory stays bounded meanwhile.
func TestLongOutageThenKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills processes")
	}
	// The child is this test binary: under -race its memory is several
	// times what it is in production, so RSS is reported but not bounded.
	cio := fakecustomerio.NewHandler("site", "key")
	var down atomic.Bool
	down.Store(true)
	arrived := make(chan string, 100000)
	stand := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, `{"meta":{"error":"down"}}`, http.StatusServiceUnavailable)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		cio.ServeHTTP(rec, r)
		if rec.status < 300 {
			arrived <- r.URL.Path
		}
	}))
	defer stand.Close()

	dir := t.TempDir()
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	start := func() *exec.Cmd {
		return startChild(t, "PORT="+port, "ADMIN_ADDR=127.0.0.1:0", "WRITE_KEY=wk",
			"OPENTRACK_DATA_DIR="+filepath.Join(dir, "data"), "CUSTOMERIO_SITE_ID=site", "CUSTOMERIO_API_KEY=key",
			"CUSTOMERIO_TRACK_URL="+stand.URL, "SHUTDOWN_TIMEOUT=5s")
	}

	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		n        atomic.Int64
	)
	send := func(count int) {
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for range count / 8 {
					i := n.Add(1)
					body := fmt.Sprintf(`{"userId":"user-%d","event":"Outage","properties":{"seq":"m%d"}}`, w, i)
					req, _ := http.NewRequest("POST", "http://"+addr+"/v1/track", strings.NewReader(body))
					req.SetBasicAuth("wk", "")
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						continue
					}
					res.Body.Close()
					if res.StatusCode == 200 {
						mu.Lock()
						accepted[fmt.Sprint("m", i)] = true
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
	}

	cmd := start()
	send(4000)
	rssDuringOutage := rssKB(t, cmd.Process.Pid)
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	cmd = start()
	send(4000)
	rssAfterRestart := rssKB(t, cmd.Process.Pid)
	down.Store(false)

	// Every accepted event arrives: wait for the stand-in to say so.
	got := map[string]int{}
	deadline := time.After(60 * time.Second)
	for missing := len(accepted); missing > 0; {
		select {
		case <-arrived:
		case <-deadline:
			t.Fatalf("%d of %d accepted events had not arrived 60s after the destination came back", missing, len(accepted))
		}
		for drained := false; !drained; {
			select {
			case <-arrived:
			default:
				drained = true
			}
		}
		missing = 0
		clear(got)
		for _, c := range cio.Calls() {
			var b struct {
				Data map[string]any `json:"data"`
			}
			if json.Unmarshal(c.Body, &b) == nil {
				if seq, ok := b.Data["seq"].(string); ok {
					got[seq]++
				}
			}
		}
		for id := range accepted {
			if got[id] == 0 {
				missing++
			}
		}
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
	_ = cmd.Wait()
	dups := 0
	for _, c := range got {
		dups += c - 1
	}
	t.Logf("%d accepted during the outage, all delivered after it; %d delivered twice (redelivered after the kill); RSS %d MB during the outage, %d MB after the restart",
		len(accepted), dups, rssDuringOutage>>10, rssAfterRestart>>10)
	if !raceEnabled && (rssDuringOutage > 100<<10 || rssAfterRestart > 100<<10) {
		t.Errorf("RSS %d MB / %d MB during the outage, want under 100 MB", rssDuringOutage>>10, rssAfterRestart>>10)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// rssKB reads a process's resident set size from /proc.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
