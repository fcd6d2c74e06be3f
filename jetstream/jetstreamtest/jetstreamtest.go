// Package jetstreamtest runs NATS servers with JetStream inside a test
// process, on 127.0.0.1, so that tests of a collector on a
// [github.com/opentrackhq/opentrack/jetstream.Queue] run against the real
// server rather than a stand-in:
//
//	s := jetstreamtest.RunServer(t)
//	q, err := jetstream.Open(ctx, &jetstream.Options{Servers: []string{s.ClientURL()}})
//
// Servers store in the test's temporary directory and are shut down when
// the test ends.
package jetstreamtest

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options returns the options RunServer uses: JetStream on, listening on
// 127.0.0.1 on a free port, storing in dir, with no logging and no signal
// handling. Set Port to a former server's port and keep dir to restart
// that server.
func Options(dir string) *server.Options {
	return &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	}
}

// Start starts a server with opts, waits until it takes connections, and
// shuts it down when the test ends.
func Start(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("jetstreamtest: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("jetstreamtest: server %s not ready within 10s", opts.ServerName)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// RunServer starts one server with JetStream.
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	return Start(t, Options(t.TempDir()))
}

// RunCluster starts n servers (n ≥ 1) forming one JetStream cluster,
// named s0, s1, ..., each routing to all the others on free ports of
// 127.0.0.1. JetStream elects its leaders in the seconds that follow;
// [github.com/opentrackhq/opentrack/jetstream.Open] waits for them.
func RunCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	// Clustered JetStream needs its routes configured at start, so the
	// route ports are chosen first: free now, taken again a moment later.
	ports := make([]int, n)
	var routes []*url.URL
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("jetstreamtest: %v", err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes = append(routes, &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i]))})
	}
	out := make([]*server.Server, n)
	for i := range out {
		o := Options(t.TempDir())
		o.ServerName = fmt.Sprintf("s%d", i)
		o.Cluster = server.ClusterOpts{Name: "opentrack-test", Host: "127.0.0.1", Port: ports[i]}
		o.Routes = routes
		out[i] = Start(t, o)
	}
	return out
}

// URLs returns the client URLs of servers.
func URLs(servers []*server.Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.ClientURL()
	}
	return out
}
