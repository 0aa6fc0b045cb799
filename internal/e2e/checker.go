package e2e

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	heraldclient "github.com/heraldpush/herald/clients/go"
	"github.com/heraldpush/herald/internal/checker"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// checkConfig has a "check" namespace whose history covers a whole check.
func checkConfig() server.Config {
	cfg := testConfig()
	cfg.Namespaces = map[string]*push.Namespace{"check": {HistorySize: 10000, HistoryTTL: 10 * time.Minute}}
	return cfg
}

func runCheck(t *testing.T, cfg checker.Config) checker.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := checker.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("checker: %v", err)
	}
	t.Logf("checker: %s", r)
	if !r.OK() || r.Resets != 0 || r.Expected == 0 {
		t.Fatalf("lost, duplicated or reordered messages: %s", r)
	}
	return r
}

// TestCheckerRandomDrops drops subscribers' connections with TCP resets at
// random while messages flow; every subscriber must still end with every
// message once, in order.
func TestCheckerRandomDrops(t *testing.T) {
	n := startTestNode(t, checkConfig())
	r := runCheck(t, checker.Config{
		WSURLs: []string{n.wsURL("/ws", "")}, HTTPURLs: []string{n.base},
		Namespace: "check", Channels: 3, Subscribers: 20, Messages: 300, Rate: 1500,
		MaxBackoff: 100 * time.Millisecond,
		During: func(ctx context.Context, subs []*heraldclient.Client) {
			for i := 0; i < 40 && ctx.Err() == nil; i++ {
				subs[rand.IntN(len(subs))].DropConnection()
				time.Sleep(10 * time.Millisecond) // spreads the faults over the run
			}
		},
	})
	if r.Reconnects == 0 {
		t.Fatalf("no subscriber reconnected: the faults did not happen (%s)", r)
	}
}

// TestCheckerOfflineFiveSeconds keeps a subscriber away for 5 s while
// messages are published; it recovers all of them on return.
func TestCheckerOfflineFiveSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("takes over 5 s; runs without -short (as CI does)")
	}
	n := startTestNode(t, checkConfig())
	// The subscribers connect only through this proxy: the outage cuts
	// their connections and refuses new ones for 5 s, the node stays up.
	proxy := newCutProxy(t, n.addr)
	runCheck(t, checker.Config{
		WSURLs: []string{"ws://" + proxy.addr() + "/ws"}, HTTPURLs: []string{n.base},
		Namespace: "check", Channels: 2, Subscribers: 3, Messages: 400, Rate: 60,
		MaxBackoff: 200 * time.Millisecond,
		During: func(ctx context.Context, subs []*heraldclient.Client) {
			time.Sleep(500 * time.Millisecond) // let some messages through first
			proxy.hold(true)
			proxy.cut()
			time.Sleep(5 * time.Second) // the outage being tested
			proxy.hold(false)
		},
	})
}
