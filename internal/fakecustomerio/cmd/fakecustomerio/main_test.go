package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	cio "github.com/customerio/go-customerio/v3"

	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
)

// baseURL reads the line the command prints when it listens and returns
// the base URL in it.
func baseURL(t *testing.T, r io.Reader) string {
	t.Helper()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the listening line: %v (got %q)", err, line)
	}
	_, rest, ok := strings.Cut(line, " at ")
	base, _, _ := strings.Cut(rest, " ")
	if !ok || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("listening line %q names no local URL", line)
	}
	return base
}

func dump(t *testing.T, base string) fakecustomerio.Dump {
	t.Helper()
	resp, err := http.Get(base + fakecustomerio.DumpPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("dump: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var d fakecustomerio.Dump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRun serves the stand-in on a free port, drives it with go-customerio,
// reads the dump, and stops it by ending the context, as a signal does.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-site-id", "site", "-api-key", "key"}, w, io.Discard)
		w.Close()
	}()
	base := baseURL(t, out)
	go io.Copy(io.Discard, out)

	// An empty dump is an empty list, not null.
	if d := dump(t, base); d.Attempts != 0 || d.Calls == nil || len(d.Calls) != 0 {
		t.Errorf("dump before any call = %+v", d)
	}

	region := cio.RegionUS
	region.TrackURL = base
	client := cio.NewTrackClient("site", "key", cio.WithRegion(region))
	if err := client.IdentifyCtx(ctx, "user-1", map[string]any{"email": "ada@example.com"}); err != nil {
		t.Fatalf("identify: %v", err)
	}
	if err := client.TrackCtx(ctx, "user-1", "Signed Up", map[string]any{"plan": "pro"}); err != nil {
		t.Fatalf("track: %v", err)
	}
	wrong := cio.NewTrackClient("site", "wrong", cio.WithRegion(region))
	var cerr *cio.CustomerIOError
	if err := wrong.IdentifyCtx(ctx, "user-2", nil); !errors.As(err, &cerr) || !strings.HasPrefix(err.Error(), "401") {
		t.Errorf("identify with a wrong key = %v, want a 401", err)
	}

	d := dump(t, base)
	if d.Attempts != 3 || len(d.Calls) != 2 {
		t.Fatalf("dump = %+v, want 3 attempts and 2 calls", d)
	}
	if c := d.Calls[0]; c.Method != http.MethodPut || c.Path != "/api/v1/customers/user-1" || string(c.Body) != `{"email":"ada@example.com"}` {
		t.Errorf("first call %s %s %s", c.Method, c.Path, c.Body)
	}
	if c := d.Calls[1]; c.Method != http.MethodPost || c.Path != "/api/v1/customers/user-1/events" ||
		string(c.Body) != `{"data":{"plan":"pro"},"name":"Signed Up"}` || !strings.HasPrefix(c.UserAgent, "Customer.io Go Client/") {
		t.Errorf("second call %s %s %s (User-Agent %q)", c.Method, c.Path, c.Body, c.UserAgent)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after the context ended = %v, want nil", err)
	}
	if _, err := http.Get(base + fakecustomerio.DumpPath); err == nil {
		t.Error("the server still answers after run returned")
	}
}

func TestRunBadArguments(t *testing.T) {
	for _, args := range [][]string{{"-nope"}, {"extra"}, {"-addr", "127.0.0.1:notaport"}} {
		err := run(t.Context(), args, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
	if err := run(t.Context(), []string{"-h"}, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(-h) = %v, want flag.ErrHelp", err)
	}
}

// TestSignal builds the command, runs it as a process and stops it with
// SIGTERM: it exits 0 once the server has shut down.
func TestSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := filepath.Join(t.TempDir(), "fakecustomerio")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // in case the test fails before Wait
	base := baseURL(t, stdout)
	if d := dump(t, base); d.Attempts != 0 {
		t.Errorf("dump = %+v", d)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30s after SIGTERM")
	}
}
