package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	probe "github.com/heraldpush/herald/internal/healthcheck"
)

// cmdHealthcheck asks the local node whether it is ready (GET /readyz) and
// exits 0 only when it is (see internal/healthcheck for why it exists).
//
//	herald healthcheck                       # http://127.0.0.1:8080/readyz, or HERALD_LISTEN's port
//	herald healthcheck --listen :9000        # the node's listen address, as given to serve
//	herald healthcheck --url http://10.0.0.5:8080
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", envOr("HERALD_LISTEN", ":8080"), "the node's listen address (env HERALD_LISTEN); probed on loopback when it names no host")
	base := fs.String("url", "", "the node's base URL (overrides --listen)")
	path := fs.String("path", "/readyz", "what to probe: /readyz (ready for clients) or /healthz (process alive)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("healthcheck: unexpected argument %q", fs.Arg(0))
	}
	u, err := probe.URL(*base, *listen, *path)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	r, err := probe.Probe(ctx, u)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s: %s %s\n", u, r.Status, r.Node)
	return err
}
