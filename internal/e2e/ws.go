package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// e2eConfig is testConfig with the namespaces most tests use: chat lets
// clients publish (small messages), stocks does not.
func e2eConfig() server.Config {
	cfg := testConfig()
	cfg.Namespaces = map[string]*push.Namespace{
		"chat":   {ClientPublish: true, MaxMessageBytes: 256},
		"stocks": {HistorySize: 10},
	}
	return cfg
}

func TestWelcome(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	a, b := n.dial(""), n.dial("")
	wa, wb := a.welcome(), b.welcome()
	clientID := regexp.MustCompile(`^test-node-[0-9]+$`)
	for _, w := range []frame{wa, wb} {
		if w.Node != "test-node" || !clientID.MatchString(w.Client) {
			t.Errorf("welcome %s: want node %q and client test-node-<n>", w, "test-node")
		}
		if w.HeartbeatMS != push.DefaultHeartbeat.Milliseconds() {
			t.Errorf("welcome heartbeat_ms %d, want %d", w.HeartbeatMS, push.DefaultHeartbeat.Milliseconds())
		}
		if w.Batch {
			t.Errorf("welcome says batch for a client that did not ask: %s", w)
		}
	}
	if wa.Client == wb.Client {
		t.Errorf("two connections share client id %q", wa.Client)
	}
}

func TestSubscribeQuery(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	// Two messages before anyone subscribes set the channel's position.
	n.publish("news", "old-1")
	before := n.publish("news", "old-2")

	c := n.dial(query("channel", "news", "channel", "stocks:AAPL"))
	c.welcome()
	s1 := c.expect("subscribed")
	s2 := c.expect("subscribed")
	if s1.Channel != "news" || s2.Channel != "stocks:AAPL" {
		t.Fatalf("subscribed to %q then %q, want news then stocks:AAPL", s1.Channel, s2.Channel)
	}
	if s1.ID != "" || s1.Recovered != nil {
		t.Errorf("query subscribe reply has an id or recovered: %s", s1)
	}
	if s1.Epoch != before.Epoch || s1.Offset != before.Offset {
		t.Errorf("subscribed at %s:%d, want the channel's position %s:%d", s1.Epoch, s1.Offset, before.Epoch, before.Offset)
	}
	if s2.Epoch == "" || s2.Offset != 0 {
		t.Errorf("new channel subscribed at %q:%d, want an epoch and offset 0", s2.Epoch, s2.Offset)
	}

	// Live messages only: nothing published before the subscription.
	p := n.publish("news", map[string]any{"headline": "live"})
	m := c.expectMessage("news", map[string]any{"headline": "live"})
	if m.Offset != before.Offset+1 || m.Offset != p.Offset || m.Epoch != p.Epoch {
		t.Errorf("message at %s:%d, want %s:%d", m.Epoch, m.Offset, p.Epoch, p.Offset)
	}
	if m.TS == 0 {
		t.Errorf("message without ts: %s", m)
	}
	p = n.publish("stocks:AAPL", 187.5)
	m = c.expectMessage("stocks:AAPL", 187.5)
	if m.Offset != 1 || m.Epoch != p.Epoch || s2.Epoch != p.Epoch {
		t.Errorf("stocks message at %s:%d (subscribed in epoch %s), want %s:1", m.Epoch, m.Offset, s2.Epoch, p.Epoch)
	}
}

func TestSubscribeFrame(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	c := n.dial("")
	c.welcome()

	c.sendText(`{"type":"subscribe","id":41,"channel":"scores"}`)
	s := c.expect("subscribed")
	if s.ID != "41" || s.Channel != "scores" || s.Epoch == "" || s.Offset != 0 {
		t.Fatalf("subscribed %s, want id 41, channel scores, an epoch and offset 0", s)
	}
	p := n.publish("scores", map[string]int{"home": 1, "away": 0})
	m := c.expectMessage("scores", map[string]int{"home": 1, "away": 0})
	if m.Epoch != s.Epoch || m.Offset != p.Offset || m.Offset != 1 {
		t.Errorf("message at %s:%d, want %s:1", m.Epoch, m.Offset, s.Epoch)
	}

	// Subscribing twice is an error that names the command and channel,
	// and the first subscription goes on.
	c.sendText(`{"type":"subscribe","id":42,"channel":"scores"}`)
	e := c.expectError(push.CodeAlreadySub)
	if e.ID != "42" || e.Channel != "scores" {
		t.Errorf("error %s, want id 42 and channel scores", e)
	}
	n.publish("scores", "still here")
	c.expectMessage("scores", "still here")
}

