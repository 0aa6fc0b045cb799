package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/heraldpush/herald/broker/brokertest"
)

// keyedResult is a publish answer with the duplicate flag.
type keyedResult struct {
	Channel   string `json:"channel"`
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
	Duplicate bool   `json:"duplicate"`
}

// publishKeyed publishes body (a JSON object) with POST /api/publish and
// decodes the one-channel answer.
func (n *testNode) publishKeyed(body map[string]any) keyedResult {
	n.t.Helper()
	r := n.request("POST", "/api/publish", body, nil)
	if r.Status != http.StatusOK {
		n.t.Fatalf("publish %v: HTTP %d: %s", body, r.Status, r.Body)
	}
	var res keyedResult
	decodeJSON(n.t, r.Body, &res)
	return res
}

// TestIdempotentPublish: idempotency_key on POST /api/publish, on each
// /api/batch entry and on the WebSocket publish command publishes once
// per channel; a repeat answers the first position with "duplicate":
// true and nothing reaches the subscriber. A key over 128 bytes is a 400.
func TestIdempotentPublish(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	sub := n.dial(query("channel", "chat:k", "channel", "stocks:k"))
	sub.welcome()
	sub.expect("subscribed")
	sub.expect("subscribed")

	first := n.publishKeyed(map[string]any{"channel": "chat:k", "data": 1, "idempotency_key": "a"})
	again := n.publishKeyed(map[string]any{"channel": "chat:k", "data": 99, "idempotency_key": "a"})
	if first.Duplicate || first.Offset != 1 || !again.Duplicate || again.Offset != 1 || again.Epoch != first.Epoch {
		t.Fatalf("first %+v, repeat %+v: want offset 1, then a duplicate of it", first, again)
	}
	if r := n.request("POST", "/api/publish", `{"channel":"chat:k","data":1,"idempotency_key":"a"}`, nil); !strings.Contains(string(r.Body), `"duplicate":true`) {
		t.Fatalf("repeat answered %s, want \"duplicate\":true", r.Body)
	}

	// A batch: the second entry repeats the first, the third repeats "a".
	r := n.request("POST", "/api/batch", map[string]any{"messages": []map[string]any{
		{"channel": "chat:k", "data": 2, "idempotency_key": "b"},
		{"channel": "chat:k", "data": 98, "idempotency_key": "b"},
		{"channel": "chat:k", "data": 97, "idempotency_key": "a"},
		{"channels": []string{"chat:k", "stocks:k"}, "data": 3, "idempotency_key": "c"},
	}}, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("batch: HTTP %d: %s", r.Status, r.Body)
	}
	var batch struct{ Results []keyedResult }
	decodeJSON(t, r.Body, &batch)
	want := []struct {
		off uint64
		dup bool
	}{{2, false}, {2, true}, {1, true}, {3, false}, {1, false}}
	if len(batch.Results) != len(want) {
		t.Fatalf("batch answered %s", r.Body)
	}
	for i, res := range batch.Results {
		if res.Offset != want[i].off || res.Duplicate != want[i].dup {
			t.Fatalf("batch result %d: %+v, want offset %d duplicate %v (all: %s)", i, res, want[i].off, want[i].dup, r.Body)
		}
	}

	// The WebSocket publish command.
	pub := n.dial("")
	pub.welcome()
	pub.sendText(`{"type":"publish","id":1,"channel":"chat:k","data":4,"idempotency_key":"d"}`)
	if ack := pub.expect("ack"); ack.Offset != 4 || strings.Contains(string(ack.Raw), "duplicate") {
		t.Fatalf("ack %s, want offset 4, not a duplicate", ack)
	}
	pub.sendText(`{"type":"publish","id":2,"channel":"chat:k","data":96,"idempotency_key":"d"}`)
	if ack := pub.expect("ack"); ack.Offset != 4 || !strings.Contains(string(ack.Raw), `"duplicate":true`) {
		t.Fatalf("repeated publish acked %s, want offset 4 and \"duplicate\":true", ack)
	}

	// The subscriber got each message once, in order per channel (the
	// two channels interleave freely); 5 marks the end.
	n.publish("chat:k", 5)
	got := map[string][]frame{}
	for len(got["chat:k"]) < 5 {
		m := sub.expect("message")
		got[m.Channel] = append(got[m.Channel], m)
	}
	for i, m := range got["chat:k"] {
		if m.Offset != uint64(i+1) || string(m.Data) != fmt.Sprint(i+1) {
			t.Fatalf("chat:k message %d is %s, want offset and data %d", i, m, i+1)
		}
	}
	if len(got["stocks:k"]) == 0 {
		got["stocks:k"] = append(got["stocks:k"], sub.expect("message"))
	}
	if s := got["stocks:k"]; len(s) != 1 || s[0].Channel != "stocks:k" || string(s[0].Data) != "3" {
		t.Fatalf("stocks:k got %v, want the one message 3", s)
	}

	long := strings.Repeat("x", 129)
	expectAPIError(t, n.request("POST", "/api/publish", map[string]any{"channel": "chat:k", "data": 1, "idempotency_key": long}, nil), http.StatusBadRequest, "bad_request")
	pub.send(map[string]any{"type": "publish", "id": 3, "channel": "chat:k", "data": 1, "idempotency_key": long})
	pub.expectError("bad_request")
}

// TestIdempotentPublishAcrossNodes: nodes on one Redis racing with the
// same key publish it once; every racer is answered the same position.
func TestIdempotentPublishAcrossNodes(t *testing.T) {
	srv := brokertest.StartRedis(t)
	nodes := startCluster(t, srv.URL(), 3)
	sub := nodes[0].dial(query("channel", "news"))
	sub.welcome()
	sub.expect("subscribed")
	const racers = 12
	res := make([]keyedResult, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			res[i] = nodes[i%3].publishKeyed(map[string]any{"channel": "news", "data": i, "idempotency_key": "once"})
		})
	}
	wg.Wait()
	fresh := 0
	for i, r := range res {
		if r.Offset != res[0].Offset || r.Epoch != res[0].Epoch {
			t.Fatalf("racer %d answered %+v, racer 0 %+v", i, r, res[0])
		}
		if !r.Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d racers published, want 1: %+v", fresh, res)
	}
	m := sub.expect("message")
	if m.Offset != res[0].Offset {
		t.Fatalf("message %s, want offset %d", m, res[0].Offset)
	}
	marker := nodes[1].publish("news", "end")
	if m := sub.expect("message"); m.Offset != marker.Offset || string(m.Data) != `"end"` {
		t.Fatalf("after the keyed message got %s, want the marker at %d (a duplicate was delivered?)", m, marker.Offset)
	}
}
