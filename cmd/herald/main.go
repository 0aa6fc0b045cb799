// Command herald is the Herald push server and its tools.
//
//	herald [serve] [flags]     run the server (the default)
//	herald demo                run the server with the demo feeds
//	herald publish CH [DATA]   publish a message (or one per stdin line)
//	herald subscribe CH...     print a channel's messages as JSON lines
//	herald help                list the commands
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// commands maps a subcommand to its entry point.
var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"serve":     cmdServe,
	"demo":      cmdDemo,
	"publish":   cmdPublish,
	"subscribe": cmdSubscribe,
	"token":     cmdToken,
	"bench":     cmdBench,
	// version.go, healthcheck.go
	"version":     cmdVersion,
	"healthcheck": cmdHealthcheck,
}

// envOr returns the environment variable name, or def when it is empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

const usage = `Herald: a push service that replaces Ajax polling.

Usage:
  herald [serve] [flags]   run the server (default; see herald serve --help)
  herald demo [flags]      the server with live demo feeds (same as serve --demo)
  herald publish CHANNEL [DATA]
                           publish DATA (JSON, or a string), or each line of stdin
  herald subscribe CHANNEL...
                           print messages as JSON lines; resumes after reconnects
  herald token --sub ID    mint a test connection token (HS256, from token_hmac_secret)
  herald bench --check     verify that every subscriber gets every message once, in order
  herald version           print the version, commit and build date
  herald healthcheck       exit 0 when the local node is ready (GET /readyz)
  herald help              show this help
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	if name == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", name)
	}
	return cmd(ctx, args, stdout, stderr)
}