func TestPublishHTTP(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	c := n.dial(query("channel", "a", "channel", "stocks:B"))
	c.welcome()
	c.expect("subscribed")
	c.expect("subscribed")

	t.Run("single", func(t *testing.T) {
		n, c := n.in(t), c.in(t)
		r := n.request("POST", "/api/publish", `{"channel":"a","data":{"n":1}}`, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("HTTP %d: %s", r.Status, r.Body)
		}
		var res publishResult
		decodeJSON(t, r.Body, &res)
		if res.Channel != "a" || res.Epoch == "" || res.Offset != 1 {
			t.Fatalf("answer %s, want channel a, an epoch, offset 1", r.Body)
		}
		m := c.expectMessage("a", map[string]int{"n": 1})
		if m.Offset != res.Offset || m.Epoch != res.Epoch {
			t.Errorf("message at %s:%d, answer said %s:%d", m.Epoch, m.Offset, res.Epoch, res.Offset)
		}
	})

	t.Run("channels", func(t *testing.T) {
		n, c := n.in(t), c.in(t)
		r := n.request("POST", "/api/publish", `{"channels":["a","stocks:B"],"data":"both"}`, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("HTTP %d: %s", r.Status, r.Body)
		}
		var res struct{ Results []publishResult }
		decodeJSON(t, r.Body, &res)
		if len(res.Results) != 2 || res.Results[0].Channel != "a" || res.Results[1].Channel != "stocks:B" ||
			res.Results[0].Offset != 2 || res.Results[1].Offset != 1 {
			t.Fatalf("answer %s, want results for a (offset 2) then stocks:B (offset 1)", r.Body)
		}
		// Channels are delivered independently: either order.
		got := map[string]frame{}
		for range 2 {
			m := c.expect("message")
			got[m.Channel] = m
		}
		for _, want := range res.Results {
			m, ok := got[want.Channel]
			if !ok || m.Offset != want.Offset || m.Epoch != want.Epoch || !jsonEqual(t, m.Data, "both") {
				t.Errorf("on %s got %s, want offset %d data \"both\"", want.Channel, m, want.Offset)
			}
		}
	})

	t.Run("batch", func(t *testing.T) {
		n, c := n.in(t), c.in(t)
		res := n.batch([]batchItem{
			{Channel: "a", Data: "first"},
			{Channels: []string{"a", "stocks:B"}, Data: "second"},
			{Channel: "a", Data: "third"},
		})
		want := []publishResult{{Channel: "a", Offset: 3}, {Channel: "a", Offset: 4}, {Channel: "stocks:B", Offset: 2}, {Channel: "a", Offset: 5}}
		if len(res) != len(want) {
			t.Fatalf("batch answered %d results, want %d: %+v", len(res), len(want), res)
		}
		for i := range want {
			if res[i].Channel != want[i].Channel || res[i].Offset != want[i].Offset || res[i].Epoch == "" {
				t.Errorf("result %d = %+v, want %s offset %d", i, res[i], want[i].Channel, want[i].Offset)
			}
		}
		// Channel a's messages arrive in batch order; stocks:B's one
		// anywhere among them.
		var onA []string
		var onB []frame
		for range 4 {
			m := c.expect("message")
			switch m.Channel {
			case "a":
				var s string
				decodeJSON(t, m.Data, &s)
				onA = append(onA, fmt.Sprintf("%s@%d", s, m.Offset))
			case "stocks:B":
				onB = append(onB, m)
			}
		}
		if fmt.Sprint(onA) != "[first@3 second@4 third@5]" {
			t.Errorf("channel a got %v, want [first@3 second@4 third@5]", onA)
		}
		if len(onB) != 1 || onB[0].Offset != 2 || !jsonEqual(t, onB[0].Data, "second") {
			t.Errorf("channel stocks:B got %v, want one message \"second\" at offset 2", onB)
		}
	})
}

