package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/heraldpush/herald/internal/demo"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// demoConfig is a test config with the demo namespaces.
func demoConfig() server.Config {
	cfg := testConfig()
	if cfg.Namespaces == nil {
		cfg.Namespaces = map[string]*push.Namespace{}
	}
	demo.AddNamespaces(cfg.Namespaces)
	return cfg
}

// startDemoFeeds runs the demo feeds against n at step (fast in tests)
// until the test ends.
func startDemoFeeds(t testing.TB, n *testNode, step time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&demo.Feeds{Node: n.core, Log: testLogger(t), Step: step}).Run(ctx)
	}()
	// Registered after startTestNode's cleanup, so it runs first: the
	// feeds stop before the node does.
	t.Cleanup(func() { cancel(); <-done })
}

// TestDemoFeedsPublish checks that every demo channel gets messages, and
// that the ticker and the match have a snapshot for newcomers.
func TestDemoFeedsPublish(t *testing.T) {
	n := startTestNode(t, demoConfig())
	startDemoFeeds(t, n, 20*time.Millisecond)
	for _, ch := range []string{"stocks:AAPL", "stocks:NFLX", "sports:cup-final", "danmaku:demo", "chat:lobby"} {
		c := n.dial(query("channel", ch))
		c.welcome()
		c.expect("subscribed")
		m := c.read()
		for m.Type == "join" { // chat keeps presence: our own join comes first
			m = c.read()
		}
		if m.Type != "message" || m.Channel != ch || len(m.Data) == 0 {
			t.Fatalf("%s: got %s", ch, m)
		}
	}
	c := n.dial(query("channel", "stocks:MSFT"))
	c.welcome()
	c.expect("subscribed")
	if m := c.expect("message"); !m.Snapshot {
		t.Fatalf("first stocks message %s, want the snapshot", m)
	}
}
