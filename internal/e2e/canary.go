package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker/brokertest"
	"github.com/heraldpush/herald/push"
)

// canaryInterval is the probe interval of the canary tests: short, so
// that three of them pass quickly, and long enough for a probe's round
// trip through Redis on a loaded machine.
const canaryInterval = 250 * time.Millisecond

// canaryNode is a node on the real Redis behind a pub/sub proxy, probing
// every canaryInterval, with a subscriber on a channel with history.
func canaryNode(t *testing.T) (*testNode, *pubsubProxy, *brokertest.RedisServer, *wsClient) {
	srv := brokertest.StartRedis(t)
	p := newPubSubProxy(t, srv.Addr())
	cfg := checkConfig()
	cfg.RedisURL = p.url()
	cfg.APIKey = "canary-key"
	cfg.CanaryInterval = canaryInterval
	n := startTestNode(t, cfg)
	waitFor(t, 10*time.Second, "the node ready", func() bool { return n.request("GET", "/readyz", nil, nil).Status == http.StatusOK })
	c := n.dial(query("channel", "check:canary"))
	c.welcome()
	c.expect("subscribed")
	return n, p, srv, c
}

// readiness is /readyz's status and error code ("" when ready).
func readiness(n *testNode) (int, string) {
	r := n.request("GET", "/readyz", nil, nil)
	var body apiErrorBody
	_ = json.Unmarshal(r.Body, &body)
	return r.Status, body.Error.Code
}

// publisher publishes 1, 2, 3... to a channel over HTTP until stopped,
// keeping the offsets answered 2xx: those must all be delivered.
type publisher struct {
	mu       sync.Mutex
	accepted []uint64
	refused  int
	stop     chan struct{}
	done     chan struct{}
}

func startPublisher(n *testNode, channel string) *publisher {
	p := &publisher{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: httpTimeout}
	cfg := n.Config()
	key := cfg.Keys()[0]
	go func() {
		defer close(p.done)
		tick := time.NewTicker(10 * time.Millisecond) // pacing, not synchronisation
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			body := fmt.Sprintf(`{"channel":%q,"data":%d}`, channel, i)
			req, _ := http.NewRequest("POST", n.base+"/api/publish", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := client.Do(req)
			var res publishResult
			ok := err == nil && resp.StatusCode/100 == 2
			if err == nil {
				ok = ok && json.NewDecoder(resp.Body).Decode(&res) == nil && res.Offset > 0
				resp.Body.Close()
			}
			p.mu.Lock()
			if ok {
				p.accepted = append(p.accepted, res.Offset)
			} else {
				p.refused++
			}
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.accepted)
}

// finish stops the publisher and returns the offsets answered 2xx.
func (p *publisher) finish() (accepted []uint64, refused int) {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.refused
}

// expectAll reads c until every offset of want has arrived, each once
// and in order.
func expectAll(t *testing.T, c *wsClient, channel string, want []uint64) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("no publish was accepted")
	}
	last := want[len(want)-1]
	var got uint64
	for got < last {
		m := c.expect("message")
		if m.Channel != channel {
			continue
		}
		if m.Offset != got+1 {
			t.Fatalf("offset %d after %d: a message lost or repeated", m.Offset, got)
		}
		got = m.Offset
	}
}

// redReadiness waits for /readyz to fail with pubsub_stalled after the
// fault at start, and checks it did within three intervals (plus one for
// polling on a loaded machine).
func redReadiness(t *testing.T, n *testNode, start time.Time) {
	t.Helper()
	waitFor(t, 10*canaryInterval+5*time.Second, "readiness red with pubsub_stalled", func() bool {
		status, code := readiness(n)
		return status == http.StatusServiceUnavailable && code == push.CodePubSubStalled
	})
	took := time.Since(start)
	t.Logf("/readyz red (pubsub_stalled) %v after the fault (interval %v)", took.Round(time.Millisecond), canaryInterval)
	if took > 4*canaryInterval {
		t.Errorf("red %v after the fault, want within 3 intervals (%v)", took, 3*canaryInterval)
	}
	if lag := scrapeGauge(t, n, "herald_broker_pubsub_lag_seconds"); lag < canaryInterval.Seconds() {
		t.Errorf("herald_broker_pubsub_lag_seconds = %v while stalled, want more than an interval", lag)
	}
}

