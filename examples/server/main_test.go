package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMUnderLoadLosesNothing sends events from many clients, delivers
// SIGTERM while they are still sending, and checks that every event answered
// 2xx is in the JSON-lines file exactly once.
func TestSIGTERMUnderLoadLosesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	env := map[string]string{"PORT": "0", "OPENTRACK_FILE": path, "WRITE_KEY": "wk", "SHUTDOWN_TIMEOUT": "20s", "OPENTRACK_DATA_DIR": t.TempDir()}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	log := slog.New(slog.DiscardHandler)
	go func() { done <- run(t.Context(), func(k string) string { return env[k] }, log, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	}
	url := "http://" + strings.Replace(addr, "[::]", "127.0.0.1", 1) + "/v1/track"

	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		refused  atomic.Int64
		sent     atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 5 * time.Second}
	for w := range 16 {
		wg.Go(func() {
			for i := 0; !stop.Load() && i < 100000; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				body := fmt.Sprintf(`{"userId":"u%d","event":"Load","messageId":%q,"properties":{"i":%d}}`, w, id, i)
				req, _ := http.NewRequest("POST", url, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.SetBasicAuth("wk", "")
				res, err := client.Do(req)
				sent.Add(1)
				if err != nil {
					refused.Add(1)
					if sent.Load() > 200 {
						return // the listener is closed
					}
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == 200 {
					mu.Lock()
					accepted[id] = true
					mu.Unlock()
				} else {
					refused.Add(1)
				}
			}
		})
	}
	// Let load build up, then stop the server as an orchestrator would.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(accepted)
		mu.Unlock()
		if n >= 3000 {
			break
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v, want a clean exit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop within 30s of SIGTERM")
	}
	stop.Store(true)
	wg.Wait()

	lines := messageIDCounts(t, path)
	mu.Lock()
	defer mu.Unlock()
	if len(accepted) < 100 {
		t.Fatalf("only %d events accepted before SIGTERM; the test needs load", len(accepted))
	}
	for id := range accepted {
		if lines[id] != 1 {
			t.Errorf("event %s got 200 but is in the file %d times", id, lines[id])
		}
	}
	t.Logf("sent %d requests; %d accepted, all in the file once; %d refused or failed after SIGTERM", sent.Load(), len(accepted), refused.Load())
}

// messageIDCounts reads the JSON-lines file at path and counts the lines of
// each messageId; a line that is not JSON fails the test.
func messageIDCounts(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			MessageID string `json:"messageId"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		lines[e.MessageID]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
