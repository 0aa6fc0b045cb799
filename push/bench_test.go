package push

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// countingTransport is a Transport that writes nowhere: it counts frames
// and bytes. Schedule only records the flush (send holds the session lock
// while scheduling); the fan-out under test runs the recorded flushes
// afterwards, as gws's writer would.
type countingTransport struct {
	s       *Session
	pending func()
	frames  int
	bytes   int
}

func (t *countingTransport) Schedule(flush func()) { t.pending = flush }

func (t *countingTransport) Write(frames []*Frame) error {
	t.frames += len(frames)
	for _, f := range frames {
		t.bytes += len(f.Bytes)
	}
	return nil
}

// Close stands for the connection going away: the reader side closes
// the session.
func (t *countingTransport) Close(uint16, string) { t.s.Release() }

// fanout is a node on the memory broker with n sessions subscribed to one
// channel through counting transports.
type fanout struct {
	node  *Node
	ts    []*countingTransport
	msg   broker.Message
	chann *hubChannel
}

func newFanout(tb testing.TB, n int) *fanout { return newFanoutWith(tb, n, "") }

// newFanoutWith is newFanout with every subscriber asking for maxRate
// (the max_rate query parameter).
func newFanoutWith(tb testing.TB, n int, maxRate string) *fanout {
	tb.Helper()
	h := NewNode(Options{Node: "bench", Heartbeat: time.Hour, StatsInterval: time.Hour, CanaryInterval: time.Hour})
	b := broker.NewMemory(h)
	h.Start(context.Background(), b)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Close(ctx, CloseGoingAway, "bench over")
		_ = b.Close(ctx)
	})
	const channel = "bench"
	f := &fanout{node: h, ts: make([]*countingTransport, n)}
	for i := range f.ts {
		t := &countingTransport{}
		f.ts[i] = t
		s := h.NewSession(t, false)
		t.s = s
		s.OpenWith([]string{channel}, nil, maxRate)
	}
	f.chann = h.hub.lookup(channel)
	if f.chann == nil {
		tb.Fatal("channel not attached")
	}
	f.chann.mu.Lock()
	// Nothing came live yet: the stream starts where the subscribers did.
	got, epoch, last := len(f.chann.subs), f.chann.stream.base.Epoch, f.chann.stream.base.Offset
	f.chann.mu.Unlock()
	if got != n {
		tb.Fatalf("%d subscribers attached, want %d", got, n)
	}
	f.drain() // the subscribe replies
	f.msg = broker.Message{
		Channel: channel, Epoch: epoch, Offset: last,
		Time: time.Now().UnixMilli(),
		Data: json.RawMessage(`{"price":101.25,"symbol":"HRLD","seq":123456}`),
	}
	return f
}

// drain runs every scheduled flush, the writer side of a fan-out.
func (f *fanout) drain() {
	for _, t := range f.ts {
		if fl := t.pending; fl != nil {
			t.pending = nil
			fl()
		}
	}
}

// publish delivers the next message to every subscriber and writes it.
func (f *fanout) publish() {
	f.msg.Offset++
	f.node.HandleMessage(&f.msg)
	f.drain()
}

func (f *fanout) frames() int {
	n := 0
	for _, t := range f.ts {
		n += t.frames
	}
	return n
}

// BenchmarkBroadcast measures one message fanned out to N local
// subscribers of one channel: encoding once, queueing per subscriber and
// the writer's flush, without a socket. allocs/op must not grow with N.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			f := newFanout(b, n)
			// Two messages first: each session's queue and spare slice
			// exist from then on (a one-time cost per session).
			f.publish()
			f.publish()
			before := f.frames()
			b.ReportAllocs()
			for b.Loop() {
				f.publish()
			}
			b.StopTimer()
			delivered := f.frames() - before
			if delivered != b.N*n {
				b.Fatalf("delivered %d frames, want %d", delivered, b.N*n)
			}
			b.ReportMetric(float64(delivered)/b.Elapsed().Seconds(), "deliveries/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(delivered), "ns/delivery")
		})
	}
}

// TestBroadcastAllocsDoNotGrowWithSubscribers proves the fan-out path has
// no per-subscriber allocation: a message to 10,000 subscribers allocates
// what a message to 10 does (the one shared frame).
func TestBroadcastAllocsDoNotGrowWithSubscribers(t *testing.T) {
	allocs := func(n int) float64 {
		f := newFanout(t, n)
		f.publish() // warm the queues: each session's spare slice exists
		f.publish()
		return testing.AllocsPerRun(50, f.publish)
	}
	small, large := allocs(10), allocs(10000)
	t.Logf("allocs per message: %v with 10 subscribers, %v with 10,000", small, large)
	if large > small {
		t.Errorf("allocs per message grow with subscribers: %v for 10, %v for 10,000", small, large)
	}
	if large > 1 {
		t.Errorf("allocs per message = %v, want at most 1 (the frame)", large)
	}
}

// BenchmarkAppendMessage measures encoding one message frame, done once
// per message per node.
func BenchmarkAppendMessage(b *testing.B) {
	m := &broker.Message{
		Channel: "prices:HRLD", Epoch: "a1b2c3d4e5f6", Offset: 1234567,
		Time: time.Now().UnixMilli(),
		Data: json.RawMessage(`{"price":101.25,"symbol":"HRLD","seq":123456}`),
	}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(AppendMessage(nil, m, false))))
	for b.Loop() {
		buf = AppendMessage(buf[:0], m, false)
	}
	_ = buf
}

// BenchmarkAppendMessageNew is AppendMessage as the hub calls it: into a
// fresh buffer sized for the frame (the one allocation per message).
func BenchmarkAppendMessageNew(b *testing.B) {
	m := &broker.Message{
		Channel: "prices:HRLD", Epoch: "a1b2c3d4e5f6", Offset: 1234567,
		Time: time.Now().UnixMilli(),
		Data: json.RawMessage(`{"price":101.25,"symbol":"HRLD","seq":123456}`),
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = AppendMessage(make([]byte, 0, messageCap(m)), m, false)
	}
}
