package push

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// stallable sits between the memory engine and the node: while stalled it
// drops every delivery, as a pub/sub that stopped delivering without an
// error would. Publishes still succeed and are kept in history.
type stallable struct {
	n       *Node
	stalled atomic.Bool
}

func (h *stallable) HandleMessage(m *broker.Message) {
	if !h.stalled.Load() {
		h.n.HandleMessage(m)
	}
}

func (h *stallable) HandleReconnect() { h.n.HandleReconnect() }

// resubscribing is the memory engine with a Resubscribe that counts.
type resubscribing struct {
	*broker.Memory
	resubs atomic.Int32
}

func (b *resubscribing) Resubscribe(context.Context) error {
	b.resubs.Add(1)
	return nil
}

const canaryTestInterval = 100 * time.Millisecond

func newCanaryRig(t *testing.T) (*Node, *stallable, *resubscribing) {
	t.Helper()
	n := NewNode(Options{
		Node: "t", Heartbeat: time.Hour, StatsInterval: time.Hour, CanaryInterval: canaryTestInterval,
		Namespaces: &Namespaces{Default: Namespace{HistorySize: 100, HistoryTTL: time.Minute}},
	})
	h := &stallable{n: n}
	b := &resubscribing{Memory: broker.NewMemory(h)}
	n.Start(context.Background(), b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Close(ctx, CloseGoingAway, "test over"); err != nil {
			t.Errorf("close: %v", err)
		}
		_ = b.Close(ctx)
	})
	return n, h, b
}

func (r *recorder) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, f := range r.frames {
		if strings.HasPrefix(f, prefix) {
			n++
		}
	}
	return n
}

// TestCanaryStall: with deliveries stopped, Ready fails with
// pubsub_stalled once three intervals pass without a probe back, the
// engine is asked to resubscribe, and when deliveries resume Ready is
// green again and what was published meanwhile reaches the subscriber
// (the canary's resync), though no later message shows the gap.
func TestCanaryStall(t *testing.T) {
	n, h, b := newCanaryRig(t)
	waitFor(t, "a probe back", func() bool { return n.PubSubLag() > 0 && n.Ready(context.Background()) == nil })
	lag := n.PubSubLag()
	if lag <= 0 || lag > canaryTestInterval {
		t.Errorf("lag %v with a healthy broker, want (0, %v]", lag, canaryTestInterval)
	}

	rec := newRecorder()
	s := n.NewSession(rec, false)
	rec.s = s
	s.Open([]string{"c"}, nil)
	waitFor(t, "subscribed", func() bool { return rec.count("sub ") == 1 })
	ctx := context.Background()
	if _, err := n.Publish(ctx, Publication{Channel: "c", Data: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "message 1", func() bool { return rec.count("m ") == 1 })

	h.stalled.Store(true)
	stalledAt := time.Now()
	for i := 2; i <= 4; i++ { // accepted, not delivered live
		if _, err := n.Publish(ctx, Publication{Channel: "c", Data: json.RawMessage(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	var red error
	waitFor(t, "readiness red", func() bool { red = n.Ready(ctx); return red != nil })
	took := time.Since(stalledAt)
	if e := AsError(red); e.Code != CodePubSubStalled || HTTPStatus(e.Code) != 503 {
		t.Fatalf("Ready = %v, want pubsub_stalled (503)", red)
	}
	// Red at most three intervals after the last probe that came back,
	// which was sent before the stall; one more interval for polling on a
	// loaded machine.
	if took > 4*canaryTestInterval {
		t.Errorf("red %v after the stall, want within 3 intervals (%v)", took, 3*canaryTestInterval)
	}
	if got := n.PubSubLag(); got < canaryTestInterval {
		t.Errorf("lag %v while stalled, want the time the next probe has been out (> %v)", got, canaryTestInterval)
	}
	waitFor(t, "a resubscribe", func() bool { return b.resubs.Load() >= 1 })
	if rec.count("m ") != 1 {
		t.Fatalf("frames %v: delivered while stalled", rec.frames)
	}

	h.stalled.Store(false)
	waitFor(t, "readiness green", func() bool { return n.Ready(ctx) == nil })
	waitFor(t, "messages 2-4 recovered", func() bool { return rec.count("m ") == 4 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"sub e:0", "m e:1", "m e:2", "m e:3", "m e:4"}
	for i, f := range rec.frames {
		if epoch, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(f, "m "), "sub "), ":"); epoch != "" {
			f = strings.Replace(f, epoch+":", "e:", 1)
		}
		if i >= len(want) || f != want[i] {
			t.Fatalf("frames %v, want %v (in order, once each)", rec.frames, want)
		}
	}
}

// TestCanaryIgnoresStrangers: probes that are not this node's, repeated
// or malformed change nothing.
func TestCanaryIgnoresStrangers(t *testing.T) {
	n, _, _ := newCanaryRig(t)
	waitFor(t, "a probe back", func() bool { return n.PubSubLag() > 0 })
	c := &n.canary
	c.mu.Lock()
	back, seq := c.backSeq, c.seq
	c.mu.Unlock()
	for _, data := range []string{`{"seq":` + fmt.Sprint(seq+100) + `,"sent":1}`, `{"seq":0}`, `nonsense`, `{"seq":` + fmt.Sprint(back) + `,"sent":1}`} {
		c.back([]byte(data))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backSeq < back || c.backSent.Unix() == 0 {
		t.Fatalf("a stray probe moved the canary: back %d (was %d), sent %v", c.backSeq, back, c.backSent)
	}
}
