package push

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// publishN publishes n messages {"i": k} on channel through the node, as
// fast as it takes them, and returns the last position.
func publishN(t testing.TB, h *Node, channel string, n int) broker.Position {
	t.Helper()
	var pos broker.Position
	for k := range n {
		p, err := h.Publish(context.Background(), Publication{Channel: channel, Data: json.RawMessage(`{"i":` + strconv.Itoa(k) + `}`)})
		if err != nil {
			t.Fatal(err)
		}
		pos = p
	}
	return pos
}

// message is a "message" frame as a client reads it.
type message struct {
	Type     string          `json:"type"`
	Channel  string          `json:"channel"`
	Offset   uint64          `json:"offset"`
	Epoch    string          `json:"epoch"`
	Skipped  uint64          `json:"skipped"`
	Snapshot bool            `json:"snapshot"`
	Data     json.RawMessage `json:"data"`
	raw      string
}

// readMessages reads frames until done says so, keeping the messages of
// channel; every other frame must not be an error or a close.
func (c *rawWS) readMessages(t testing.TB, channel string, deadline time.Duration, done func([]message) bool) []message {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(deadline))
	var got []message
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
			var m message
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("frame %q: %v", line, err)
			}
			if m.Type == "error" {
				t.Fatalf("error frame: %s", line)
			}
			if m.Type == "message" && m.Channel == channel {
				m.raw = line
				got = append(got, m)
			}
		}
	}
	return got
}

func lastIs(offset uint64) func([]message) bool {
	return func(ms []message) bool { return len(ms) > 0 && ms[len(ms)-1].Offset >= offset }
}

// checkSkips checks that ms, the messages after offset from, never go
// back and that each one's skipped is the gap its offset jumped.
func checkSkips(t testing.TB, ms []message, from uint64) (skipped uint64) {
	t.Helper()
	prev := from
	for _, m := range ms {
		if m.Offset <= prev {
			t.Fatalf("offset %d after %d: an old message after a newer one", m.Offset, prev)
		}
		if m.Skipped != m.Offset-prev-1 {
			t.Fatalf("offset %d after %d says skipped %d, want %d (%s)", m.Offset, prev, m.Skipped, m.Offset-prev-1, m.raw)
		}
		skipped += m.Skipped
		prev = m.Offset
	}
	return skipped
}

// A burst to a max_rate subscriber: the first message at once, then the
// newest at the next tick with the count of those it replaced; a plain
// subscriber of the same channel gets every one.
func TestMaxRateNewestWinsWithSkipped(t *testing.T) {
	n := startTestNode(t, Options{})
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

	got := rated.readMessages(t, "ticks", 10*time.Second, lastIs(last.Offset))
	elapsed := time.Since(start)
	if skipped := checkSkips(t, got, 0); skipped+uint64(len(got)) != last.Offset {
		t.Fatalf("%d delivered + %d skipped != %d published", len(got), skipped, last.Offset)
	}
	// 2/s: one at once, then one per 500 ms slot.
	if limit := 2 + int(elapsed/(500*time.Millisecond)); len(got) > limit {
		t.Fatalf("%d messages in %v at max_rate 2 (at most %d)", len(got), elapsed, limit)
	}
	if got[0].Offset != 1 || got[0].Skipped != 0 {
		t.Errorf("first message %s: want offset 1 at once", got[0].raw)
	}
	all := plain.readMessages(t, "ticks", 10*time.Second, lastIs(last.Offset))
	if len(all) != int(last.Offset) || checkSkips(t, all, 0) != 0 {
		t.Fatalf("plain subscriber got %d of %d", len(all), last.Offset)
	}
}

// A steady stream for a second: the max_rate subscriber gets about its
// rate, never more, each message the newest at its tick.
func TestMaxRateCapsASteadyStream(t *testing.T) {
	n := startTestNode(t, Options{})
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
	got := c.readMessages(t, "ticks", 10*time.Second, lastIs(last.Offset))
	elapsed := time.Since(start)
	skipped := checkSkips(t, got, 0)
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
	ns := &Namespaces{Default: Namespace{HistorySize: 1000}}
	n := startTestNode(t, Options{Namespaces: ns})
	before := publishN(t, n.hub, "ticks", 50)
	c := n.dialRaw(t, "/ws")
	c.readJSON(t) // welcome
	sub := fmt.Sprintf(`{"type":"subscribe","channel":"ticks","max_rate":1,"since":{"epoch":%q,"offset":10}}`, before.Epoch)
	if m := c.command(t, sub); m["type"] != "subscribed" || m["recovered"] != true {
		t.Fatalf("subscribe: %v", m)
	}
	got := c.readMessages(t, "ticks", 10*time.Second, lastIs(before.Offset))
	if len(got) != 40 || checkSkips(t, got, 10) != 0 {
		t.Fatalf("recovered %d messages after offset 10 of %d, want all 40", len(got), before.Offset)
	}
	after := publishN(t, n.hub, "ticks", 50)
	live := c.readMessages(t, "ticks", 10*time.Second, lastIs(after.Offset))
	if skipped := checkSkips(t, live, before.Offset); skipped == 0 || len(live) > 3 {
		t.Fatalf("live at max_rate 1: %d messages, %d skipped, want the burst capped", len(live), skipped)
	}
}

