package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// historyConfig is a test config with namespaces that keep history:
// "hist" (20 messages) and "ticker" (snapshot).
func historyConfig() server.Config {
	cfg := testConfig()
	cfg.Namespaces = map[string]*push.Namespace{
		"hist":   {HistorySize: 20, HistoryTTL: time.Minute},
		"ticker": {HistorySize: 5, HistoryTTL: time.Minute, Snapshot: true},
		"live":   {},
	}
	return cfg
}

func subscribeSince(c *wsClient, channel, epoch string, offset uint64) frame {
	c.t.Helper()
	c.send(map[string]any{"type": "subscribe", "channel": channel, "since": map[string]any{"epoch": epoch, "offset": offset}})
	return c.expect("subscribed")
}

func TestRecoverySinceDeliversMissedInOrder(t *testing.T) {
	n := startTestNode(t, historyConfig())
	first := n.publish("hist:a", map[string]int{"seq": 1})
	for i := 2; i <= 10; i++ {
		n.publish("hist:a", map[string]int{"seq": i})
	}
	c := n.dial("")
	c.welcome()
	sub := subscribeSince(c, "hist:a", first.Epoch, 3)
	if sub.Recovered == nil || !*sub.Recovered {
		t.Fatalf("subscribed %s, want recovered true", sub)
	}
	if sub.Offset != 10 || sub.Epoch != first.Epoch {
		t.Fatalf("subscribed at %s:%d, want %s:10", sub.Epoch, sub.Offset, first.Epoch)
	}
	for want := uint64(4); want <= 10; want++ {
		m := c.expect("message")
		if m.Offset != want {
			t.Fatalf("recovered offset %d, want %d", m.Offset, want)
		}
	}
	n.publish("hist:a", map[string]int{"seq": 11})
	if m := c.expect("message"); m.Offset != 11 {
		t.Fatalf("live offset %d after recovery, want 11", m.Offset)
	}
}

func TestRecoveryNotPossible(t *testing.T) {
	n := startTestNode(t, historyConfig())
	first := n.publish("hist:b", "x")
	for i := 0; i < 30; i++ { // past the 20-message window
		n.publish("hist:b", i)
	}
	c := n.dial("")
	c.welcome()
	if sub := subscribeSince(c, "hist:b", first.Epoch, 1); sub.Recovered == nil || *sub.Recovered {
		t.Fatalf("since outside the window: %s, want recovered false", sub)
	}
	if sub := subscribeSince(c, "hist:a", "another-epoch", 0); sub.Recovered == nil || *sub.Recovered {
		t.Fatalf("since in another epoch: %s, want recovered false", sub)
	}
	// A namespace without history recovers only when nothing was missed.
	live := n.publish("live:c", 1)
	if sub := subscribeSince(c, "live:c", live.Epoch, live.Offset); sub.Recovered == nil || !*sub.Recovered {
		t.Fatalf("nothing missed: %s, want recovered true", sub)
	}
	n.publish("live:c", 2)
	if m := c.expect("message"); m.Offset != live.Offset+1 {
		t.Fatalf("live message offset %d, want %d", m.Offset, live.Offset+1)
	}
}

// TestRecoveryWhilePublishing subscribes with since while another
// goroutine keeps publishing: the missed and the live messages must join
// with no gap and no duplicate.
func TestRecoveryWhilePublishing(t *testing.T) {
	cfg := historyConfig()
	cfg.Namespaces["hist"].HistorySize = 5000
	n := startTestNode(t, cfg)
	first := n.publish("hist:race", 0)
	const total = 1500
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i < total; i++ {
			r := n.request("POST", "/api/publish", map[string]any{"channel": "hist:race", "data": i}, nil)
			if r.Status != http.StatusOK {
				t.Errorf("publish %d: HTTP %d", i, r.Status)
				return
			}
		}
	}()
	var clients []*wsClient
	for i := 0; i < 5; i++ {
		c := n.dial("")
		c.welcome()
		if sub := subscribeSince(c, "hist:race", first.Epoch, first.Offset); sub.Recovered == nil || !*sub.Recovered {
			t.Fatalf("subscribed %s, want recovered", sub)
		}
		clients = append(clients, c)
	}
	wg.Wait()
	for i, c := range clients {
		for want := first.Offset + 1; want < first.Offset+total; want++ {
			m := c.expect("message")
			if m.Offset != want {
				t.Fatalf("client %d: offset %d, want %d", i, m.Offset, want)
			}
		}
	}
}

