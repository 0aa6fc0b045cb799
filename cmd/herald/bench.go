package main

import (
	"context"
	"flag"
	"fmt"
	"io"
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
	maxRate := fs.Float64("max-rate", 0, "load: every subscriber asks for max_rate: at most this many messages/s per channel, the newest winning; the report counts what the server skipped")
	tag := fs.String("tag", "", "load: name the channels bench.TAG.0, bench.TAG.1, ... (default random); runs with the same tag load the same channels")
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
	httpURLs, wsURLs := bench.SplitURLs(*urls)
	if !*check {
		cfg := bench.Config{
			URLs: httpURLs, Key: *key, Conns: *conns, Channels: *channels,
			Rate: *rate, Batch: *batch, Publishers: *publishers, Duration: *duration,
			PublishOnly: *publishOnly, WSBatch: *wsBatch, Stalled: *stalled, MaxRate: *maxRate, Progress: stderr, Tag: *tag,
		}
		var err error
		if cfg.PIDs, err = bench.ParsePIDs(*pids); err != nil {
			return err
		}
		if cfg.Sources, err = bench.ParseSources(*sources); err != nil {
			return err
		}
		return bench.RunPrint(ctx, cfg, *asJSON, stdout)
	}
	cfg := checker.Config{
		WSURLs: wsURLs, HTTPURLs: httpURLs, APIKey: *key, Namespace: *ns,
		Channels: *channels, Subscribers: *subs, Messages: *msgs, Rate: *rate, Drops: *drops,
	}
	r, err := checker.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := bench.Print(stdout, r, *asJSON); err != nil {
		return err
	}
	if !r.OK() {
		return fmt.Errorf("bench --check: %d missing, %d duplicated, %d reordered", r.Missing, r.Duplicated, r.Reordered)
	}
	return nil
}