// Bad max_rate values are refused with a clear error, for that
// subscribe only.
func TestMaxRateBadValues(t *testing.T) {
	n := startTestNode(t, Options{})
	c := n.dialRaw(t, "/ws")
	c.readJSON(t) // welcome
	for _, bad := range []string{`-1`, `1000`, `0.001`, `"2"`} {
		m := c.command(t, `{"type":"subscribe","id":7,"channel":"ticks","max_rate":`+bad+`}`)
		if m["type"] != "error" || m["code"] != CodeBadRequest {
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
		if m["type"] != "error" || m["code"] != CodeBadRequest || m["channel"] != ch || !strings.Contains(m["message"].(string), "max_rate fast") {
			t.Fatalf("query max_rate=fast: %v, want bad_request for %s", m, ch)
		}
	}
	q.alive(t)
}

// captureTransport keeps every frame written, for tests that look at the
// bytes each session got. Flushes run on a goroutine of their own (the
// session schedules them holding its lock).
type captureTransport struct {
	mu     sync.Mutex
	frames [][]byte
}

func (t *captureTransport) Schedule(flush func()) { go flush() }
func (t *captureTransport) Write(frames [][]byte) error {
	t.mu.Lock()
	t.frames = append(t.frames, frames...)
	t.mu.Unlock()
	return nil
}
func (t *captureTransport) Close(uint16, string) {}

func (t *captureTransport) messages() [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out [][]byte
	for _, f := range t.frames {
		if FrameType(f) == "message" {
			out = append(out, f)
		}
	}
	return out
}

// Subscribers of a channel with the same max_rate share the frame of the
// tick, "skipped" and all: the same bytes, encoded once.
func TestMaxRateSharesOneEncoding(t *testing.T) {
	h := NewNode(Options{Node: "t", Heartbeat: time.Hour, StatsInterval: time.Hour})
	b := broker.NewMemory(h)
	h.Start(context.Background(), b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Close(ctx, CloseGoingAway, "test over")
		_ = b.Close(ctx)
	})
	const subs = 100
	ts := make([]*captureTransport, subs)
	for i := range ts {
		ts[i] = &captureTransport{}
		h.NewSession(ts[i], false).OpenWith([]string{"ticks"}, nil, "4")
	}
	last := publishN(t, h, "ticks", 10)
	waitFor(t, "the tick's message at every subscriber", func() bool {
		for _, ct := range ts {
			ms := ct.messages()
			if len(ms) == 0 {
				return false
			}
			if _, _, off, _ := MessageHead(ms[len(ms)-1]); off != last.Offset {
				return false
			}
		}
		return true
	})
	var first []byte
	for i, ct := range ts {
		frames := ct.messages()
		ms := make([]message, len(frames))
		for k, f := range frames {
			if err := json.Unmarshal(f, &ms[k]); err != nil {
				t.Fatal(err)
			}
			ms[k].raw = string(f)
		}
		if skipped := checkSkips(t, ms, 0); skipped == 0 {
			t.Fatalf("subscriber %d skipped nothing of a burst at max_rate 4: %d messages", i, len(ms))
		}
		tick := frames[len(frames)-1]
		if i == 0 {
			first = tick
			t.Logf("%d messages delivered, the last: %s", len(ms), tick)
		}
		if &tick[0] != &first[0] {
			t.Fatalf("subscriber %d got its own copy of the tick's frame", i)
		}
	}
}

// The wheel's delivery allocates what it does for 10 subscribers with
// 1,000: one frame with "skipped" per tick, not one per subscriber.
func TestMaxRateAllocsDoNotGrowWithSubscribers(t *testing.T) {
	allocs := func(n int) float64 {
		// One message per 1,024 ticks: every tick due falls in the same
		// slot of the wheel, whose capacity is warm after the first
		// turn. The test turns the wheel by hand, ahead of the clock:
		// its own goroutine finds nothing due.
		f := newFanoutWith(t, n, "0.09765625")
		run := func() {
			f.publish()
			f.publish() // held, and replaces the one held: skipped 1
			f.publish()
			f.chann.mu.Lock()
			due := f.chann.subs[0].th.due
			f.chann.mu.Unlock()
			f.node.hub.wheel.advance(due)
			f.drain()
		}
		run()
		run()
		return testing.AllocsPerRun(20, run)
	}
	small, large := allocs(10), allocs(1000)
	t.Logf("allocs per tick: %v with 10 subscribers, %v with 1,000", small, large)
	if large > small+0.5 {
		t.Errorf("allocs per tick grow with subscribers: %v for 10, %v for 1,000", small, large)
	}
}