func TestClientPublish(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	sub := n.dial(query("channel", "chat:lobby"))
	sub.welcome()
	sub.expect("subscribed")
	pub := n.dial("")
	pub.welcome()

	pub.sendText(`{"type":"publish","id":9,"channel":"chat:lobby","data":{"text":"hi"}}`)
	ack := pub.expect("ack")
	if ack.ID != "9" || ack.Channel != "chat:lobby" || ack.Epoch == "" || ack.Offset != 1 {
		t.Fatalf("ack %s, want id 9, channel chat:lobby, an epoch and offset 1", ack)
	}
	m := sub.expectMessage("chat:lobby", map[string]string{"text": "hi"})
	if m.Offset != ack.Offset || m.Epoch != ack.Epoch {
		t.Errorf("message at %s:%d, ack said %s:%d", m.Epoch, m.Offset, ack.Epoch, ack.Offset)
	}

	// Namespaces without client_publish refuse, naming the command.
	for i, ch := range []string{"stocks:AAPL", "plain"} {
		id := 10 + i
		pub.send(map[string]any{"type": "publish", "id": id, "channel": ch, "data": 1})
		e := pub.expectError(push.CodeForbidden)
		if e.ID.String() != fmt.Sprint(id) || e.Channel != ch {
			t.Errorf("error %s, want id %d and channel %q", e, id, ch)
		}
	}
	// The publisher is unharmed.
	pub.sendText(`{"type":"publish","id":12,"channel":"chat:lobby","data":"again"}`)
	if ack := pub.expect("ack"); ack.ID != "12" || ack.Offset != 2 {
		t.Errorf("ack %s, want id 12 and offset 2", ack)
	}
	sub.expectMessage("chat:lobby", "again")
}

func TestClientPublishRateLimit(t *testing.T) {
	cfg := e2eConfig()
	cfg.Namespaces["chat"].PublishRate = push.Rate{N: 2, Per: 1 << 62} // 2, then none for ages
	n := startTestNode(t, cfg)
	c := n.dial("")
	c.welcome()
	for i := 1; i <= 2; i++ {
		c.send(map[string]any{"type": "publish", "id": i, "channel": "chat:x", "data": i})
		c.expect("ack")
	}
	c.send(map[string]any{"type": "publish", "id": 3, "channel": "chat:x", "data": 3})
	if e := c.expectError(push.CodeRateLimited); e.ID != "3" {
		t.Errorf("error %s, want id 3", e)
	}
	// Other commands are not limited.
	c.subscribe("chat:x")
}

func TestUnsubscribe(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	c := n.dial("")
	c.welcome()
	c.subscribe("feed")
	n.publish("feed", 1)
	c.expectMessage("feed", 1)

	c.sendText(`{"type":"unsubscribe","id":5,"channel":"feed"}`)
	u := c.expect("unsubscribed")
	if u.ID != "5" || u.Channel != "feed" || u.Reason != "" {
		t.Fatalf("unsubscribed %s, want id 5, channel feed and no reason", u)
	}

	// Published after the reply: must never reach this client. A second
	// subscription starts at the channel's position after it, so the next
	// frames are exactly the reply and the message published after that;
	// "gone" anywhere in between would be a leak.
	gone := n.publish("feed", "gone")
	s := c.subscribe("feed")
	if s.Offset != gone.Offset {
		t.Fatalf("resubscribed at offset %d, want %d", s.Offset, gone.Offset)
	}
	n.publish("feed", "back")
	c.expectMessage("feed", "back")

	// Unsubscribing from what one is not subscribed to is an error, and
	// the connection goes on.
	c.sendText(`{"type":"unsubscribe","id":6,"channel":"other"}`)
	if e := c.expectError(push.CodeNotSubscribed); e.ID != "6" || e.Channel != "other" {
		t.Errorf("error %s, want id 6 and channel other", e)
	}
	c.sendText(`{"type":"unsubscribe","id":7,"channel":"feed"}`)
	c.expect("unsubscribed")
	c.sendText(`{"type":"unsubscribe","id":8,"channel":"feed"}`)
	c.expectError(push.CodeNotSubscribed)
	c.subscribe("other")
}

