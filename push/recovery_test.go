package push

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// Recovery is driven here by a scripted broker: no sockets, no engine.
// The test holds the broker's history (what History answers) and plays
// the broker's delivery goroutine itself (Node.HandleMessage and
// HandleReconnect), so that every interleaving the state machine must
// handle can be written down: gaps, reconnects, epochs, offsets going
// backwards, live messages racing a history read.

// scriptBroker answers History from its log, as an engine would.
type scriptBroker struct {
	mu    sync.Mutex
	epoch string
	log   map[string][]broker.Message // per channel, oldest first
	pos   map[string]uint64
	// before, if set, runs at the start of the next History call (once),
	// without the broker's lock: live messages racing the read.
	before func(q broker.HistoryQuery)
	// after, if set, runs once the next History call has its answer and
	// before it returns (once), without the broker's lock.
	after func()
	// fail makes the next fail History calls answer ErrUnavailable.
	fail int

	reads         atomic.Int64 // History calls
	positionReads atomic.Int64 // History calls asking for the position only
}

func newScriptBroker(epoch string) *scriptBroker {
	return &scriptBroker{epoch: epoch, log: map[string][]broker.Message{}, pos: map[string]uint64{}}
}

var _ broker.Broker = (*scriptBroker)(nil)

func (b *scriptBroker) Publish(ctx context.Context, channel string, data json.RawMessage, r broker.Retention) (broker.Position, error) {
	return broker.Position{}, nil // system channels (stats, presence): not under test
}
func (b *scriptBroker) Subscribe(context.Context, ...string) error   { return nil }
func (b *scriptBroker) Unsubscribe(context.Context, ...string) error { return nil }
func (b *scriptBroker) Close(context.Context) error                  { return nil }

func (b *scriptBroker) History(ctx context.Context, channel string, q broker.HistoryQuery) (broker.History, error) {
	b.reads.Add(1)
	if q.Limit == 0 {
		b.positionReads.Add(1)
	}
	b.mu.Lock()
	before := b.before
	b.before = nil
	b.mu.Unlock()
	if before != nil {
		before(q)
	}
	b.mu.Lock()
	if b.fail > 0 {
		b.fail--
		b.mu.Unlock()
		return broker.History{}, broker.ErrUnavailable
	}
	pos := broker.Position{Epoch: b.epoch, Offset: b.pos[channel]}
	h := historyFrom(b.log[channel], pos, q)
	after := b.after
	b.after = nil
	b.mu.Unlock()
	if after != nil {
		after()
	}
	return h, nil
}

// historyFrom answers q like the engines do (broker.historyOf).
func historyFrom(log []broker.Message, pos broker.Position, q broker.HistoryQuery) broker.History {
	h := broker.History{Position: pos}
	same := q.Since.Epoch == "" || q.Since.Epoch == pos.Epoch
	since := q.Since.Offset
	if !same {
		since = 0
	}
	oldest := pos.Offset + 1
	if len(log) > 0 {
		oldest = log[0].Offset
	}
	h.Complete = same && q.Since.Epoch != "" && since <= pos.Offset && since+1 >= oldest
	for _, m := range log {
		if m.Offset > since && len(h.Messages) < q.Limit {
			h.Messages = append(h.Messages, m)
		}
	}
	if q.Reverse {
		for i, j := 0, len(h.Messages)-1; i < j; i, j = i+1, j-1 {
			h.Messages[i], h.Messages[j] = h.Messages[j], h.Messages[i]
		}
	}
	return h
}

// store puts offsets in the channel's history (and moves its position),
// without delivering them.
func (b *scriptBroker) store(channel string, offsets ...uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, o := range offsets {
		b.log[channel] = append(b.log[channel], msg(channel, b.epoch, o))
		b.pos[channel] = max(b.pos[channel], o)
	}
}

// restart loses the log: a new epoch at offset pos, or the same epoch
// rewound to pos (an older snapshot restored) when epoch is unchanged.
func (b *scriptBroker) restart(epoch string, pos uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.epoch = epoch
	for ch := range b.pos {
		b.pos[ch] = pos
		b.log[ch] = nil
	}
}

func msg(channel, epoch string, offset uint64) broker.Message {
	return broker.Message{Channel: channel, Epoch: epoch, Offset: offset, Data: json.RawMessage(fmt.Sprint(offset))}
}

// recorder is a session's transport that keeps a summary of each frame.
type recorder struct {
	s      *Session
	mu     sync.Mutex
	frames []string
	bad    []string // frames whose fields say other than their JSON
	wake   chan struct{}
}