func TestSnapshotGivesLatestAtOnce(t *testing.T) {
	n := startTestNode(t, historyConfig())
	n.publish("ticker:AAPL", map[string]float64{"price": 190.1})
	last := n.publish("ticker:AAPL", map[string]float64{"price": 190.4})
	c := n.dial(query("channel", "ticker:AAPL"))
	c.welcome()
	sub := c.expect("subscribed")
	if sub.Offset != last.Offset {
		t.Fatalf("subscribed at %d, want %d", sub.Offset, last.Offset)
	}
	m := c.expectMessage("ticker:AAPL", map[string]float64{"price": 190.4})
	if !m.Snapshot || m.Offset != last.Offset {
		t.Fatalf("snapshot frame %s: want snapshot true at offset %d", m, last.Offset)
	}
	n.publish("ticker:AAPL", map[string]float64{"price": 190.2})
	if m := c.expect("message"); m.Snapshot || m.Offset != last.Offset+1 {
		t.Fatalf("live frame %s after snapshot", m)
	}
	// An empty snapshot channel: just subscribed, no message.
	c.subscribe("ticker:MSFT")
	n.publish("ticker:MSFT", 1)
	if m := c.expect("message"); m.Snapshot || m.Channel != "ticker:MSFT" {
		t.Fatalf("got %s, want live message on ticker:MSFT", m)
	}
}

func TestHistoryFrameAndEndpoint(t *testing.T) {
	cfg := historyConfig()
	cfg.APIKey = "k"
	n := startTestNode(t, cfg)
	var first publishResult
	for i := 1; i <= 8; i++ {
		r := n.publish("hist:h", i)
		if i == 1 {
			first = r
		}
	}
	c := n.dial("")
	c.welcome()
	c.send(map[string]any{"type": "history", "id": 7, "channel": "hist:h", "since": map[string]any{"epoch": first.Epoch, "offset": 5}, "limit": 2})
	h := c.expect("history")
	if h.ID.String() != "7" || len(h.Messages) != 2 || h.Messages[0].Offset != 6 || h.Messages[1].Offset != 7 || h.Offset != 8 {
		t.Fatalf("history frame %s", h)
	}

	r := n.request("GET", fmt.Sprintf("/api/channels/hist:h/history?since=%s:%d", first.Epoch, 6), nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("history endpoint: HTTP %d %s", r.Status, r.Body)
	}
	var body struct {
		Epoch    string `json:"epoch"`
		Offset   uint64 `json:"offset"`
		Complete bool   `json:"complete"`
		Messages []struct {
			Offset uint64          `json:"offset"`
			Data   json.RawMessage `json:"data"`
		} `json:"messages"`
	}
	decodeJSON(t, r.Body, &body)
	if !body.Complete || body.Offset != 8 || len(body.Messages) != 2 || body.Messages[0].Offset != 7 || string(body.Messages[1].Data) != "8" {
		t.Fatalf("history body %s", r.Body)
	}
	expectAPIError(t, n.request("GET", "/api/channels/hist:h/history?since=x:y", nil, nil), http.StatusBadRequest, "bad_request")
	expectAPIError(t, n.request("GET", "/api/channels/bad%20name/history", nil, nil), http.StatusBadRequest, "invalid_channel")
	expectAPIError(t, n.request("GET", "/api/channels/hist:h/history", nil, http.Header{}), http.StatusUnauthorized, "unauthorized")
}
