package push

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/internal/pushtest"
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
		pos = p.Position
	}
	return pos
}

// captureTransport keeps every frame written, for tests that look at the
// bytes each session got. Flushes run on a goroutine of their own (the
// session schedules them holding its lock).
type captureTransport struct {
	mu     sync.Mutex
	frames [][]byte
}

func (t *captureTransport) Schedule(flush func()) { go flush() }
func (t *captureTransport) Write(frames []*Frame) error {
	t.mu.Lock()
	for _, f := range frames {
		t.frames = append(t.frames, f.Bytes)
	}
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
		ms := make([]pushtest.Message, len(frames))
		for k, f := range frames {
			if err := json.Unmarshal(f, &ms[k]); err != nil {
				t.Fatal(err)
			}
			ms[k].Raw = string(f)
		}
		if skipped := pushtest.CheckSkips(t, ms, 0); skipped == 0 {
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

// BenchmarkBroadcastMaxRate is BenchmarkBroadcast with every subscriber
// at a max_rate the stream outruns ten times: each message is held (and
// replaces the one held), and every tenth the wheel turns and delivers
// the newest, with "skipped": 9, to all of them. Compare its ns/op (per
// message) with BenchmarkBroadcast's.
func BenchmarkBroadcastMaxRate(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			// One message per 1,024 ticks: the wheel's own goroutine never
			// comes to these; the benchmark turns it by hand.
			f := newFanoutWith(b, n, "0.09765625")
			tick := func() {
				f.chann.mu.Lock()
				due := f.chann.subs[0].th.due
				f.chann.mu.Unlock()
				f.node.hub.wheel.advance(due)
				f.drain()
			}
			f.publish() // the first goes at once
			f.publish()
			tick()
			before, i := f.frames(), 0
			b.ReportAllocs()
			for b.Loop() {
				f.publish()
				if i++; i%10 == 0 {
					tick()
				}
			}
			b.StopTimer()
			delivered := f.frames() - before
			if want := b.N / 10 * n; delivered != want {
				b.Fatalf("delivered %d frames, want %d", delivered, want)
			}
			b.ReportMetric(float64(delivered)/float64(b.N), "deliveries/msg")
		})
	}
}
