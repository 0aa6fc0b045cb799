package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
	"github.com/heraldpush/herald/push"
)

// TestBrowserAdminPage: the admin page, given the key, shows the node's
// live figures from herald:stats and the top channels, drops a node that
// stops reporting, refuses a wrong key, and its publish form delivers to a
// WebSocket subscriber.
func TestBrowserAdminPage(t *testing.T) {
	requireE2E(t, true)
	const key, channel = "admin-key", "news"
	cfg := testConfig()
	cfg.APIKey = key
	cfg.StatsInterval = 100 * time.Millisecond
	n := startTestNode(t, cfg)

	sub := n.dial(query("channel", channel))
	sub.welcome()
	sub.expect("subscribed")

	// ghost reports as another node every stats interval until stopped.
	var (
		stopGhost = make(chan struct{})
		ghostDone sync.WaitGroup
		stopOnce  sync.Once
	)
	ghostOff := func() {
		stopOnce.Do(func() { close(stopGhost) })
		ghostDone.Wait()
	}
	t.Cleanup(ghostOff)
	ghostOn := func() {
		ghostDone.Add(1)
		go func() {
			defer ghostDone.Done()
			tick := time.NewTicker(cfg.StatsInterval)
			defer tick.Stop()
			for {
				r := push.NodeReport{Snapshot: push.Snapshot{Node: "ghost", Connections: 7, Subscriptions: 3, Channels: 2}, At: time.Now()}
				data, _ := json.Marshal(r)
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := n.core.Broker().Publish(ctx, push.StatsChannel, data, broker.Retention{})
				cancel()
				if err != nil {
					t.Errorf("ghost report: %v", err)
					return
				}
				select {
				case <-stopGhost:
					return
				case <-tick.C:
				}
			}
		}()
	}

	runScript(t, "admin.mjs", map[string]func(){
		"connect": func() {
			c := n.dial("")
			c.welcome()
		},
		"ghost-on":  ghostOn,
		"ghost-off": ghostOff,
		"delivered": func() {
			for {
				f := sub.read()
				if f.Type == "ping" {
					continue
				}
				if f.Type != "message" || f.Channel != channel || !jsonEqual(t, f.Data, map[string]any{"from": "the admin page"}) {
					t.Fatalf("subscriber got %s, want the admin page's publish on %q", f, channel)
				}
				t.Logf("subscriber got %s", f)
				return
			}
		},
	}, n.base, key, channel)
}

// TestBrowserEventSourceResumesAcrossRestart (issue 4): Chromium's native
// EventSource on /sse resumes without loss when the node it reads from
// restarts on the same port: with Redis (append-only) the history and the
// epoch outlive the node, and Last-Event-ID picks up where the stream
// stopped. Messages are published while the node is down (through a second
// node), right after it is back, and once the browser is back.
func TestBrowserEventSourceResumesAcrossRestart(t *testing.T) {
	requireE2E(t, true)
	const channel = "check:eventsource"
	srv := brokertest.StartRedis(t, brokertest.AppendOnly(true))
	a := startRestartableNode(t, clusterConfig(srv.URL(), "node-a"))
	b := startTestNode(t, clusterConfig(srv.URL(), "node-b"))
	// through returns a's current process with the harness's helpers.
	through := func() *testNode {
		return wrapNode(t, a.n)
	}
	publish := func(via *testNode, from, to int) {
		for i := from; i <= to; i++ {
			via.publish(channel, i)
		}
	}
	runScript(t, "eventsource.mjs", map[string]func(){
		"first": func() { publish(through(), 1, 10) },
		"stop":  a.stop,
		"down":  func() { publish(b, 11, 20) },
		"start": func() {
			a.start()
			publish(through(), 21, 30)
		},
		"after": func() { publish(through(), 31, 40) },
	}, a.base(), channel)

	// Redis has them all, once, in order.
	r := b.request("GET", "/api/channels/"+channel+"/history", nil, nil)
	var h struct {
		Messages []struct {
			Data json.RawMessage `json:"data"`
		} `json:"messages"`
	}
	decodeJSON(t, r.Body, &h)
	if len(h.Messages) != 40 || string(h.Messages[0].Data) != "1" || string(h.Messages[39].Data) != fmt.Sprint(40) {
		t.Fatalf("history after the test: HTTP %d, %d messages: %.300s", r.Status, len(h.Messages), r.Body)
	}
}
