// Command jetstream-cluster shows several collectors sharing one replicated
// NATS JetStream stream, on this machine:
//
//	go run ./examples/jetstream-cluster [-events 20000] [-senders 16] [-kill=true]
//
// It starts three nats-server processes as one JetStream cluster on
// 127.0.0.1 (Debian's nats-server when installed, else one built from the
// module's github.com/nats-io/nats-server/v2), and two collectors: the
// example server (./examples/server) with NATS_URL set, NATS_REPLICAS=3,
// each writing what it delivers to a JSON-lines file of its own. It sends
// the events through both collectors from several goroutines, as /v1/batch
// requests of ten, resending a refused request as the SDKs do, and in the
// middle kills the stream's leader with SIGKILL. Then it stops the
// collectors with SIGTERM, which deliver what they accepted, and counts
// the events in the two files: every event answered 2xx must be there.
//
// Traffic goes to 127.0.0.1 only, bounded by -events and -timeout. The
// program ends only the processes it started, by their PIDs.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	events := flag.Int("events", 20000, "events to send, in batches of 10")
	senders := flag.Int("senders", 16, "concurrent senders")
	kill := flag.Bool("kill", true, "SIGKILL the stream's leader halfway through")
	timeout := flag.Duration("timeout", 3*time.Minute, "bound on the whole run")
	keep := flag.Bool("keep", false, "keep the working directory (logs, stores, JSON-lines files)")
	flag.Parse()

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelRun := context.WithTimeout(ctx, *timeout)
	defer cancelRun()
	d := &demo{}
	err := d.run(ctx, *events, *senders, *kill)
	d.stopAll()
	if *keep {
		log.Printf("working directory: %s", d.dir)
	} else if d.dir != "" {
		os.RemoveAll(d.dir)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// demo holds the processes it started.
type demo struct {
	dir   string
	mu    sync.Mutex
	procs []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

func (d *demo) run(ctx context.Context, events, senders int, kill bool) error {
	var err error
	if d.dir, err = os.MkdirTemp("", "opentrack-jetstream-cluster-"); err != nil {
		return err
	}
	natsBin, err := natsServer(d.dir)
	if err != nil {
		return err
	}
	log.Printf("building the example server")
	serverBin := filepath.Join(d.dir, "opentrack-server")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", serverBin, "./examples/server").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./examples/server (run from the repository's root): %v\n%s", err, out)
	}

	// Three NATS servers, one cluster.
	ports := freePorts(6)
	var routes, urls []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[3+i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	natsByName := map[string]*proc{}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i)
		p, err := d.start(ctx, name, natsBin, nil, "Server is ready",
			"-a", "127.0.0.1", "-p", fmt.Sprint(ports[i]), "-n", name,
			"-js", "-sd", filepath.Join(d.dir, name),
			"--cluster_name", "opentrack-demo", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
		if err != nil {
			return err
		}
		natsByName[name] = p
	}
	log.Printf("NATS cluster: %s", strings.Join(urls, " "))

	// Two collectors, each listing the servers in another order.
	var bases []string
	var collectors []*proc
	for i := range 2 {
		env := []string{
			"PORT=0", "WRITE_KEY=demo", "SHUTDOWN_TIMEOUT=60s",
			"NATS_URL=" + strings.Join(append(urls[i:], urls[:i]...), ","),
			"NATS_REPLICAS=3",
			"OPENTRACK_FILE=" + filepath.Join(d.dir, fmt.Sprintf("collector%d.jsonl", i)),
		}
		p, addr, err := d.startCollector(ctx, fmt.Sprintf("collector%d", i), serverBin, env)
		if err != nil {
			return err
		}
		collectors = append(collectors, p)
		bases = append(bases, "http://"+addr+"/v1/batch")
		log.Printf("collector%d (pid %d) on %s", i, p.cmd.Process.Pid, addr)
	}

	// Load, with the stream's leader killed halfway.
	batches := (events + 9) / 10
	var (
		next     atomic.Int64
		sent     atomic.Int64
		resent   atomic.Int64
		mu       sync.Mutex
		accepted = map[string]bool{}
		wg       sync.WaitGroup
		halfway  = make(chan struct{})
		once     sync.Once
		client   = &http.Client{Timeout: 10 * time.Second}
	)
	start := time.Now()
	for s := range senders {
		wg.Go(func() {
			for ctx.Err() == nil {
				b := int(next.Add(1)) - 1
				if b >= batches {
					return
				}
				if b == batches/2 {
					once.Do(func() { close(halfway) })
				}
				ids, body := batch(b, s)
				url := bases[b%2]
				for attempt := 0; attempt < 60 && ctx.Err() == nil; attempt++ {
					if attempt > 0 {
						resent.Add(1)
						time.Sleep(250 * time.Millisecond)
					}
					sent.Add(1)
					if post(ctx, client, url, body) == http.StatusOK {
						mu.Lock()
						for _, id := range ids {
							accepted[id] = true
						}
						mu.Unlock()
						break
					}
				}
			}
		})
	}
	if kill {
		select {
		case <-halfway:
			leader, err := streamLeader(ctx, urls)
			if err != nil {
				log.Printf("finding the stream's leader: %v", err)
			} else if p := natsByName[leader]; p != nil {
				log.Printf("SIGKILL nats-server %s (pid %d), the stream's leader", leader, p.cmd.Process.Pid)
				p.cmd.Process.Signal(syscall.SIGKILL)
			}
		case <-ctx.Done():
		}
	}
	wg.Wait()
	took := time.Since(start)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("load did not finish: %w", err)
	}

	// SIGTERM: each collector delivers what it accepted, then exits.
	stopping := time.Now()
	for _, p := range collectors {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range collectors {
		select {
		case <-p.done:
		case <-ctx.Done():
			return errors.New("collectors did not stop in time")
		}
	}

	log.Printf("collectors stopped %v after SIGTERM", time.Since(stopping).Round(time.Millisecond))

	lines := map[string]int{}
	perCollector := make([]int, 2)
	for i := range 2 {
		n, err := countLines(filepath.Join(d.dir, fmt.Sprintf("collector%d.jsonl", i)), lines)
		if err != nil {
			return err
		}
		perCollector[i] = n
	}
	missing, dups := 0, 0
	for id := range accepted {
		if lines[id] == 0 {
			missing++
		}
	}
	for _, n := range lines {
		dups += max(n-1, 0)
	}
	fmt.Printf("\n%d events in %v: %d requests sent, %d of them resends of a refused request\n", batches*10, took.Round(time.Millisecond), sent.Load(), resent.Load())
	fmt.Printf("answered 2xx:            %d events (%.0f/s)\n", len(accepted), float64(len(accepted))/took.Seconds())
	fmt.Printf("delivered by collector0: %d\n", perCollector[0])
	fmt.Printf("delivered by collector1: %d\n", perCollector[1])
	fmt.Printf("distinct events:         %d\n", len(lines))
	fmt.Printf("delivered twice:         %d\n", dups)
	fmt.Printf("answered 2xx, missing:   %d\n", missing)
	if missing > 0 {
		return fmt.Errorf("%d events answered 2xx were not delivered", missing)
	}
	if len(accepted) < batches*10 {
		return fmt.Errorf("only %d of %d events were accepted", len(accepted), batches*10)
	}
	return nil
}

