package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/internal/webhook"
	"github.com/heraldpush/herald/push"
)

// receiver is a real HTTP webhook receiver that can go down and come back
// on the same address. It keeps the events it got, deduplicated by id, in
// arrival order, and checks each batch's signature.
type receiver struct {
	t      testing.TB
	secret string

	mu      sync.Mutex
	addr    string
	srv     *http.Server
	events  []broker.EventJSON
	ids     map[string]bool
	dups    int
	badSigs int
	batches int
}

func startReceiver(t testing.TB, secret string) *receiver {
	r := &receiver{t: t, secret: secret, addr: "127.0.0.1:0", ids: map[string]bool{}}
	r.up()
	t.Cleanup(r.down)
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) up() {
	r.mu.Lock()
	defer r.mu.Unlock()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("receiver listen %s: %v", r.addr, err)
	}
	r.addr = ln.Addr().String()
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln)
}

// down closes the listener and every connection: senders get refused.
func (r *receiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches++
	if req.Header.Get(webhook.SignatureHeader) != webhook.Sign(r.secret, body) {
		r.badSigs++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var batch []broker.EventJSON
	if err := json.Unmarshal(body, &batch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, e := range batch {
		if r.ids[e.ID] {
			r.dups++
			continue
		}
		r.ids[e.ID] = true
		r.events = append(r.events, e)
	}
}

// byUser returns each user's events as "type" or "type:channel".
func (r *receiver) byUser() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	for _, e := range r.events {
		s := e.Type
		if e.Channel != "" {
			s += ":" + e.Channel
		}
		out[e.User] = append(out[e.User], s)
	}
	return out
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func webhookConfig(url, name, hook string) server.Config {
	cfg := clusterConfig(url, name)
	// Webhooks are told of joins in presence: counts namespaces too.
	cfg.Namespaces["room"] = &push.Namespace{Presence: push.PresenceCounts}
	// The test's clients read nothing during the outage, so they answer
	// no pings: they must not be closed for it.
	cfg.HeartbeatTimeout = 5 * time.Minute
	cfg.OfflineDelay = 10 * time.Second // the default, spelled out: bob's reload must fit in it
	cfg.Webhooks = []webhook.Hook{{URL: hook, Secret: "hook-secret", Events: []string{"online", "offline", "join", "leave"}}}
	return cfg
}

// metric returns the value of the first sample of name on n's /metrics.
func (n *testNode) metric(name string) (float64, bool) {
	r := n.request("GET", "/metrics", nil, nil)
	for _, line := range strings.Split(string(r.Body), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}

// TestWebhooksSurviveReceiverOutage: three nodes on one Redis send the
// presence events of users spread over them to one receiver, which is
// down for 30 s in the middle while users leave, reload, go offline and
// one node restarts. Every event arrives once (after dedupe by id), in
// order per user, signed; one online/offline per transition, not one per
// node or per tab.
func TestWebhooksSurviveReceiverOutage(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rcv := startReceiver(t, "hook-secret")
	a := startTestNode(t, webhookConfig(srv.URL(), "node-a", rcv.url()))
	b := startTestNode(t, webhookConfig(srv.URL(), "node-b", rcv.url()))
	cfgC := webhookConfig(srv.URL(), "node-c", rcv.url())
	cn, err := constructor()(context.Background(), cfgC, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c := wrapNode(t, cn)

	// Up: alice with a tab on a and one on b, bob on b.
	alice1 := a.dial(query("token", userToken(t, "alice", "")))
	alice1.welcome()
	alice1.subscribe("room:w")
	alice2 := b.dial(query("token", userToken(t, "alice", "")))
	alice2.welcome()
	alice2.subscribe("room:w")
	bob := b.dial(query("token", userToken(t, "bob", "")))
	bob.welcome()
	bob.subscribe("room:w")
	waitFor(t, 20*time.Second, "the first 4 events delivered", func() bool {
		v, ok := a.metric("herald_webhook_events_queued")
		return rcv.count() == 4 && ok && v == 0
	})

	// Down for 30 s.
	rcv.down()
	downAt := time.Now()
	alice1.conn.Close(websocket.StatusNormalClosure, "tab closed") // alice still has a tab
	alice2.send(map[string]any{"type": "unsubscribe", "id": 1, "channel": "room:w"})
	alice2.expect("unsubscribed")
	alice2.conn.Close(websocket.StatusNormalClosure, "last tab closed")
	// bob reloads: a leave and a join in the room, no offline/online.
	bob.conn.Close(websocket.StatusNormalClosure, "reload")
	waitFor(t, readTimeout, "room:w empty", func() bool {
		r := a.request("GET", "/api/channels/room:w/presence", nil, nil)
		return strings.Contains(string(r.Body), `"count":0`)
	})
	bob = a.dial(query("token", userToken(t, "bob", "")))
	bob.welcome()
	bob.subscribe("room:w")
	// carol comes in on node c, which then restarts.
	carol := c.dial(query("token", userToken(t, "carol", "")))
	carol.welcome()
	carol.subscribe("room:w")
	dave := b.dial(query("token", userToken(t, "dave", "")))
	dave.welcome()
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	if err := cn.Shutdown(ctx); err != nil {
		t.Errorf("node c shutdown: %v", err)
	}
	cancel()
	<-c.served
	carol.expectClose(websocket.StatusGoingAway)
	c = startTestNode(t, cfgC)

	// online/join alice, bob; then leave alice, offline alice, leave bob,
	// join bob, online carol, join carol, online dave, leave carol,
	// offline carol: 13 queued in all, 4 of them delivered.
	waitFor(t, 25*time.Second, "9 events queued while the receiver is down", func() bool {
		v, ok := a.metric("herald_webhook_events_queued")
		return ok && v == 9
	})
	waitFor(t, 25*time.Second, "failed attempts while the receiver is down", func() bool {
		var sum float64
		for _, n := range []*testNode{a, b, c} {
			v, _ := n.metric("herald_webhook_attempts_failed_total")
			sum += v
		}
		return sum > 0
	})
	if n := rcv.count(); n != 4 {
		t.Fatalf("the receiver got %d events while down", n)
	}
	// The outage lasts its 30 s: what is measured is that nothing queued
	// during it is lost, so the test waits it out.
	time.Sleep(time.Until(downAt.Add(30 * time.Second)))
	rcv.up()

	// dave leaves last: once his offline is in, everything before it is.
	dave.conn.Close(websocket.StatusNormalClosure, "bye")
	waitFor(t, 60*time.Second, "every event at the receiver", func() bool { return rcv.count() >= 14 })
	want := map[string][]string{
		"alice": {"online", "join:room:w", "leave:room:w", "offline"},
		"bob":   {"online", "join:room:w", "leave:room:w", "join:room:w"},
		"carol": {"online", "join:room:w", "leave:room:w", "offline"},
		"dave":  {"online", "offline"},
	}
	got := rcv.byUser()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events per user:\n got %v\nwant %v", got, want)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.badSigs != 0 {
		t.Fatalf("%d batches with a bad signature", rcv.badSigs)
	}
	for _, e := range rcv.events {
		if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil || e.ID == "" {
			t.Fatalf("event without id or time: %+v (%v)", e, err)
		}
	}
	t.Logf("%d events in %d batches, %d duplicates dropped by id", len(rcv.events), rcv.batches, rcv.dups)
}
