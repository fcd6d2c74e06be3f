// Command fakecustomerio serves the Customer.io Track API stand-in of package
// fakecustomerio on a local port, to try the collector without a Customer.io
// workspace:
//
//	go run ./internal/fakecustomerio/cmd/fakecustomerio -addr 127.0.0.1:9060
//	CUSTOMERIO_SITE_ID=local CUSTOMERIO_API_KEY=local CUSTOMERIO_TRACK_URL=http://127.0.0.1:9060 go run ./examples/server
//	curl http://127.0.0.1:9060/fakecustomerio/dump
//
// It accepts the credentials given by -site-id and -api-key ("local" and
// "local" by default) and answers 401 to others, as Customer.io does. It
// prints the address it listens on, keeps everything in memory and serves
// until it receives SIGINT or SIGTERM. GET /fakecustomerio/dump shows, as
// JSON, every call it accepted and how many requests it received.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "fakecustomerio:", err)
		os.Exit(1)
	}
}

// errUsage is returned for bad arguments, once the flag set has reported
// them.
var errUsage = errors.New("bad arguments")

// shutdownTimeout bounds the wait for requests in progress at shutdown.
const shutdownTimeout = 5 * time.Second

// run serves the stand-in on the address args name until ctx ends, then
// shuts the server down. It writes the address it listens on to stdout
// once it accepts connections, so that -addr 127.0.0.1:0 can be used.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakecustomerio", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9060", "address to listen on")
	siteID := fs.String("site-id", "local", "Track API site ID to accept")
	apiKey := fs.String("api-key", "local", "Track API key to accept")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return errUsage
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           fakecustomerio.NewHandler(*siteID, *apiKey),
		ReadHeaderTimeout: 10 * time.Second,
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "fakecustomerio: serving the Customer.io Track API at %s (dump: %s%s)\n", base, base, fakecustomerio.DumpPath)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
