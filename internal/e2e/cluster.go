package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

func presenceConfig() server.Config {
	cfg := securityConfig()
	cfg.APIKey = "admin-key"
	cfg.StatsInterval = 50 * time.Millisecond
	cfg.Namespaces["room"] = &push.Namespace{Presence: push.PresenceMembers, ClientPublish: true}
	return cfg
}

func userToken(t testing.TB, user, info string) string {
	return hs(t, func(c *push.Claims) {
		c.Subject = user
		if info != "" {
			c.Info = []byte(info)
		}
	})
}

func TestPresenceJoinLeave(t *testing.T) {
	n := startTestNode(t, presenceConfig())
	alice := n.dial(query("token", userToken(t, "alice", `{"name":"Alice"}`)))
	alice.welcome()
	alice.subscribe("room:lobby")
	if j := alice.expect("join"); j.Channel != "room:lobby" || !strings.Contains(string(j.Raw), `"user":"alice"`) {
		t.Fatalf("own join %s", j)
	}
	bob := n.dial(query("token", userToken(t, "bob", "")))
	bob.welcome()
	bob.subscribe("room:lobby")
	if j := alice.expect("join"); !strings.Contains(string(j.Raw), `"user":"bob"`) {
		t.Fatalf("alice saw %s, want bob's join", j)
	}
	bob.expect("join")
	bob.send(map[string]any{"type": "presence", "id": 5, "channel": "room:lobby"})
	p := bob.expect("presence")
	if p.ID.String() != "5" || !strings.Contains(string(p.Raw), `"name":"Alice"`) || strings.Count(string(p.Raw), `"client"`) != 2 {
		t.Fatalf("presence %s", p)
	}
	r := n.request("GET", "/api/channels/room:lobby/presence", nil, nil)
	if r.Status != http.StatusOK || strings.Count(string(r.Body), `"client"`) != 2 {
		t.Fatalf("presence API: %d %s", r.Status, r.Body)
	}
	bob.conn.Close(websocket.StatusNormalClosure, "bye")
	if l := alice.expect("leave"); !strings.Contains(string(l.Raw), `"user":"bob"`) {
		t.Fatalf("alice saw %s, want bob's leave", l)
	}
	r = n.request("GET", "/api/channels/room:lobby/presence", nil, nil)
	if strings.Count(string(r.Body), `"client"`) != 1 {
		t.Fatalf("presence after leave: %s", r.Body)
	}
	alice.send(map[string]any{"type": "presence", "channel": "danmaku:x"})
	alice.expectError("bad_request")
	expectAPIError(t, n.request("GET", "/api/channels/danmaku:x/presence", nil, nil), http.StatusNotFound, "not_found")
}

func TestDisconnectAndBan(t *testing.T) {
	n := startTestNode(t, presenceConfig())
	var conns []*wsClient
	for i := 0; i < 3; i++ {
		c := n.dial(query("token", userToken(t, "mallory", "")))
		c.welcome()
		conns = append(conns, c)
	}
	other := n.dial(query("token", userToken(t, "alice", "")))
	other.welcome()
	r := n.request("POST", "/api/disconnect", map[string]any{"user": "mallory", "ban": "1h", "reason": "spam"}, nil)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), "banned_until") {
		t.Fatalf("disconnect: %d %s", r.Status, r.Body)
	}
	for _, c := range conns {
		if reason, _ := c.expectClose(4004); reason != "spam" {
			t.Fatalf("kick reason %q", reason)
		}
	}
	again := n.dial(query("token", userToken(t, "mallory", "")))
	if reason, _ := again.expectClose(websocket.StatusPolicyViolation); !strings.Contains(reason, "banned") {
		t.Fatalf("banned user's reconnect closed with %q", reason)
	}
	other.subscribe("news") // alice is untouched
	expectAPIError(t, n.request("POST", "/api/disconnect", map[string]any{"user": ""}, nil), http.StatusBadRequest, "bad_request")
	expectAPIError(t, n.request("POST", "/api/disconnect", map[string]any{"user": "x", "ban": "forever"}, nil), http.StatusBadRequest, "bad_request")
	expectAPIError(t, n.request("POST", "/api/disconnect", map[string]any{"user": "x"}, http.Header{}), http.StatusUnauthorized, "unauthorized")
}

func TestStatsChannelsAndAdmin(t *testing.T) {
	n := startTestNode(t, presenceConfig())
	for _, ch := range []string{"news", "sports", "news"} {
		c := n.dial(query("channel", ch))
		c.welcome()
		c.expect("subscribed")
	}
	waitFor(t, readTimeout, "stats to report 3 connections", func() bool {
		r := n.request("GET", "/api/stats", nil, nil)
		return r.Status == 200 && strings.Contains(string(r.Body), `"connections":3`)
	})
	r := n.request("GET", "/api/channels?prefix=new", nil, nil)
	var body struct {
		Channels []struct {
			Channel     string `json:"channel"`
			Subscribers int    `json:"subscribers"`
		} `json:"channels"`
	}
	decodeJSON(t, r.Body, &body)
	if len(body.Channels) != 1 || body.Channels[0].Channel != "news" || body.Channels[0].Subscribers != 2 {
		t.Fatalf("channels?prefix=new: %s", r.Body)
	}

	// The reserved namespace: closed to clients, open to admins for stats.
	c := n.dial("")
	c.welcome()
	c.send(map[string]any{"type": "subscribe", "channel": "herald:stats"})
	c.expectError("forbidden")
	c.send(map[string]any{"type": "publish", "channel": "herald:control", "data": map[string]string{"kind": "disconnect", "user": "alice"}})
	c.expectError("forbidden")
	c.send(map[string]any{"type": "auth", "id": 1, "key": "wrong"})
	c.expectError("unauthorized")
	c.send(map[string]any{"type": "auth", "id": 2, "key": "admin-key"})
	c.expect("ack")
	c.subscribe("herald:stats")
	m := c.expect("message")
	if m.Channel != "herald:stats" || !strings.Contains(string(m.Data), `"node":"test-node"`) {
		t.Fatalf("stats message %s", m)
	}
	expectAPIError(t, n.request("POST", "/api/publish", map[string]any{"channel": "herald:control", "data": 1}, nil), http.StatusBadRequest, "unknown_namespace")
}
