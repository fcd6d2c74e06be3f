package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func startServer(t *testing.T, env map[string]string) (addr string, logs *syncBuffer) {
	t.Helper()
	if env["OPENTRACK_DATA_DIR"] == "" {
		env["OPENTRACK_DATA_DIR"] = t.TempDir()
	}
	logs = &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{ReplaceAttr: readableDurations}))
	ready := make(chan string, 1)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- run(ctx, func(k string) string { return env[k] }, log, ready) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	}
	return strings.Replace(addr, "[::]", "127.0.0.1", 1), logs
}

// TestAdminAddrKeepsStatsPrivate: with ADMIN_ADDR, /stats and /metrics are
// not on the public port.
func TestAdminAddrKeepsStatsPrivate(t *testing.T) {
	admin := freeAddr(t)
	addr, logs := startServer(t, map[string]string{"PORT": "0", "OPENTRACK_FILE": t.TempDir() + "/e.jsonl", "WRITE_KEY": "wk", "ADMIN_ADDR": admin})
	for _, path := range []string{"/stats", "/metrics"} {
		if code := get(t, "http://"+addr+path); code != http.StatusNotFound {
			t.Errorf("public %s: %d, want 404", path, code)
		}
		if code := get(t, "http://"+admin+path); code != http.StatusOK {
			t.Errorf("admin %s: %d, want 200", path, code)
		}
	}
	if code := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("public /healthz: %d, want 200", code)
	}
	if strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("warnings with a write key and an admin address: %s", logs)
	}
}

// TestWarnsWhenOpen: no write key and no admin address are said at start.
func TestWarnsWhenOpen(t *testing.T) {
	addr, logs := startServer(t, map[string]string{"PORT": "0", "OPENTRACK_FILE": t.TempDir() + "/e.jsonl"})
	if code := get(t, "http://"+addr+"/stats"); code != http.StatusOK {
		t.Errorf("/stats on the public port without ADMIN_ADDR: %d", code)
	}
	for _, want := range []string{"WRITE_KEY is not set", "ADMIN_ADDR is not set"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning %q in %s", want, logs)
		}
	}
}

// TestDurationsLoggedForPeople: "30s", not 30000000000.
func TestDurationsLoggedForPeople(t *testing.T) {
	var b syncBuffer
	slog.New(slog.NewJSONHandler(&b, &slog.HandlerOptions{ReplaceAttr: readableDurations})).Info("x", slog.Duration("timeout", 30*time.Second))
	if !strings.Contains(b.String(), `"timeout":"30s"`) {
		t.Errorf("logged %s", b.String())
	}
}

// TestConfigErrors: a bad or half configuration is a configError that names
// the variable, before anything listens.
func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, "SHUTDOWN_TIMEOUT"},
		{map[string]string{"WRITE_TIMEOUT": "-1s"}, "WRITE_TIMEOUT"},
		{map[string]string{"MAX_CONNECTIONS": "0"}, "MAX_CONNECTIONS"},
		{map[string]string{"CUSTOMERIO_SITE_ID": "x"}, "CUSTOMERIO_API_KEY"},
		{map[string]string{"WEBHOOK_URL": "ftp://x"}, "WEBHOOK_URL"},
		{map[string]string{"OPENTRACK_QUEUE": "disk"}, "OPENTRACK_QUEUE"},
		{map[string]string{"PUBLIC_URL": "collector.example.com"}, "PUBLIC_URL"},
		{map[string]string{"TRUST_PROXY": "maybe"}, "TRUST_PROXY"},
		{map[string]string{"OPENTRACK_MAX_DISK": "lots"}, "OPENTRACK_MAX_DISK"},
		{map[string]string{"WRITE_KEY": " , ,"}, "WRITE_KEY"}, // set, but no key in it
		{map[string]string{"PORT": "no-such-port"}, "PORT"},
	} {
		if tt.env["PORT"] == "" {
			tt.env["PORT"] = "0"
		}
		tt.env["OPENTRACK_DATA_DIR"] = t.TempDir()
		err := run(t.Context(), func(k string) string { return tt.env[k] }, slog.New(slog.DiscardHandler), nil)
		var ce *configError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: run = %v, want a configError naming %s", tt.env, err, tt.want)
		}
	}
}

// TestMaxConnectionsBoundsClients: connections beyond MAX_CONNECTIONS wait
// for a slot instead of each taking server memory; a freed slot serves them.
func TestMaxConnectionsBoundsClients(t *testing.T) {
	addr, _ := startServer(t, map[string]string{"PORT": "0", "OPENTRACK_FILE": t.TempDir() + "/e.jsonl", "ADMIN_ADDR": freeAddr(t), "MAX_CONNECTIONS": "2"})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	post := func(timeout time.Duration) error {
		client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		res, err := client.Post("http://"+addr+"/v1/track", "application/json", strings.NewReader(`{"userId":"u","event":"E"}`))
		if err == nil {
			res.Body.Close()
			if res.StatusCode != 200 {
				return errors.New(res.Status)
			}
		}
		return err
	}
	if err := post(300 * time.Millisecond); err == nil {
		t.Fatal("a third client was served while two connections held both slots")
	}
	held[0].Close()
	if err := post(10 * time.Second); err != nil {
		t.Fatalf("a freed slot did not serve the next client: %v", err)
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v any
	_ = json.NewDecoder(res.Body).Decode(&v)
	return res.StatusCode
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestUnusableDataDirIsAConfigError: a data folder that cannot be used stops
// the start with an error naming the variable, instead of failing later.
func TestUnusableDataDirIsAConfigError(t *testing.T) {
	file := t.TempDir() + "/not-a-dir"
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PORT": "0", "OPENTRACK_DATA_DIR": file}
	err := run(t.Context(), func(k string) string { return env[k] }, slog.New(slog.DiscardHandler), nil)
	var ce *configError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "OPENTRACK_DATA_DIR") {
		t.Errorf("run = %v, want a configError naming OPENTRACK_DATA_DIR", err)
	}
}

// TestSecondServerOnTheSameDataDirIsRefused: the journal's folder is locked.
func TestSecondServerOnTheSameDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	startServer(t, map[string]string{"PORT": "0", "OPENTRACK_DATA_DIR": dir, "ADMIN_ADDR": freeAddr(t), "WRITE_KEY": "k"})
	env := map[string]string{"PORT": "0", "OPENTRACK_DATA_DIR": dir}
	err := run(t.Context(), func(k string) string { return env[k] }, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "OPENTRACK_DATA_DIR") {
		t.Errorf("second server on one folder: %v, want an error naming OPENTRACK_DATA_DIR", err)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "10GiB": 10 << 30, "512 MiB": 512 << 20, "2GB": 2e9, "1KB": 1000} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "lots", "1TiB", "9999999999GiB"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q): no error", bad)
		}
	}
}
