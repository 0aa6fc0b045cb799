package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/heraldpush/herald/internal/bench"
	"github.com/heraldpush/herald/internal/checker"
)

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check", false, "verify delivery: every subscriber gets every message once, in order")
	urls := fs.String("url", "http://localhost:8080", "server base URL(s), comma-separated. --check: publishes and connections rotate through them; load: connection i goes to URL i mod n, publishes to the first")
	key := fs.String("key", "", "publisher API key (env HERALD_API_KEY)")
	ns := fs.String("namespace", "", "namespace of the test channels (it should keep history for recovery)")
	channels := fs.Int("channels", 4, "channels")
	subs := fs.Int("subscribers", 50, "subscribing connections")
	msgs := fs.Int("messages", 1000, "messages per channel")
	rate := fs.Int("rate", 2000, "publishes per second over all channels (0: unlimited)")
	drops := fs.Int("drops", 0, "--check: connections to drop with a TCP reset at random while publishing")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	conns := fs.Int("conns", 1000, "load: subscribing WebSocket connections (connection i subscribes to channel i mod --channels)")
	duration := fs.Duration("duration", 10*time.Second, "load: publishing time")
	batch := fs.Int("batch", 1, "load: messages per publish request (1: POST /api/publish, more: POST /api/batch)")
	publishers := fs.Int("publishers", 16, "load: concurrent HTTP publish requests")
	sources := fs.String("sources", "", "load: local addresses to dial from, comma-separated (127.0.0.1,127.0.0.2,...): each has its own ephemeral port range")
	pids := fs.String("pid", "", "load: pid(s) of local servers, comma-separated, to report their RSS summed (VmRSS in /proc/<pid>/status)")
	wsBatch := fs.Bool("ws-batch", false, "load: connect with batch=1 (the server packs a connection's queued messages into one frame)")
	stalled := fs.Int("stalled", 0, "load: subscribers that never read, beside --conns readers (slow-consumer handling at scale); reports how many the server closed and peak memory")
	publishOnly := fs.Bool("publish-only", false, "load: no subscribers, measure HTTP publish throughput")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: herald bench [--check] [flags]\n\nLoad and delivery checks against a running Herald. Without --check it is a\nload generator: --conns subscribers over --channels (and over the --url\nnodes), --rate messages/s published over HTTP for --duration; it reports\ndeliveries/s, end-to-end latency, losses and (with --pid) the servers' RSS.\nProgress goes to stderr.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" {
		*key = envOr("HERALD_API_KEY", "")
	}
	var wsURLs, httpURLs []string
	for _, u := range strings.Split(*urls, ",") {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		if u == "" {
			continue
		}
		httpURLs = append(httpURLs, u)
		wsURLs = append(wsURLs, "ws"+strings.TrimPrefix(u, "http")+"/ws")
	}
	if !*check {
		cfg := bench.Config{
			URLs: httpURLs, Key: *key, Conns: *conns, Channels: *channels,
			Rate: *rate, Batch: *batch, Publishers: *publishers, Duration: *duration,
			PublishOnly: *publishOnly, WSBatch: *wsBatch, Stalled: *stalled, Progress: stderr,
		}
		for _, s := range strings.Split(*pids, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			pid, err := strconv.Atoi(s)
			if err != nil || pid <= 0 {
				return fmt.Errorf("bench: --pid: %q is not a pid", s)
			}
			cfg.PIDs = append(cfg.PIDs, pid)
		}
		for _, s := range strings.Split(*sources, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			ip := net.ParseIP(s)
			if ip == nil {
				return fmt.Errorf("bench: --sources: %q is not an IP address", s)
			}
			cfg.Sources = append(cfg.Sources, ip)
		}
		return printLoad(ctx, cfg, *asJSON, stdout)
	}
	cfg := checker.Config{
		WSURLs: wsURLs, HTTPURLs: httpURLs, APIKey: *key, Namespace: *ns,
		Channels: *channels, Subscribers: *subs, Messages: *msgs, Rate: *rate, Drops: *drops,
	}
	r, err := checker.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := printReport(stdout, r, *asJSON); err != nil {
		return err
	}
	if !r.OK() {
		return fmt.Errorf("bench --check: %d missing, %d duplicated, %d reordered", r.Missing, r.Duplicated, r.Reordered)
	}
	return nil
}

// printLoad runs the load generator and prints its report.
func printLoad(ctx context.Context, cfg bench.Config, asJSON bool, stdout io.Writer) error {
	r, err := bench.Run(ctx, cfg)
	if r == nil {
		return err
	}
	if perr := printReport(stdout, r, asJSON); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	if r.Conns > 0 && r.ConnsUp == 0 {
		return fmt.Errorf("bench: no connection came up: %s", r.FirstError)
	}
	return nil
}

// printReport writes a report as indented JSON or as its String form.
func printReport(w io.Writer, r fmt.Stringer, asJSON bool) error {
	if !asJSON {
		_, err := fmt.Fprintln(w, r)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
