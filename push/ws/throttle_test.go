package ws

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/internal/pushtest"
	"github.com/heraldpush/herald/push"
)

// publishN publishes n messages {"i": k} on channel through the node, as
// fast as it takes them, and returns the last position.
func publishN(t testing.TB, h *push.Node, channel string, n int) broker.Position {
	t.Helper()
	var pos broker.Position
	for k := range n {
		p, err := h.Publish(context.Background(), push.Publication{Channel: channel, Data: json.RawMessage(`{"i":` + strconv.Itoa(k) + `}`)})
		if err != nil {
			t.Fatal(err)
		}
		pos = p.Position
	}
	return pos
}

// readMessages reads frames until done says so, keeping the messages of
// channel; every other frame must not be an error or a close.
func (c *rawWS) readMessages(t testing.TB, channel string, deadline time.Duration, done func([]pushtest.Message) bool) []pushtest.Message {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(deadline))
	var got []pushtest.Message
	for !done(got) {
		op, p, err := c.readFrame()
		if err != nil {
			t.Fatalf("after %d messages: %v", len(got), err)
		}
		if op == 0x8 {
			t.Fatalf("closed after %d messages: %q", len(got), p)
		}
		if op != 0x1 {
			continue
		}
		for _, line := range strings.Split(string(p), "\n") {
			var m pushtest.Message
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("frame %q: %v", line, err)
			}
			if m.Type == "error" {
				t.Fatalf("error frame: %s", line)
			}
			if m.Type == "message" && m.Channel == channel {
				m.Raw = line
				got = append(got, m)
			}
		}
	}
	return got
}

// A burst to a max_rate subscriber: the first message at once, then the
// newest at the next tick with the count of those it replaced; a plain
// subscriber of the same channel gets every one.
func TestMaxRateNewestWinsWithSkipped(t *testing.T) {
	n := startTestNode(t, push.Options{})
	rated := n.dialRaw(t, "/ws")
	if m := rated.readJSON(t); m["type"] != "welcome" {
		t.Fatalf("first frame %v", m)
	}
	if m := rated.command(t, `{"type":"subscribe","channel":"ticks","max_rate":2}`); m["type"] != "subscribed" {
		t.Fatalf("subscribe: %v", m)
	}
	plain := n.dialRaw(t, "/ws?channel=ticks")
	if m := plain.readJSON(t); m["type"] != "welcome" {
		t.Fatalf("first frame %v", m)
	}
	if m := plain.readJSON(t); m["type"] != "subscribed" {
		t.Fatalf("subscribe: %v", m)
	}
	start := time.Now()
	last := publishN(t, n.hub, "ticks", 300)

	got := rated.readMessages(t, "ticks", 10*time.Second, pushtest.LastIs(last.Offset))
	elapsed := time.Since(start)
	if skipped := pushtest.CheckSkips(t, got, 0); skipped+uint64(len(got)) != last.Offset {
		t.Fatalf("%d delivered + %d skipped != %d published", len(got), skipped, last.Offset)
	}
	// 2/s: one at once, then one per 500 ms slot.
	if limit := 2 + int(elapsed/(500*time.Millisecond)); len(got) > limit {
		t.Fatalf("%d messages in %v at max_rate 2 (at most %d)", len(got), elapsed, limit)
	}
	if got[0].Offset != 1 || got[0].Skipped != 0 {
		t.Errorf("first message %s: want offset 1 at once", got[0].Raw)
	}
	all := plain.readMessages(t, "ticks", 10*time.Second, pushtest.LastIs(last.Offset))
	if len(all) != int(last.Offset) || pushtest.CheckSkips(t, all, 0) != 0 {
		t.Fatalf("plain subscriber got %d of %d", len(all), last.Offset)
	}
}