func TestOrdering(t *testing.T) {
	const total, perBatch = 1000, 100
	n := startTestNode(t, e2eConfig())
	c := n.dial(query("channel", "ticks"))
	c.welcome()
	sub := c.expect("subscribed")

	// Ten batches of a hundred, then the client reads: the send queue and
	// socket buffers hold it all (about 100 KB).
	for b := 0; b < total/perBatch; b++ {
		items := make([]batchItem, perBatch)
		for i := range items {
			items[i] = batchItem{Channel: "ticks", Data: b*perBatch + i}
		}
		n.batch(items)
	}
	last := sub.Offset
	for i := range total {
		m := c.expect("message")
		var seq int
		decodeJSON(t, m.Data, &seq)
		if seq != i {
			t.Fatalf("message %d carries %d: out of order (%s)", i, seq, m)
		}
		if m.Offset != last+1 {
			t.Fatalf("message %d at offset %d after %d: offsets must increase by one", i, m.Offset, last)
		}
		if m.Epoch != sub.Epoch {
			t.Fatalf("message %d in epoch %q, subscribed in %q", i, m.Epoch, sub.Epoch)
		}
		last = m.Offset
	}
}

func TestTwoChannelsOneConnection(t *testing.T) {
	const each = 50
	n := startTestNode(t, e2eConfig())
	c := n.dial(query("channel", "left"))
	c.welcome()
	c.expect("subscribed")
	c.subscribe("stocks:right")

	items := make([]batchItem, 0, 2*each)
	for i := range each {
		items = append(items, batchItem{Channel: "left", Data: i}, batchItem{Channel: "stocks:right", Data: i})
	}
	n.batch(items)

	next := map[string]int{"left": 0, "stocks:right": 0}
	for range 2 * each {
		m := c.expect("message")
		want, ok := next[m.Channel]
		if !ok {
			t.Fatalf("message on unexpected channel: %s", m)
		}
		var seq int
		decodeJSON(t, m.Data, &seq)
		if seq != want || m.Offset != uint64(want+1) {
			t.Fatalf("on %s got %d at offset %d, want %d at offset %d", m.Channel, seq, m.Offset, want, want+1)
		}
		next[m.Channel]++
	}

	// Leaving one leaves the other alone.
	c.send(map[string]any{"type": "unsubscribe", "channel": "left"})
	c.expect("unsubscribed")
	n.publish("left", "unseen")
	n.publish("stocks:right", "seen")
	c.expectMessage("stocks:right", "seen")
}

func TestFanOut100(t *testing.T) {
	const subscribers, messages = 100, 20
	n := startTestNode(t, e2eConfig())
	clients := make([]*wsClient, subscribers)
	for i := range clients {
		c := n.dial(query("channel", "stocks:FAN"))
		c.welcome()
		c.expect("subscribed")
		clients[i] = c
	}
	items := make([]batchItem, messages)
	for i := range items {
		items[i] = batchItem{Channel: "stocks:FAN", Data: i}
	}
	res := n.batch(items)
	for ci, c := range clients {
		for i := range messages {
			m := c.expect("message")
			var seq int
			decodeJSON(t, m.Data, &seq)
			if seq != i || m.Offset != res[i].Offset || m.Epoch != res[i].Epoch {
				t.Fatalf("subscriber %d message %d: got %s, want %d at %s:%d", ci, i, m, i, res[i].Epoch, res[i].Offset)
			}
		}
	}
	if sessions, channels, subs := n.core.Counts(); sessions != subscribers || channels != 1 || subs != subscribers {
		t.Errorf("hub counts %d sessions, %d channels, %d subscriptions; want %d, 1, %d", sessions, channels, subs, subscribers, subscribers)
	}

	// Clients that leave are forgotten, and so is the channel.
	for _, c := range clients {
		if err := c.conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	waitFor(t, 5*time.Second, "the hub to forget every session", func() bool {
		sessions, channels, subs := n.core.Counts()
		return sessions == 0 && channels == 0 && subs == 0
	})
}

// TestShutdown: a node shutting down closes its clients with 1001 (go
// away: reconnect, elsewhere if need be) and stops accepting.
func TestShutdown(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	c := n.dial(query("channel", "news"))
	c.welcome()
	c.expect("subscribed")

	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	c.expectClose(websocket.StatusGoingAway)
	if _, _, err := n.tryDial(dialOptions{}); err == nil {
		t.Errorf("a new client could connect after shutdown")
	}
}