// describedAsEncoded checks what a frame tells the transports (Type,
// Channel, Position, Recovered, Err) against its JSON: "" when they agree.
func describedAsEncoded(f *Frame) string {
	var v struct {
		Type      string `json:"type"`
		Channel   string `json:"channel"`
		Epoch     string `json:"epoch"`
		Offset    uint64 `json:"offset"`
		Recovered *bool  `json:"recovered"`
		Code      string `json:"code"`
		Message   string `json:"message"`
	}
	if err := json.Unmarshal(f.Bytes, &v); err != nil {
		return fmt.Sprintf("%s: %v", f.Bytes, err)
	}
	ok := f.Type == v.Type && f.Channel == v.Channel
	switch v.Type {
	case TypeMessage, TypeSubscribed:
		ok = ok && f.Position == broker.Position{Epoch: v.Epoch, Offset: v.Offset}
	case TypeError:
		ok = ok && f.Err != nil && f.Err.Code == v.Code && f.Err.Message == v.Message
	}
	if v.Type == TypeSubscribed {
		ok = ok && (f.Recovered == nil) == (v.Recovered == nil) && (f.Recovered == nil || *f.Recovered == *v.Recovered)
	}
	if !ok {
		return fmt.Sprintf("%s described as %+v", f.Bytes, *f)
	}
	return ""
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

// Schedule runs the flush on its own goroutine: send holds the session
// lock while it schedules.
func (r *recorder) Schedule(flush func()) { go flush() }

func (r *recorder) Write(frames []*Frame) error {
	r.mu.Lock()
	for _, f := range frames {
		if why := describedAsEncoded(f); why != "" {
			r.bad = append(r.bad, why)
		}
		if s := summary(f.Bytes); s != "" {
			r.frames = append(r.frames, s)
		}
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) Close(uint16, string) { r.s.Release() }

// summary is a frame in short: "m e1:7", "sub e1:5", "sub e1:5 recovered",
// "sub e2:0 lost", "unsub resubscribe", "error <code>". Pings are left out.
func summary(f []byte) string {
	var v struct {
		Type      string `json:"type"`
		Epoch     string `json:"epoch"`
		Offset    uint64 `json:"offset"`
		Recovered *bool  `json:"recovered"`
		Reason    string `json:"reason"`
		Code      string `json:"code"`
	}
	if json.Unmarshal(f, &v) != nil {
		return ""
	}
	switch v.Type {
	case "message":
		return fmt.Sprintf("m %s:%d", v.Epoch, v.Offset)
	case "subscribed":
		s := fmt.Sprintf("sub %s:%d", v.Epoch, v.Offset)
		if v.Recovered != nil && *v.Recovered {
			s += " recovered"
		} else if v.Recovered != nil {
			s += " lost"
		}
		return s
	case "unsubscribed":
		return "unsub " + v.Reason
	case "error":
		return "error " + v.Code
	}
	return ""
}

// rig is a node on a scripted broker with one channel under test.
type rig struct {
	t  *testing.T
	n  *Node
	b  *scriptBroker
	ch string
}

const testChannel = "c"

func newRig(t *testing.T) *rig {
	t.Helper()
	n := NewNode(Options{
		Node: "t", Heartbeat: time.Hour, StatsInterval: time.Hour, BrokerTimeout: time.Second,
		Namespaces: &Namespaces{Default: Namespace{HistorySize: 100}},
	})
	b := newScriptBroker("e1")
	n.Start(context.Background(), b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Close(ctx, CloseGoingAway, "test over"); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &rig{t: t, n: n, b: b, ch: testChannel}
}

// subscribe opens a session subscribed to the channel (since: resume).
func (r *rig) subscribe(since *broker.Position) *recorder {
	rec := newRecorder()
	s := r.n.NewSession(rec, false)
	rec.s = s
	s.Open([]string{r.ch}, []*broker.Position{since})
	return rec
}

// live delivers offsets as the broker's delivery goroutine would, after
// storing them in history.
func (r *rig) live(offsets ...uint64) {
	for _, o := range offsets {
		r.b.store(r.ch, o)
		r.b.mu.Lock()
		m := msg(r.ch, r.b.epoch, o)
		r.b.mu.Unlock()
		r.n.HandleMessage(&m)
	}
}

// liveOnly delivers a message of epoch at offset without touching history
// (a message the test wants the broker to have lost or reissued).
func (r *rig) liveOnly(epoch string, offset uint64) {
	m := msg(r.ch, epoch, offset)
	r.n.HandleMessage(&m)
}

// expect waits until rec holds exactly want.
func (rec *recorder) expect(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		rec.mu.Lock()
		got := append([]string(nil), rec.frames...)
		bad := append([]string(nil), rec.bad...)
		rec.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("frames described unlike their JSON:\n%s", strings.Join(bad, "\n"))
		}
		if len(got) >= len(want) {
			if strings.Join(got, " | ") != strings.Join(want, " | ") {
				t.Fatalf("frames:\n got  %s\n want %s", strings.Join(got, " | "), strings.Join(want, " | "))
			}
			return
		}
		select {
		case <-rec.wake:
		case <-deadline.C:
			t.Fatalf("timed out; frames:\n got  %s\n want %s", strings.Join(got, " | "), strings.Join(want, " | "))
		}
	}
}

func pos(epoch string, offset uint64) *broker.Position {
	return &broker.Position{Epoch: epoch, Offset: offset}
}

// TestRecovery is the state machine's table: each case scripts the
// broker and the live stream and lists every frame the subscriber must
// get, ending on a live message so that a late duplicate would show.
func TestRecovery(t *testing.T) {
	cases := []struct {
		name string
		run  func(r *rig) (rec *recorder, want []string)
	}{{
		name: "in order",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 1, 2, 3, 4, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.live(6, 7)
			return rec, []string{"sub e1:5", "m e1:6", "m e1:7"}
		},
	}, {
		name: "gap filled from history",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 1, 2, 3, 4, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.live(6)
			r.b.store(r.ch, 7, 8) // lost on the way
			r.live(9)
			r.live(10)
			return rec, []string{"sub e1:5", "m e1:6", "m e1:7", "m e1:8", "m e1:9", "m e1:10"}
		},
	}, {
		name: "gap filled while live messages keep coming",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.live(6)
			r.b.store(r.ch, 7)
			during := make(chan struct{})
			r.b.before = func(broker.HistoryQuery) { // during the gap's read
				r.live(9, 10)
				close(during)
			}
			r.live(8)
			<-during // the broker delivers in order: 11 comes after 10
			r.live(11)
			return rec, []string{"sub e1:5", "m e1:6", "m e1:7", "m e1:8", "m e1:9", "m e1:10", "m e1:11"}
		},
	}, {
		name: "gap no longer in history",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.live(6)
			r.b.mu.Lock()
			r.b.pos[r.ch] = 8 // 7 and 8 were trimmed away
			r.b.mu.Unlock()
			r.live(9)
			r.live(10)
			return rec, []string{"sub e1:5", "m e1:6", "unsub resubscribe", "sub e1:8 lost", "m e1:9", "m e1:10"}
		},
	}, {
		name: "gap read fails for a while, then succeeds",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.b.store(r.ch, 6)
			r.b.mu.Lock()
			r.b.fail = fillTries - 1
			r.b.mu.Unlock()
			r.live(7)
			return rec, []string{"sub e1:5", "m e1:6", "m e1:7"}
		},
	}, {
		name: "duplicate of a filled message dropped",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.b.store(r.ch, 6, 7)
			r.live(8)
			rec.expect(r.t, "sub e1:5", "m e1:6", "m e1:7", "m e1:8")
			r.liveOnly("e1", 8) // redelivered
			r.live(9)
			return rec, []string{"sub e1:5", "m e1:6", "m e1:7", "m e1:8", "m e1:9"}
		},
	}, {
		name: "new epoch live",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.live(6)
			r.b.restart("e2", 0)
			r.live(1, 2)
			return rec, []string{"sub e1:5", "m e1:6", "unsub resubscribe", "sub e2:0 lost", "m e2:1", "m e2:2"}
		},
	}, {
		name: "offsets reissued in the same epoch are a reset, not duplicates",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.live(6, 7, 8)
			r.b.restart("e1", 3) // an older snapshot came back
			r.live(4, 5)
			return rec, []string{"sub e1:5", "m e1:6", "m e1:7", "m e1:8", "unsub resubscribe", "sub e1:3 lost", "m e1:4", "m e1:5"}
		},
	}, {
		name: "resync fills what was published during the outage",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.live(6)
			r.b.store(r.ch, 7, 8)
			r.n.HandleReconnect()
			rec.expect(r.t, "sub e1:5", "m e1:6", "m e1:7", "m e1:8")
			r.liveOnly("e1", 8) // the engine may deliver it again after resubscribing
			r.live(9)
			return rec, []string{"sub e1:5", "m e1:6", "m e1:7", "m e1:8", "m e1:9"}
		},
	}, {
		name: "resync of a channel that had no live message yet",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.b.store(r.ch, 6, 7)
			r.n.HandleReconnect()
			rec.expect(r.t, "sub e1:5", "m e1:6", "m e1:7")
			r.live(8)
			return rec, []string{"sub e1:5", "m e1:6", "m e1:7", "m e1:8"}
		},
	}, {
		name: "resync finds a new epoch",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.live(6)
			r.b.restart("e2", 3)
			r.n.HandleReconnect()
			rec.expect(r.t, "sub e1:5", "m e1:6", "unsub resubscribe", "sub e2:3 lost")
			r.live(4)
			return rec, []string{"sub e1:5", "m e1:6", "unsub resubscribe", "sub e2:3 lost", "m e2:4"}
		},
	}, {
		name: "resync finds the position went backwards",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.live(6, 7)
			r.b.restart("e1", 4)
			r.n.HandleReconnect()
			rec.expect(r.t, "sub e1:5", "m e1:6", "m e1:7", "unsub resubscribe", "sub e1:4 lost")
			r.live(5)
			return rec, []string{"sub e1:5", "m e1:6", "m e1:7", "unsub resubscribe", "sub e1:4 lost", "m e1:5"}
		},
	}, {
		// Issue 12 item 3: the resync read the position, a live message
		// moved the channel past it before the comparison, and the old
		// code took that for a rewind (false reset), then filled the
		// "gap" to the next message with the one already sent (duplicate).
		name: "resync read overtaken by a live message",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 5)
			rec := r.subscribe(nil)
			rec.expect(r.t, "sub e1:5")
			r.live(6)
			r.b.mu.Lock()
			// The position is read as 6 ... and 7 arrives live before the
			// resync compares.
			r.b.after = func() { r.live(7) }
			r.b.mu.Unlock()
			r.n.HandleReconnect()
			rec.expect(r.t, "sub e1:5", "m e1:6", "m e1:7")
			waitFor(r.t, "the resync to end", func() bool { return !r.n.recovery.isRunning() })
			r.live(8)
			return rec, []string{"sub e1:5", "m e1:6", "m e1:7", "m e1:8"}
		},
	}, {
		name: "subscribe merges recovered history with live messages",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 1, 2, 3, 4, 5)
			other := r.subscribe(nil) // keeps the channel's stream going
			other.expect(r.t, "sub e1:5")
			r.b.before = func(broker.HistoryQuery) { r.live(6, 7) } // during the resume's read
			rec := r.subscribe(pos("e1", 3))
			r.live(8)
			return rec, []string{"sub e1:7 recovered", "m e1:4", "m e1:5", "m e1:6", "m e1:7", "m e1:8"}
		},
	}, {
		name: "subscribe with a since of another epoch",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 1, 2)
			rec := r.subscribe(pos("e0", 9))
			r.live(3)
			return rec, []string{"sub e1:2 lost", "m e1:3"}
		},
	}, {
		name: "two subscribers whose reads saw different positions",
		run: func(r *rig) (*recorder, []string) {
			r.b.store(r.ch, 1, 2)
			a := r.subscribe(nil)
			a.expect(r.t, "sub e1:2")
			// b subscribes after 3 and 4 were published but before they
			// came live: a still needs them.
			r.b.store(r.ch, 3, 4)
			b := r.subscribe(nil)
			b.expect(r.t, "sub e1:4")
			r.live(3, 4, 5)
			b.expect(r.t, "sub e1:4", "m e1:5")
			return a, []string{"sub e1:2", "m e1:3", "m e1:4", "m e1:5"}
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			rec, want := c.run(r)
			rec.expect(t, want...)
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling a condition, with a deadline
	}
}