// natsServer returns the nats-server to run: Debian's when installed,
// else one built from the module.
func natsServer(dir string) (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		log.Printf("using %s", p)
		return p, nil
	}
	bin := filepath.Join(dir, "nats-server")
	log.Printf("building nats-server from github.com/nats-io/nats-server/v2")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build nats-server: %v\n%s", err, out)
	}
	return bin, nil
}

// start runs a child process, logging its output to <dir>/<name>.log, and
// waits until a line of its output contains ready.
func (d *demo) start(ctx context.Context, name, bin string, env []string, ready string, args ...string) (*proc, error) {
	p, lines, err := d.spawn(name, bin, env, args...)
	if err != nil {
		return nil, err
	}
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return nil, fmt.Errorf("%s exited before it was ready; see %s", name, filepath.Join(d.dir, name+".log"))
			}
			if strings.Contains(line, ready) {
				return p, nil
			}
		case <-time.After(60 * time.Second):
			return nil, fmt.Errorf("%s not ready within 60s", name)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// startCollector runs the example server and returns its address, read
// from its "opentrack listening" log line.
func (d *demo) startCollector(ctx context.Context, name, bin string, env []string) (*proc, string, error) {
	p, lines, err := d.spawn(name, bin, env)
	if err != nil {
		return nil, "", err
	}
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return nil, "", fmt.Errorf("%s exited before it was ready; see %s", name, filepath.Join(d.dir, name+".log"))
			}
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "opentrack listening" {
				_, port, _ := net.SplitHostPort(l.Addr)
				return p, "127.0.0.1:" + port, nil
			}
		case <-time.After(60 * time.Second):
			return nil, "", fmt.Errorf("%s not ready within 60s", name)
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
	}
}

// spawn starts a child; its stderr and stdout go to a log file, and
// stderr's lines to the returned channel too (until it exits).
func (d *demo) spawn(name, bin string, env []string, args ...string) (*proc, <-chan string, error) {
	logf, err := os.Create(filepath.Join(d.dir, name+".log"))
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logf
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	d.mu.Lock()
	d.procs = append(d.procs, p)
	d.mu.Unlock()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			select {
			case lines <- sc.Text():
			default: // nobody is waiting for it any more
			}
		}
		close(lines)
		cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, lines, nil
}

// stopAll ends every process still running: SIGTERM, then SIGKILL after
// 10s, each by its PID.
func (d *demo) stopAll() {
	d.mu.Lock()
	procs := d.procs
	d.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
			continue
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func freePorts(n int) []int {
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// batch returns the messageIds and body of batch b: ten track events of
// one user.
func batch(b, sender int) ([]string, []byte) {
	type event struct {
		Type       string         `json:"type"`
		MessageID  string         `json:"messageId"`
		UserID     string         `json:"userId"`
		Event      string         `json:"event"`
		Properties map[string]any `json:"properties"`
	}
	var body struct {
		Batch []event `json:"batch"`
	}
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = fmt.Sprintf("demo-%d-%d", b, i)
		body.Batch = append(body.Batch, event{"track", ids[i], fmt.Sprintf("user-%d", b%500), "Product Viewed",
			map[string]any{"sku": "G-32", "price": 18.99, "sender": sender}})
	}
	out, _ := json.Marshal(body)
	return ids, out
}

func post(ctx context.Context, c *http.Client, url string, body []byte) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("demo", "")
	res, err := c.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// streamLeader asks the cluster which server leads the OPENTRACK stream.
func streamLeader(ctx context.Context, urls []string) (string, error) {
	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		return "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	s, err := js.Stream(ctx, "OPENTRACK")
	if err != nil {
		return "", err
	}
	if c := s.CachedInfo().Cluster; c != nil && c.Leader != "" {
		return c.Leader, nil
	}
	return "", errors.New("the stream has no leader")
}

// countLines adds the messageIds of a JSON-lines file to seen and returns
// how many lines it has.
func countLines(path string, seen map[string]int) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			MessageID string `json:"messageId"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return n, fmt.Errorf("%s: %w", path, err)
		}
		seen[e.MessageID]++
		n++
	}
	return n, sc.Err()
}
