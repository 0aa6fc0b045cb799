package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker/brokertest"
	heraldclient "github.com/heraldpush/herald/clients/go"
	"github.com/heraldpush/herald/internal/checker"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// clusterConfig is a node of a cluster on the Redis at url.
func clusterConfig(url, name string) server.Config {
	cfg := checkConfig()
	cfg.RedisURL = url
	cfg.Node = name
	cfg.APIKey = "cluster-key"
	cfg.Heartbeat = 500 * time.Millisecond
	cfg.StatsInterval = 100 * time.Millisecond
	cfg.TokenHMACSecret = secret
	cfg.Namespaces["room"] = &push.Namespace{Presence: push.PresenceMembers}
	return cfg
}

func startCluster(t *testing.T, url string, n int) []*testNode {
	var nodes []*testNode
	for i := 0; i < n; i++ {
		nodes = append(nodes, startTestNode(t, clusterConfig(url, fmt.Sprintf("node-%c", 'a'+i))))
	}
	return nodes
}

func urls(nodes []*testNode) (ws, http []string) {
	for _, n := range nodes {
		ws = append(ws, n.wsURL("/ws", ""))
		http = append(http, n.base)
	}
	return ws, http
}

// TestClusterBehavesAsOne: a publish through one node reaches subscribers
// on all three in order, and presence, disconnect and stats span nodes.
func TestClusterBehavesAsOne(t *testing.T) {
	srv := brokertest.StartRedis(t)
	nodes := startCluster(t, srv.URL(), 3)
	var subs []*wsClient
	for _, n := range nodes {
		c := n.dial(query("channel", "news"))
		c.welcome()
		c.expect("subscribed")
		subs = append(subs, c)
	}
	for i := 1; i <= 50; i++ {
		nodes[i%3].publish("news", i)
	}
	for j, c := range subs {
		var last uint64
		for i := 1; i <= 50; i++ {
			m := c.expect("message")
			if string(m.Data) != fmt.Sprint(i) || m.Offset <= last {
				t.Fatalf("node %d: message %s, want data %d after offset %d", j, m, i, last)
			}
			last = m.Offset
		}
	}

	// Presence: a member on node a is seen from node c, join and leave.
	watcher := nodes[2].dial(query("token", userToken(t, "carol", "")))
	watcher.welcome()
	watcher.subscribe("room:1")
	watcher.expect("join")
	alice := nodes[0].dial(query("token", userToken(t, "alice", "")))
	alice.welcome()
	alice.subscribe("room:1")
	if j := watcher.expect("join"); !strings.Contains(string(j.Raw), `"user":"alice"`) {
		t.Fatalf("watcher on node c saw %s", j)
	}
	r := nodes[1].request("GET", "/api/channels/room:1/presence", nil, nil)
	if strings.Count(string(r.Body), `"client"`) != 2 {
		t.Fatalf("presence through node b: %s", r.Body)
	}
	// Disconnect through node b closes alice on node a.
	if r := nodes[1].request("POST", "/api/disconnect", map[string]string{"user": "alice"}, nil); r.Status != http.StatusOK {
		t.Fatalf("disconnect: %d %s", r.Status, r.Body)
	}
	alice.expectClose(4004)
	if l := watcher.expect("leave"); !strings.Contains(string(l.Raw), `"user":"alice"`) {
		t.Fatalf("watcher saw %s, want alice's leave", l)
	}
	// Stats: every node sees three.
	waitFor(t, 5*time.Second, "node c to report 3 nodes", func() bool {
		r := nodes[2].request("GET", "/api/stats", nil, nil)
		return strings.Contains(string(r.Body), `"nodes":3`)
	})
	waitFor(t, 5*time.Second, "node a to count news subscribers on all nodes", func() bool {
		r := nodes[0].request("GET", "/api/channels?prefix=news", nil, nil)
		return strings.Contains(string(r.Body), `{"channel":"news","subscribers":3}`)
	})
}

// TestClusterTenChannels: 10 channels x 1,000 sequence-numbered messages,
// published through all three nodes, arrive complete and in order on
// subscribers of every node.
func TestClusterTenChannels(t *testing.T) {
	srv := brokertest.StartRedis(t)
	nodes := startCluster(t, srv.URL(), 3)
	ws, hs := urls(nodes)
	runCheck(t, checker.Config{
		WSURLs: ws, HTTPURLs: hs, APIKey: "cluster-key", Namespace: "check",
		Channels: 10, Subscribers: 6, Messages: 1000,
	})
}

