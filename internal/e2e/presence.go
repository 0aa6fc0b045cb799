package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/heraldpush/herald/broker/brokertest"
	"github.com/heraldpush/herald/push"
)

type presenceBody struct {
	Channel    string        `json:"channel"`
	Count      int           `json:"count"`
	Members    []push.Member `json:"members"`
	NextCursor string        `json:"next_cursor"`
}

func (n *testNode) presence(t testing.TB, channel, q string) presenceBody {
	t.Helper()
	r := n.request("GET", "/api/channels/"+channel+"/presence"+q, nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("presence %s%s: %d %s", channel, q, r.Status, r.Body)
	}
	var b presenceBody
	decodeJSON(t, r.Body, &b)
	return b
}

// TestPresenceCountsUsersOnce: on three nodes, a user with tabs on two of
// them is one member; its second tab makes no join and its first tab's
// leave no leave; the members page with limit and cursor, each once.
func TestPresenceCountsUsersOnce(t *testing.T) {
	srv := brokertest.StartRedis(t)
	var nodes []*testNode
	for i := range 3 {
		cfg := clusterConfig(srv.URL(), fmt.Sprintf("node-%c", 'a'+i))
		// Tabs the test does not read answer no pings: they must not be
		// closed for it (their leave is what is checked).
		cfg.HeartbeatTimeout = 5 * time.Minute
		nodes = append(nodes, startTestNode(t, cfg))
	}
	watcher := nodes[2].dial(query("token", userToken(t, "w", "")))
	watcher.welcome()
	watcher.subscribe("room:big")
	watcher.expect("join") // its own
	tab1 := nodes[0].dial(query("token", userToken(t, "alice", `{"name":"Alice"}`)))
	tab1.welcome()
	tab1.subscribe("room:big")
	if j := watcher.expect("join"); !strings.Contains(string(j.Raw), `"user":"alice"`) {
		t.Fatalf("watcher saw %s", j)
	}
	tab2 := nodes[1].dial(query("token", userToken(t, "alice", `{"name":"Alice"}`)))
	tab2.welcome()
	tab2.subscribe("room:big")
	// The next joins the watcher sees are the five users', not alice's tab.
	for i := range 5 {
		c := nodes[i%3].dial(query("token", userToken(t, fmt.Sprintf("u%d", i), "")))
		c.welcome()
		c.subscribe("room:big")
		if j := watcher.expect("join"); !strings.Contains(string(j.Raw), fmt.Sprintf(`"user":"u%d"`, i)) {
			t.Fatalf("join %d: %s (a second tab must not join)", i, j)
		}
	}
	if p := nodes[0].presence(t, "room:big", ""); p.Count != 7 || len(p.Members) != 7 {
		t.Fatalf("presence %+v, want 7 users (alice once)", p)
	}
	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		q := "?limit=3"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		p := nodes[pages%3].presence(t, "room:big", q)
		if p.Count != 7 || len(p.Members) > 3 {
			t.Fatalf("page %+v", p)
		}
		for _, m := range p.Members {
			seen = append(seen, m.User)
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if fmt.Sprint(seen) != "[alice u0 u1 u2 u3 u4 w]" {
		t.Fatalf("pages walked %v", seen)
	}
	// Closing one tab is no leave; closing the last is.
	tab1.conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, readTimeout, "alice's first tab gone from node a", func() bool {
		_, _, subs := nodes[0].core.Counts()
		return subs == 2 // u0 and u3
	})
	tab2.conn.Close(websocket.StatusNormalClosure, "")
	if l := watcher.expect("leave"); !strings.Contains(string(l.Raw), `"user":"alice"`) {
		t.Fatalf("watcher saw %s", l)
	}
	if p := nodes[2].presence(t, "room:big", ""); p.Count != 6 {
		t.Fatalf("after alice left: %+v", p)
	}

	expectAPIError(t, nodes[0].request("GET", "/api/channels/room:big/presence?limit=0", nil, nil), http.StatusBadRequest, "bad_request")
	expectAPIError(t, nodes[0].request("GET", "/api/channels/room:big/presence?limit=1001", nil, nil), http.StatusBadRequest, "bad_request")
	expectAPIError(t, nodes[0].request("GET", "/api/channels/room:big/presence?cursor=%25%25", nil, nil), http.StatusBadRequest, "bad_request")
	watcher.send(map[string]any{"type": "presence", "id": 9, "channel": "room:big", "limit": 2})
	if f := watcher.expect("presence"); !strings.Contains(string(f.Raw), `"count":6`) || !strings.Contains(string(f.Raw), `"next_cursor"`) || strings.Count(string(f.Raw), `"client"`) != 2 {
		t.Fatalf("presence frame %s", f)
	}
}

// TestPresenceCountsOnly: a presence: counts namespace answers the number
// of distinct users and no member list, and tells nobody of arrivals.
func TestPresenceCountsOnly(t *testing.T) {
	srv := brokertest.StartRedis(t)
	var nodes []*testNode
	for i := range 2 {
		cfg := clusterConfig(srv.URL(), fmt.Sprintf("node-%d", i))
		cfg.HeartbeatTimeout = 5 * time.Minute
		cfg.Namespaces["live"] = &push.Namespace{Presence: push.PresenceCounts}
		nodes = append(nodes, startTestNode(t, cfg))
	}
	first := nodes[0].dial(query("channel", "live:show"))
	first.welcome()
	first.expect("subscribed")
	for i := range 4 {
		c := nodes[i%2].dial(query("token", userToken(t, "viewer", ""), "channel", "live:show"))
		c.welcome()
		c.expect("subscribed")
	}
	anon := nodes[1].dial(query("channel", "live:show"))
	anon.welcome()
	anon.expect("subscribed")
	// 1 viewer with 4 connections, 2 anonymous connections.
	waitFor(t, readTimeout, "3 distinct members", func() bool {
		p := nodes[1].presence(t, "live:show", "")
		return p.Count == 3 && p.Members == nil
	})
	nodes[0].publish("live:show", "marker")
	if m := first.expect("message"); string(m.Data) != `"marker"` {
		t.Fatalf("first frame after the joins: %s (counts namespaces send no joins)", m)
	}
	first.send(map[string]any{"type": "presence", "id": 1, "channel": "live:show"})
	if f := first.expect("presence"); !strings.Contains(string(f.Raw), `"count":3`) || strings.Contains(string(f.Raw), "members") {
		t.Fatalf("presence frame %s", f)
	}
}