// scrapeGauge reads one unlabelled value from /metrics.
func scrapeGauge(t *testing.T, n *testNode, name string) float64 {
	t.Helper()
	r := n.request("GET", "/metrics", nil, nil)
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	t.Fatalf("/metrics has no %s:\n%s", name, r.Body)
	return 0
}

// TestCanaryPubSubPaused: the node's pub/sub connection to a real Redis
// is paused (nothing passes, nothing closes; publishes and readiness
// pings go on over the other connections): /readyz goes red with
// pubsub_stalled within three canary intervals, the node resubscribes
// (its new connection is paused too, until the release), and after the
// release /readyz is green and every publish answered 2xx reaches the
// subscriber once, in order.
func TestCanaryPubSubPaused(t *testing.T) {
	n, p, _, c := canaryNode(t)
	pub := startPublisher(n, "check:canary")
	waitFor(t, 10*time.Second, "publishes before the pause", func() bool { return pub.count() >= 5 })

	subs := p.subscribers()
	p.hold(true)
	redReadiness(t, n, time.Now())
	waitFor(t, 10*time.Second, "the node resubscribing", func() bool { return p.subscribers() > subs })
	before := pub.count()
	waitFor(t, 10*time.Second, "publishes during the pause", func() bool { return pub.count() >= before+5 })

	p.hold(false)
	waitFor(t, 10*time.Second, "readiness green after the release", func() bool { s, _ := readiness(n); return s == http.StatusOK })
	after := pub.count()
	waitFor(t, 10*time.Second, "publishes after the release", func() bool { return pub.count() >= after+5 })
	accepted, refused := pub.finish()
	t.Logf("%d publishes answered 2xx, %d not", len(accepted), refused)
	expectAll(t, c, "check:canary", accepted)
}

// TestCanaryPubSubKilled: Redis kills the node's pub/sub connection
// (CLIENT KILL TYPE pubsub) while new pub/sub connections are held, so
// the node cannot simply redial: /readyz goes red with pubsub_stalled
// within three intervals; once pub/sub connections get through again it
// is green and every publish answered 2xx is delivered once, in order.
func TestCanaryPubSubKilled(t *testing.T) {
	n, p, srv, c := canaryNode(t)
	pub := startPublisher(n, "check:canary")
	waitFor(t, 10*time.Second, "publishes before the kill", func() bool { return pub.count() >= 5 })

	p.hold(true) // the kill's redial waits
	start := time.Now()
	if killed := redisCommand(t, srv.Addr(), "CLIENT", "KILL", "TYPE", "pubsub"); killed != ":1" {
		t.Fatalf("CLIENT KILL TYPE pubsub answered %q, want one connection killed", killed)
	}
	redReadiness(t, n, start)
	before := pub.count()
	waitFor(t, 10*time.Second, "publishes while pub/sub is down", func() bool { return pub.count() >= before+5 })

	p.hold(false)
	waitFor(t, 10*time.Second, "readiness green after the release", func() bool { s, _ := readiness(n); return s == http.StatusOK })
	after := pub.count()
	waitFor(t, 10*time.Second, "publishes after the release", func() bool { return pub.count() >= after+5 })
	accepted, refused := pub.finish()
	t.Logf("%d publishes answered 2xx, %d not", len(accepted), refused)
	expectAll(t, c, "check:canary", accepted)
}

// redisCommand sends one command to the Redis at addr in RESP and returns
// the first line of the answer.
func redisCommand(t *testing.T, addr string, args ...string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return strings.TrimSpace(line)
}