// TestClusterRedisRestart kills redis-server mid-stream for a few seconds
// and starts it again (AOF on): publishes in between are refused with 503
// and retried, nodes refill their gaps from history, and every subscriber
// ends with every message exactly once, in order.
func TestClusterRedisRestart(t *testing.T) {
	srv := brokertest.StartRedis(t, brokertest.AppendOnly(true))
	nodes := startCluster(t, srv.URL(), 3)
	ws, hs := urls(nodes)
	r := runCheck(t, checker.Config{
		WSURLs: ws, HTTPURLs: hs, APIKey: "cluster-key", Namespace: "check",
		Channels: 3, Subscribers: 6, Messages: 600, Rate: 150,
		During: func(ctx context.Context, _ []*heraldclient.Client) {
			time.Sleep(time.Second) // let the stream flow first
			srv.Kill()
			// While Redis is down: publishes get 503, readiness fails,
			// WebSockets stay open.
			res := nodes[0].request("POST", "/api/publish", map[string]any{"channel": "news", "data": 1}, nil)
			if res.Status != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
				t.Errorf("publish with Redis down: HTTP %d, Retry-After %q; want 503 with Retry-After", res.Status, res.Header.Get("Retry-After"))
			}
			if res := nodes[1].request("GET", "/readyz", nil, nil); res.Status != http.StatusServiceUnavailable {
				t.Errorf("/readyz with Redis down: %d", res.Status)
			}
			if _, _, subs := nodes[2].core.Counts(); subs == 0 {
				t.Errorf("subscriptions dropped while Redis was down")
			}
			time.Sleep(3 * time.Second) // the outage being tested
			srv.Restart()
		},
	})
	// A publish in flight at the kill is answered 504 outcome_unknown
	// (it may have run), not retried: it counts as uncertain.
	if r.Published+r.Uncertain != 3*600 {
		t.Fatalf("only %d of %d messages published (%d uncertain)", r.Published, 3*600, r.Uncertain)
	}
}

// TestClusterDrain drains one node behind a round-robin of two while
// messages flow: its clients get 1001 and move to the other node, and no
// publish answered 2xx is lost.
func TestClusterDrain(t *testing.T) {
	srv := brokertest.StartRedis(t)
	nodes := startCluster(t, srv.URL(), 2)
	ws, hs := urls(nodes)
	runCheck(t, checker.Config{
		WSURLs: ws, HTTPURLs: hs, APIKey: "cluster-key", Namespace: "check",
		Channels: 2, Subscribers: 8, Messages: 500, Rate: 250,
		During: func(ctx context.Context, _ []*heraldclient.Client) {
			time.Sleep(500 * time.Millisecond)
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := nodes[0].Shutdown(sctx); err != nil {
				t.Errorf("drain: %v", err)
			}
		},
	})
}

// TestNodeProcessKilled runs two herald processes on one Redis and kills
// one with SIGKILL mid-stream: its clients reconnect to the other and
// recover everything.
func TestNodeProcessKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; runs without -short (as CI does)")
	}
	srv := brokertest.StartRedis(t)
	bin := filepath.Join(t.TempDir(), "herald")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/heraldpush/herald/cmd/herald").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfgFile := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(cfgFile, []byte("namespaces:\n  check: {history_size: 10000, history_ttl: 10m}\nheartbeat: 500ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var procs []*exec.Cmd
	var ws, hs []string
	for i := 0; i < 2; i++ {
		cmd, addr := startProcess(t, bin, "--config", cfgFile, "--redis", srv.URL(), "--api-key", "k", "--listen", "127.0.0.1:0", "--node", fmt.Sprint("proc-", i))
		procs = append(procs, cmd)
		ws = append(ws, "ws://"+addr+"/ws")
		hs = append(hs, "http://"+addr)
	}
	runCheck(t, checker.Config{
		WSURLs: ws, HTTPURLs: hs, APIKey: "k", Namespace: "check",
		Channels: 2, Subscribers: 8, Messages: 500, Rate: 250, MaxBackoff: 200 * time.Millisecond,
		During: func(ctx context.Context, _ []*heraldclient.Client) {
			time.Sleep(500 * time.Millisecond)
			_ = procs[0].Process.Kill()
		},
	})
}

// startProcess runs the herald binary and returns it with the address it
// logged that it serves on.
func startProcess(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addrc := make(chan string, 1)
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, "addr="); i >= 0 && strings.Contains(line, "herald serving") {
				addr := strings.Fields(line[i+5:])[0]
				once.Do(func() { addrc <- addr })
			}
		}
	}()
	select {
	case addr := <-addrc:
		if _, _, err := net.SplitHostPort(addr); err != nil {
			t.Fatalf("bad address %q", addr)
		}
		return cmd, addr
	case <-time.After(15 * time.Second):
		t.Fatal("herald process did not start")
	}
	return nil, ""
}
