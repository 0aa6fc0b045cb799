package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker/brokertest"
	"github.com/heraldpush/herald/internal/bench"
	"github.com/heraldpush/herald/push"
)

// TestBenchLoad runs a small load (200 connections, 5 channels, 2s) against
// an in-process node and checks that the report is sane: every message
// delivered to every subscriber of its channel, no losses, percentiles in
// order, RSS read.
func TestBenchLoad(t *testing.T) {
	n := startTestNode(t, testConfig())
	testBenchLoad(t, 200, "--url", n.URL(), "--conns", "200", "--channels", "5", "--rate", "500",
		"--duration", "2s", "--json", "--pid", strconv.Itoa(os.Getpid()), "--sources", "127.0.0.1")
}

// TestBenchLoadWSBatch is the same with batch=1 connections, at a rate
// that makes the server pack several messages into a frame.
func TestBenchLoadWSBatch(t *testing.T) {
	n := startTestNode(t, testConfig())
	testBenchLoad(t, 200, "--url", n.URL(), "--conns", "200", "--channels", "5", "--rate", "2000", "--batch", "20",
		"--duration", "2s", "--json", "--pid", strconv.Itoa(os.Getpid()), "--ws-batch")
}

// testBenchLoad runs bench with args, expecting conns connections up and
// every delivery made.
func testBenchLoad(t *testing.T, conns int, args ...string) bench.Report {
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cmdBench(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	var r bench.Report
	decodeJSON(t, stdout.Bytes(), &r)
	t.Logf("report: %s\nprogress:\n%s", stdout.String(), stderr.String())
	if r.ConnsUp != conns || r.ConnErrors != 0 {
		t.Errorf("%d connections up, %d errors (%s), want %d and 0", r.ConnsUp, r.ConnErrors, r.FirstError, conns)
	}
	if r.Published == 0 || r.PublishErrors != 0 {
		t.Errorf("published %d with %d errors", r.Published, r.PublishErrors)
	}
	if r.Delivered == 0 || r.Delivered != r.Expected {
		t.Errorf("delivered %d, expected %d", r.Delivered, r.Expected)
	}
	if r.Lost != 0 || r.Missing != 0 || r.Duplicates != 0 || r.Closed != 0 {
		t.Errorf("lost %d, missing %d, duplicates %d, closed %d: want none", r.Lost, r.Missing, r.Duplicates, r.Closed)
	}
	if !(0 < r.P50MS && r.P50MS <= r.P90MS && r.P90MS <= r.P99MS && r.P99MS <= r.MaxMS+0.001) {
		t.Errorf("latency percentiles out of order: p50 %v p90 %v p99 %v max %v", r.P50MS, r.P90MS, r.P99MS, r.MaxMS)
	}
	if r.ServerRSSIdleMB <= 0 || r.DeliveredPerS <= 0 {
		t.Errorf("RSS %v MB, %v deliveries/s: want both > 0", r.ServerRSSIdleMB, r.DeliveredPerS)
	}
	if !bytes.Contains(stderr.Bytes(), []byte("published")) {
		t.Errorf("no progress line on stderr:\n%s", stderr.String())
	}
	return r
}

// TestBenchPublishOnly checks --publish-only: HTTP publishes, no
// connections, a table on stdout.
func TestBenchPublishOnly(t *testing.T) {
	n := startTestNode(t, testConfig())
	var stdout, stderr bytes.Buffer
	err := cmdBench(context.Background(), []string{"--url", n.URL(), "--publish-only", "--rate", "0",
		"--duration", "500ms", "--batch", "10", "--publishers", "4"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	if !bytes.Contains(stdout.Bytes(), []byte("published")) || bytes.Contains(stdout.Bytes(), []byte("connections up")) {
		t.Errorf("report:\n%s", stdout.String())
	}
	t.Logf("%s", stdout.String())
}

// TestBenchLoadCluster spreads the subscribers over three nodes sharing a
// Redis and publishes through the first: every node delivers, and every
// delivery arrives with none lost.
func TestBenchLoadCluster(t *testing.T) {
	srv := brokertest.StartRedis(t)
	nodes := startCluster(t, srv.URL(), 3)
	_, hs := urls(nodes)
	pid := strconv.Itoa(os.Getpid())
	r := testBenchLoad(t, 300, "--url", strings.Join(hs, ","), "--key", "cluster-key", "--conns", "300",
		"--channels", "5", "--rate", "300", "--duration", "2s", "--json", "--pid", pid+","+pid)
	var sum uint64
	for _, n := range nodes {
		d := n.Core().Snapshot().Delivered
		if d == 0 {
			t.Errorf("node %s delivered nothing", n.Addr())
		}
		sum += d
	}
	if sum != r.Delivered {
		t.Errorf("the nodes delivered %d, the subscribers read %d", sum, r.Delivered)
	}
}

// TestBenchLoadSources dials from 127.0.0.2 and 127.0.0.3 (Linux routes
// all of 127/8 to lo) to a node that takes 50 connections per address:
// all 100 come up only if both addresses are used. From one address
// alone, the control, half of them are refused.
func TestBenchLoadSources(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnsPerIP = 50
	n := startTestNode(t, cfg)
	testBenchLoad(t, 100, "--url", n.URL(), "--conns", "100", "--channels", "2", "--rate", "200",
		"--duration", "1s", "--json", "--pid", strconv.Itoa(os.Getpid()), "--sources", "127.0.0.2, 127.0.0.3")
	if got := n.Core().Rejections()["ip_limit"]; got != 0 {
		t.Errorf("%d connections refused by the per-address limit, want 0", got)
	}

	var stdout, stderr bytes.Buffer
	err := cmdBench(context.Background(), []string{"--url", n.URL(), "--conns", "100", "--channels", "2",
		"--rate", "10", "--duration", "200ms", "--json", "--sources", "127.0.0.4"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	var r bench.Report
	decodeJSON(t, stdout.Bytes(), &r)
	if r.ConnsUp != 50 || r.ConnErrors != 50 || !strings.Contains(r.FirstError, "429") {
		t.Errorf("from one address: %d up, %d errors (%s), want 50, 50 and HTTP 429", r.ConnsUp, r.ConnErrors, r.FirstError)
	}
}

// chopProxy forwards to target, writing what the server sends in pieces
// of 1 to 97 bytes, so that the client's reads end inside frames and
// frame headers.
func chopProxy(t *testing.T, target string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				for size := 1; ; size = size%97 + 1 {
					n, err := up.Read(buf)
					for b := buf[:n]; len(b) > 0; {
						k := min(size, len(b))
						if _, werr := c.Write(b[:k]); werr != nil {
							return
						}
						b = b[k:]
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestBenchLoadSplitReads runs a load through a proxy that chops the
// server's stream, with heartbeats fast enough that unanswered pings would
// close connections: every message arrives once, none is lost.
func TestBenchLoadSplitReads(t *testing.T) {
	cfg := testConfig()
	cfg.Heartbeat = 100 * time.Millisecond
	cfg.HeartbeatTimeout = time.Second
	n := startTestNode(t, cfg)
	testBenchLoad(t, 40, "--url", chopProxy(t, n.Addr()), "--conns", "40", "--channels", "2", "--rate", "400",
		"--duration", "2s", "--json", "--pid", strconv.Itoa(os.Getpid()))
}

// TestBenchCheckProbe: bench --check asks the server first and names the
// namespace that is missing or keeps no history, in well under the 30 s
// a subscriber confirmation would wait.
func TestBenchCheckProbe(t *testing.T) {
	t.Setenv("HERALD_API_KEY", "")
	cfg := testConfig()
	cfg.APIKey = "k"
	cfg.Namespaces = map[string]*push.Namespace{"live": {}}
	n := startTestNode(t, cfg)
	for _, tc := range []struct{ args, want string }{
		{"--namespace check", `namespace "check" is not configured on ` + n.URL()},
		{"--namespace live", `namespace "live" keeps no history on ` + n.URL()},
		{"", "the default namespace (default_namespace) keeps no history"},
	} {
		start := time.Now()
		args := append([]string{"--check", "--url", n.URL(), "--key", "k", "--subscribers", "5"}, strings.Fields(tc.args)...)
		err := cmdBench(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %s: %v, want an error saying %q", tc.args, err, tc.want)
		}
		if d := time.Since(start); d > readTimeout {
			t.Errorf("bench %s took %s to fail", tc.args, d)
		}
	}
	err := cmdBench(context.Background(), []string{"--check", "--url", n.URL(), "--namespace", "live"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "HTTP 401 unauthorized") {
		t.Errorf("bench without the key: %v, want the server's 401", err)
	}
}

// TestBenchCheckDrops: bench --check --drops resets subscribers'
// connections while publishing; every message still arrives once, in
// order, and the subscribers did reconnect.
func TestBenchCheckDrops(t *testing.T) {
	t.Setenv("HERALD_API_KEY", "")
	cfg := testConfig()
	cfg.Namespaces = map[string]*push.Namespace{"check": {HistorySize: 1000, HistoryTTL: time.Minute}}
	n := startTestNode(t, cfg)
	var stdout, stderr bytes.Buffer
	err := cmdBench(context.Background(), []string{"--check", "--url", n.URL(), "--namespace", "check", "--json",
		"--channels", "2", "--subscribers", "5", "--messages", "300", "--rate", "600", "--drops", "5"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench --check --drops: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var r struct {
		Expected, Delivered, Reconnects int
	}
	decodeJSON(t, stdout.Bytes(), &r)
	if r.Expected != 2*5*300 || r.Delivered != r.Expected || r.Reconnects == 0 {
		t.Fatalf("report %s: want every message delivered after reconnects", stdout.String())
	}
}
