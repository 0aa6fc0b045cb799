package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker/brokertest"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// serverSubConfig is a cluster node with the namespaces of the
// server-side subscription and user channel tests: srv is private (so
// that only the server can subscribe its users there) with history, a
// snapshot and presence; inbox has user_channels.
func serverSubConfig(url, name string) server.Config {
	cfg := clusterConfig(url, name)
	cfg.Namespaces["srv"] = &push.Namespace{Private: true, HistorySize: 10, HistoryTTL: time.Minute, Snapshot: true, Presence: push.PresenceMembers}
	cfg.Namespaces["inbox"] = &push.Namespace{UserChannels: true, HistorySize: 10, HistoryTTL: time.Minute}
	return cfg
}

// quiet proves c got nothing since its last frame but presence events: a
// subscribe to a fresh channel is answered by the very next frame.
func quiet(t *testing.T, c *wsClient, probe string) {
	t.Helper()
	id := c.id()
	c.send(map[string]any{"type": "subscribe", "id": id, "channel": probe})
	if f := next(t, c, "subscribed"); f.Channel != probe {
		t.Fatalf("got %s before the probe's reply: the connection was sent something", f)
	}
}

// next reads the next frame of type typ, skipping presence events (join,
// leave: a presence namespace sends them to its subscribers as users
// come and go, in no fixed order with the rest) and pings.
func next(t *testing.T, c *wsClient, typ string) frame {
	t.Helper()
	for {
		f := c.read()
		switch f.Type {
		case typ:
			return f
		case "join", "leave", "ping":
		default:
			t.Fatalf("got frame %s, want type %q", f, typ)
		}
	}
}

// expectServerSubscribed reads the "subscribed" of a server-side
// subscription and the snapshot after it.
func expectServerSubscribed(t *testing.T, c *wsClient, channel string, snapshot any) {
	t.Helper()
	f := next(t, c, "subscribed")
	if f.Channel != channel || !f.Server || f.ID != "" {
		t.Fatalf("got %s, want subscribed to %s with \"server\": true and no id", f, channel)
	}
	m := next(t, c, "message")
	if m.Channel != channel || !m.Snapshot || !jsonEqual(t, m.Data, snapshot) {
		t.Fatalf("got %s, want the snapshot %v of %s", m, snapshot, channel)
	}
}

// TestServerSubscribe: POST /api/subscribe on one node subscribes every
// connection of the user on both nodes (a private namespace the token
// does not grant: the backend decides), with the namespace's snapshot and
// presence; other users and connections opened later are not subscribed;
// POST /api/unsubscribe ends it everywhere.
func TestServerSubscribe(t *testing.T) {
	srv := brokertest.StartRedis(t)
	a := startTestNode(t, serverSubConfig(srv.URL(), "node-a"))
	b := startTestNode(t, serverSubConfig(srv.URL(), "node-b"))
	const ch = "srv:alice-feed"
	a.publish(ch, "latest")

	aliceTok := userToken(t, "alice", "")
	alice1 := a.dial(query("token", aliceTok, "channel", "check:own"))
	alice1.welcome()
	alice1.expect("subscribed")
	alice2 := b.dial(query("token", aliceTok))
	alice2.welcome()
	bob := a.dial(query("token", userToken(t, "bob", "")))
	bob.welcome()
	// Private: alice's own subscribe is refused.
	alice2.send(map[string]any{"type": "subscribe", "id": 1, "channel": ch})
	alice2.expectError(push.CodeForbidden)

	r := b.request("POST", "/api/subscribe", map[string]string{"user": "alice", "channel": ch}, nil)
	if r.Status != http.StatusOK || !jsonEqual(t, r.Body, map[string]string{"user": "alice", "channel": ch}) {
		t.Fatalf("POST /api/subscribe: HTTP %d %s", r.Status, r.Body)
	}
	expectServerSubscribed(t, alice1, ch, "latest")
	expectServerSubscribed(t, alice2, ch, "latest")
	// Presence counts users: alice, once for her two connections.
	waitFor(t, 5*time.Second, "alice in presence", func() bool {
		var p push.PresencePage
		r := a.request("GET", "/api/channels/"+ch+"/presence", nil, nil)
		decodeJSON(t, r.Body, &p)
		return r.Status == http.StatusOK && p.Count == 1 && len(p.Members) >= 1 && p.Members[0].User == "alice"
	})

	// Again: already subscribed, nothing is sent.
	b.request("POST", "/api/subscribe", map[string]string{"user": "alice", "channel": ch}, nil)
	// Each node takes the requests in order from one control channel, so
	// once alice1 (node a) is subscribed to a channel asked for after the
	// repeat, node a has handled the repeat too: a connection opened from
	// then on is opened after both (without this wait, alice3 could be
	// open before node a got the repeat, and rightly be subscribed).
	const mark = "srv:alice-mark"
	a.publish(mark, "m")
	b.request("POST", "/api/subscribe", map[string]string{"user": "alice", "channel": mark}, nil)
	expectServerSubscribed(t, alice1, mark, "m")
	expectServerSubscribed(t, alice2, mark, "m")
	alice3 := a.dial(query("token", aliceTok)) // opened later: not subscribed
	alice3.welcome()
	a.publish(ch, 1)
	for _, c := range []*wsClient{alice1, alice2} {
		if m := next(t, c, "message"); m.Channel != ch || !jsonEqual(t, m.Data, 1) {
			t.Fatalf("got %s, want message 1 of %s", m, ch)
		}
	}
	quiet(t, bob, "check:probe-bob")
	quiet(t, alice3, "check:probe-alice3")

	r = a.request("POST", "/api/unsubscribe", map[string]string{"user": "alice", "channel": ch}, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("POST /api/unsubscribe: HTTP %d %s", r.Status, r.Body)
	}
	for _, c := range []*wsClient{alice1, alice2} {
		if f := next(t, c, "unsubscribed"); f.Channel != ch || !f.Server {
			t.Fatalf("got %s, want unsubscribed from %s with \"server\": true", f, ch)
		}
	}
	a.publish(ch, 2)
	quiet(t, alice1, "check:probe-alice1")
	quiet(t, alice2, "check:probe-alice2")
	// The server may unsubscribe what the client subscribed itself.
	a.request("POST", "/api/unsubscribe", map[string]string{"user": "alice", "channel": "check:own"}, nil)
	if f := alice1.expect("unsubscribed"); f.Channel != "check:own" || !f.Server {
		t.Fatalf("got %s, want unsubscribed from check:own", f)
	}

	for _, bad := range []struct {
		body   any
		status int
		code   string
	}{
		{map[string]string{"channel": ch}, http.StatusBadRequest, push.CodeBadRequest},
		{map[string]string{"user": "alice"}, http.StatusBadRequest, push.CodeBadRequest},
		{map[string]string{"user": "alice", "channel": "bad name"}, http.StatusBadRequest, push.CodeInvalidChannel},
		{map[string]string{"user": "alice", "channel": "nope:x"}, http.StatusBadRequest, push.CodeUnknownNS},
		{map[string]string{"user": "alice", "channel": push.StatsChannel}, http.StatusForbidden, push.CodeForbidden},
		{`{"user": 1}`, http.StatusBadRequest, push.CodeBadRequest},
	} {
		for _, path := range []string{"/api/subscribe", "/api/unsubscribe"} {
			expectAPIError(t, a.request("POST", path, bad.body, nil), bad.status, bad.code)
		}
	}
	expectAPIError(t, a.request("POST", "/api/subscribe", map[string]string{"user": "alice", "channel": ch}, http.Header{}),
		http.StatusUnauthorized, push.CodeUnauthorized)
}