// queueBroker is the memory engine's shape, scripted: Publish holds the
// channel's lock while it waits for room in a bounded delivery queue (so
// that queue order is offset order), History takes the same lock, and one
// goroutine delivers the queue to the node. drop leaves an offset out of
// live delivery (it stays in history): a gap.
type queueBroker struct {
	scriptBroker
	chMu  sync.Mutex // the engine's channel lock
	queue chan *broker.Message
	drop  uint64
	done  chan struct{}
}

func newQueueBroker(queueLen int, drop uint64) *queueBroker {
	return &queueBroker{
		scriptBroker: *newScriptBroker("e1"),
		queue:        make(chan *broker.Message, queueLen), drop: drop, done: make(chan struct{}),
	}
}

func (b *queueBroker) run(h broker.Handler) {
	defer close(b.done)
	for m := range b.queue {
		h.HandleMessage(m)
	}
}

func (b *queueBroker) publish(channel string, offset uint64) {
	b.chMu.Lock()
	defer b.chMu.Unlock()
	b.store(channel, offset)
	if offset != b.drop {
		m := msg(channel, "e1", offset)
		b.queue <- &m // waits for room holding chMu, as the memory engine does
	}
}

func (b *queueBroker) History(ctx context.Context, channel string, q broker.HistoryQuery) (broker.History, error) {
	b.chMu.Lock()
	defer b.chMu.Unlock()
	return b.scriptBroker.History(ctx, channel, q)
}