// A steady stream for a second: the max_rate subscriber gets about its
// rate, never more, each message the newest at its tick.
func TestMaxRateCapsASteadyStream(t *testing.T) {
	n := startTestNode(t, push.Options{})
	c := n.dialRaw(t, "/ws?channel=ticks&max_rate=10")
	c.readJSON(t) // welcome
	if m := c.readJSON(t); m["type"] != "subscribed" {
		t.Fatalf("subscribe: %v", m)
	}
	start := time.Now()
	var last broker.Position
	tk := time.NewTicker(2 * time.Millisecond) // the publish rate, not a wait
	for time.Since(start) < time.Second {
		last = publishN(t, n.hub, "ticks", 1)
		<-tk.C
	}
	tk.Stop()
	got := c.readMessages(t, "ticks", 10*time.Second, pushtest.LastIs(last.Offset))
	elapsed := time.Since(start)
	skipped := pushtest.CheckSkips(t, got, 0)
	if skipped+uint64(len(got)) != last.Offset {
		t.Fatalf("%d delivered + %d skipped != %d published", len(got), skipped, last.Offset)
	}
	if limit := 2 + int(elapsed/(100*time.Millisecond)); len(got) > limit {
		t.Fatalf("%d messages in %v at max_rate 10 (at most %d)", len(got), elapsed, limit)
	}
	// The wheel ticked: more than the first and the last got through.
	if len(got) < 3 {
		t.Fatalf("only %d messages of %d in %v", len(got), last.Offset, elapsed)
	}
	t.Logf("%d published in %v, %d delivered at max_rate 10, %d skipped", last.Offset, elapsed, len(got), skipped)
}

// since recovers every missed message, not capped; live ones after it
// are.
func TestMaxRateSinceRecoversEverything(t *testing.T) {
	ns := &push.Namespaces{Default: push.Namespace{HistorySize: 1000}}
	n := startTestNode(t, push.Options{Namespaces: ns})
	before := publishN(t, n.hub, "ticks", 50)
	c := n.dialRaw(t, "/ws")
	c.readJSON(t) // welcome
	sub := fmt.Sprintf(`{"type":"subscribe","channel":"ticks","max_rate":1,"since":{"epoch":%q,"offset":10}}`, before.Epoch)
	if m := c.command(t, sub); m["type"] != "subscribed" || m["recovered"] != true {
		t.Fatalf("subscribe: %v", m)
	}
	got := c.readMessages(t, "ticks", 10*time.Second, pushtest.LastIs(before.Offset))
	if len(got) != 40 || pushtest.CheckSkips(t, got, 10) != 0 {
		t.Fatalf("recovered %d messages after offset 10 of %d, want all 40", len(got), before.Offset)
	}
	after := publishN(t, n.hub, "ticks", 50)
	live := c.readMessages(t, "ticks", 10*time.Second, pushtest.LastIs(after.Offset))
	if skipped := pushtest.CheckSkips(t, live, before.Offset); skipped == 0 || len(live) > 3 {
		t.Fatalf("live at max_rate 1: %d messages, %d skipped, want the burst capped", len(live), skipped)
	}
}

// Bad max_rate values are refused with a clear error, for that
// subscribe only.
func TestMaxRateBadValues(t *testing.T) {
	n := startTestNode(t, push.Options{})
	c := n.dialRaw(t, "/ws")
	c.readJSON(t) // welcome
	for _, bad := range []string{`-1`, `1000`, `0.001`, `"2"`} {
		m := c.command(t, `{"type":"subscribe","id":7,"channel":"ticks","max_rate":`+bad+`}`)
		if m["type"] != "error" || m["code"] != push.CodeBadRequest {
			t.Fatalf("max_rate %s: %v, want a bad_request error", bad, m)
		}
	}
	if m := c.command(t, `{"type":"subscribe","channel":"ticks","max_rate":0}`); m["type"] != "subscribed" {
		t.Fatalf("max_rate 0 (no cap): %v", m)
	}
	q := n.dialRaw(t, "/ws?channel=a&channel=b&max_rate=fast")
	q.readJSON(t) // welcome
	for _, ch := range []string{"a", "b"} {
		m := q.readJSON(t)
		if m["type"] != "error" || m["code"] != push.CodeBadRequest || m["channel"] != ch || !strings.Contains(m["message"].(string), "max_rate fast") {
			t.Fatalf("query max_rate=fast: %v, want bad_request for %s", m, ch)
		}
	}
	q.alive(t)
}