// TestSubsClaim: a token's subs claim subscribes the connection at
// connect, as a server-side subscription; a channel the query asked for
// keeps the query's subscription; a bad one is an error frame.
func TestSubsClaim(t *testing.T) {
	srv := brokertest.StartRedis(t)
	n := startTestNode(t, serverSubConfig(srv.URL(), "node-a"))
	n.publish("srv:news", "front page")
	tok := hs(t, func(c *push.Claims) {
		c.Subject = "carol"
		c.Subs = []string{"srv:news", "check:mine", "nope:x"}
	})
	c := n.dial(query("token", tok, "channel", "check:mine"))
	c.welcome()
	if f := c.expect("subscribed"); f.Channel != "check:mine" || f.Server {
		t.Fatalf("got %s, want the query's subscription to check:mine", f)
	}
	expectServerSubscribed(t, c, "srv:news", "front page")
	if f := next(t, c, "error"); f.Code != push.CodeUnknownNS || f.Channel != "nope:x" {
		t.Fatalf("got %s, want unknown_namespace for nope:x", f)
	}
	// A long-poll answers its own channel only: the claim leaves it out.
	if r := n.request("GET", "/api/poll?channel=check:mine&token="+tok, nil, http.Header{}); r.Status != http.StatusOK || strings.Contains(string(r.Body), "srv:news") {
		t.Fatalf("poll with the subs token: HTTP %d %s, want check:mine alone", r.Status, r.Body)
	}
	n.publish("srv:news", "late edition")
	if m := next(t, c, "message"); m.Channel != "srv:news" || !jsonEqual(t, m.Data, "late edition") {
		t.Fatalf("got %s, want the late edition", m)
	}
	quiet(t, c, "check:probe")
}

// TestUserChannels: in a user_channels namespace, inbox:NAME is NAME's
// alone (no channel claim needed); others and anonymous connections get
// forbidden, for history too; the HTTP API publishes to it as to any
// channel.
func TestUserChannels(t *testing.T) {
	n := startTestNode(t, serverSubConfig("", "node-a"))
	alice := n.dial(query("token", userToken(t, "alice", "")))
	alice.welcome()
	alice.subscribe("inbox:alice")
	for _, ch := range []string{"inbox:bob", "inbox:alice.x", "inbox:"} {
		alice.send(map[string]any{"type": "subscribe", "id": 7, "channel": ch})
		if f := alice.expectError(push.CodeForbidden); f.Channel != ch {
			t.Fatalf("got %s, want forbidden for %s", f, ch)
		}
	}
	alice.send(map[string]any{"type": "history", "id": 8, "channel": "inbox:bob"})
	alice.expectError(push.CodeForbidden)

	anon := n.dial("")
	anon.welcome()
	anon.send(map[string]any{"type": "subscribe", "id": 1, "channel": "inbox:alice"})
	anon.expectError(push.CodeForbidden)
	expectAPIError(t, n.request("GET", "/api/poll?channel=inbox:alice", nil, nil), http.StatusForbidden, push.CodeForbidden)

	n.publish("inbox:alice", map[string]string{"from": "bob"})
	alice.expectMessage("inbox:alice", map[string]string{"from": "bob"})
	quiet(t, anon, "check:probe")
}