// Hazard 1 of issue 13: a gap's history read needs the engine's channel
// lock, which a publisher holds while it waits for room in the delivery
// queue that the gap's reader is meant to drain. The old hub read history
// on the delivery goroutine, under the channel's lock: deadlock. Now the
// fill runs on a goroutine of its own, and the delivery goroutine goes on.
func TestGapFillDoesNotDeadlockTheEngine(t *testing.T) {
	n := NewNode(Options{Node: "t", Heartbeat: time.Hour, StatsInterval: time.Hour,
		Namespaces: &Namespaces{Default: Namespace{HistorySize: 100}}})
	b := newQueueBroker(1, 3)
	n.Start(context.Background(), b)
	go b.run(n)
	published := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-published:
		default:
			return // deadlocked: leave the goroutines, the test failed
		}
		close(b.queue)
		<-b.done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Close(ctx, CloseGoingAway, "test over")
	})
	rec := newRecorder()
	s := n.NewSession(rec, false)
	rec.s = s
	s.Open([]string{testChannel}, nil)
	rec.expect(t, "sub e1:0")

	const total = 50
	go func() {
		defer close(published)
		for o := uint64(1); o <= total; o++ {
			b.publish(testChannel, o)
		}
	}()
	want := []string{"sub e1:0"}
	for o := 1; o <= total; o++ {
		want = append(want, fmt.Sprintf("m e1:%d", o))
	}
	select {
	case <-published:
	case <-time.After(5 * time.Second):
		t.Fatal("deadlock: the publisher still waits for the delivery queue after 5 s")
	}
	rec.expect(t, want...)
}

// Hazard 2 of issue 13: while a gap's history read is retried (the broker
// is still loading after a restart), the other channels sharing the
// broker's delivery goroutine must go on. The old hub retried on that
// goroutine, sleeping between tries: a second or more for every channel
// behind the gapped one (up to ~26 s with timeouts).
func TestGapFillDoesNotStallOtherChannels(t *testing.T) {
	r := newRig(t)
	r.b.store("a", 1)
	r.b.store("b", 1)
	recA, recB := newRecorder(), newRecorder()
	for ch, rec := range map[string]*recorder{"a": recA, "b": recB} {
		s := r.n.NewSession(rec, false)
		rec.s = s
		s.Open([]string{ch}, nil)
		rec.expect(t, "sub e1:1")
	}
	r.b.store("a", 2) // lost live: a gap before 3
	r.b.mu.Lock()
	r.b.fail = fillTries - 1 // about a second of retries
	r.b.mu.Unlock()
	ma, mb := msg("a", "e1", 3), msg("b", "e1", 2)
	r.b.store("a", 3)
	r.b.store("b", 2)

	start := time.Now()
	// One delivery goroutine: the gapped channel's message, then the other's.
	r.n.HandleMessage(&ma)
	r.n.HandleMessage(&mb)
	recB.expect(t, "sub e1:1", "m e1:2")
	stall := time.Since(start)
	t.Logf("channel b waited %v behind channel a's gap", stall)
	if stall > 250*time.Millisecond {
		t.Errorf("channel b waited %v behind channel a's gap fill", stall)
	}
	recA.expect(t, "sub e1:1", "m e1:2", "m e1:3")
}

// A burst of reconnects (a Redis Cluster failover reconnects every shard
// connection) costs one resync pass, or two, not one each.
func TestResyncsAreCoalesced(t *testing.T) {
	r := newRig(t)
	const channels = 20
	for i := range channels {
		ch := fmt.Sprintf("c%d", i)
		r.b.store(ch, 1)
		rec := newRecorder()
		s := r.n.NewSession(rec, false)
		rec.s = s
		s.Open([]string{ch}, nil)
		rec.expect(t, "sub e1:1")
	}
	r.b.positionReads.Store(0)
	for range 50 {
		r.n.HandleReconnect()
	}
	waitFor(t, "the resync to end", func() bool { return !r.n.recovery.isRunning() })
	if got := r.b.positionReads.Load(); got > 2*channels {
		t.Errorf("50 reconnects read %d positions for %d channels, want at most %d (two passes)", got, channels, 2*channels)
	} else {
		t.Logf("50 reconnects: %d position reads for %d channels", got, channels)
	}
}
