package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/heraldpush/herald/push"
)

// TestSlowConsumer: a subscriber that stops reading is closed with 4001
// once its send queue is full, while a subscriber of the same channel that
// keeps reading gets every message, in order and without delay.
//
// The publisher keeps at most window messages in flight to the fast
// subscriber, less than its queue: the fast one can only be closed if the
// server holds its messages back, never because the test machine paused a
// goroutine for a few milliseconds while publishes piled up. The slow one
// gets the same stream and reads none of it.
func TestSlowConsumer(t *testing.T) {
	const (
		queueBytes = 64 << 10
		padBytes   = 8 << 10
		window     = 4                // messages in flight: 32 KiB < queueBytes
		maxTotal   = 64 << 20         // give up: the slow one was never closed
		maxLag     = 2 * time.Second  // publish to receipt, for the fast one
		drainWait  = 10 * time.Second // for the fast one to finish
	)
	cfg := e2eConfig()
	cfg.MaxQueueBytes = queueBytes
	n := startTestNode(t, cfg)

	// The slow client's small receive buffer stands for a slow link: the
	// kernel does not absorb megabytes before the queue fills.
	slow := n.dialWith(dialOptions{Query: query("channel", "stocks:HOT"), ReadBuffer: 32 << 10})
	slow.welcome()
	sub := slow.expect("subscribed")
	fast := n.dial(query("channel", "stocks:HOT"))
	fast.welcome()
	fast.expect("subscribed")

	type payload struct {
		Seq  int    `json:"seq"`
		Sent int64  `json:"sent"` // unix nanoseconds, set before the HTTP request
		End  bool   `json:"end,omitempty"`
		Pad  string `json:"pad,omitempty"`
	}
	type result struct {
		got    int
		maxLag time.Duration
		err    error
	}
	done := make(chan result, 1)
	progress := make(chan int, maxTotal/padBytes+16) // messages the fast one has read
	go func() {                                      // the fast subscriber: reads everything until the end marker
		var r result
		defer func() { done <- r }()
		last := sub.Offset
		for {
			_, b, err := fast.readRaw()
			if err != nil {
				r.err = fmt.Errorf("fast subscriber read after %d messages: %w", r.got, err)
				return
			}
			now := time.Now()
			var m struct {
				Type   string
				Offset uint64
				Data   payload
			}
			if err := json.Unmarshal(b, &m); err != nil || m.Type != "message" {
				r.err = fmt.Errorf("fast subscriber: unexpected frame %.200s (%v)", b, err)
				return
			}
			if m.Offset != last+1 || m.Data.Seq != r.got {
				r.err = fmt.Errorf("fast subscriber: message %d has seq %d offset %d after offset %d", r.got, m.Data.Seq, m.Offset, last)
				return
			}
			last = m.Offset
			r.got++
			progress <- r.got
			r.maxLag = max(r.maxLag, now.Sub(time.Unix(0, m.Data.Sent)))
			if m.Data.End {
				return
			}
		}
	}()

	fastGot := 0
	awaitFast := func(n int) {
		t.Helper()
		for fastGot < n {
			select {
			case fastGot = <-progress:
			case r := <-done:
				t.Fatalf("fast subscriber stopped: %v", r.err)
			case <-time.After(maxLag):
				t.Fatalf("fast subscriber stuck at %d messages for %v", fastGot, maxLag)
			}
		}
	}

	pad := strings.Repeat("x", padBytes)
	seq, total := 0, 0
	for {
		if n.core.Rejections()["slow_consumer"] > 0 {
			break
		}
		if total > maxTotal {
			t.Fatalf("published %d MiB and no subscriber was closed as slow", total>>20)
		}
		awaitFast(seq - window + 1)
		n.publish("stocks:HOT", payload{Seq: seq, Sent: time.Now().UnixNano(), Pad: pad})
		seq++
		total += padBytes
	}
	// The slow one reads again at once (the server gives a stuck socket a
	// short grace period for the close frame), concurrently with the fast
	// one finishing: a backlog that is a gap-free prefix of the stream,
	// then the close.
	type closed struct {
		backlog [][]byte
		err     error
	}
	slowDone := make(chan closed, 1)
	go func() {
		var r closed
		for {
			_, b, err := slow.readRaw()
			if err != nil {
				r.err = err
				slowDone <- r
				return
			}
			r.backlog = append(r.backlog, b)
		}
	}()
	n.publish("stocks:HOT", payload{Seq: seq, Sent: time.Now().UnixNano(), End: true})
	seq++

	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.got != seq {
			t.Fatalf("fast subscriber got %d messages, want %d", r.got, seq)
		}
		if r.maxLag > maxLag {
			t.Errorf("fast subscriber lagged up to %v behind publishers (bound %v): the slow one held it up", r.maxLag, maxLag)
		}
		t.Logf("%d messages (%d MiB); fast one's worst lag %v", seq, total>>20, r.maxLag)
	case <-time.After(drainWait):
		t.Fatalf("fast subscriber did not get all %d messages within %v", seq, drainWait)
	}

	var r closed
	select {
	case r = <-slowDone:
	case <-time.After(drainWait):
		t.Fatalf("slow subscriber neither closed nor got data for %v", drainWait)
	}
	var ce websocket.CloseError
	if !errors.As(r.err, &ce) || ce.Code != push.CloseSlowConsumer || !strings.Contains(ce.Reason, "slow") {
		t.Fatalf("slow subscriber ended with %v after %d messages, want close %d with a reason about a slow consumer",
			r.err, len(r.backlog), push.CloseSlowConsumer)
	}
	// Usually part of the stream is in its socket buffers; none is right
	// too if the close came before the server's writer ran at all.
	if len(r.backlog) >= seq {
		t.Errorf("slow subscriber read all %d messages before the close", seq)
	}
	for i, b := range r.backlog {
		var m struct {
			Type   string
			Offset uint64
		}
		if err := json.Unmarshal(b, &m); err != nil || m.Type != "message" || m.Offset != sub.Offset+uint64(i)+1 {
			t.Fatalf("slow subscriber backlog frame %d: %.200s, want message at offset %d", i, b, sub.Offset+uint64(i)+1)
		}
	}
	if slowClosed := n.core.Rejections()["slow_consumer"]; slowClosed != 1 {
		t.Errorf("%d sessions closed as slow, want exactly 1", slowClosed)
	}
}

// TestHeartbeat: a client that sends nothing is closed with 4002 after
// heartbeat_timeout; clients that answer (a JSON pong, or any frame, here
// a WebSocket ping) stay open across many timeouts.
func TestHeartbeat(t *testing.T) {
	const (
		heartbeat = 100 * time.Millisecond
		timeout   = 300 * time.Millisecond
		pings     = 12 // 1.2 s: four timeouts
	)
	cfg := e2eConfig()
	cfg.Heartbeat, cfg.HeartbeatTimeout = heartbeat, timeout
	n := startTestNode(t, cfg)

	// A dead peer: connected, but it neither reads nor writes, so it
	// answers neither JSON pings nor WebSocket pings (a client that reads
	// answers those by itself, as browsers do, and counts as alive).
	silent := n.dial("")
	opened := time.Now()

	ponger := n.dial("")
	if w := ponger.welcome(); w.HeartbeatMS != heartbeat.Milliseconds() {
		t.Errorf("welcome heartbeat_ms %d, want %d", w.HeartbeatMS, heartbeat.Milliseconds())
	}
	pinger := n.dial("")
	pinger.welcome()
	pingerDone := make(chan error, 1)
	go func() { // answers each JSON ping with a WebSocket ping
		got := 0
		for got < pings {
			_, b, err := pinger.readRaw()
			if err != nil {
				pingerDone <- fmt.Errorf("after %d pings: %w", got, err)
				return
			}
			if string(b) != `{"type":"ping"}` {
				pingerDone <- fmt.Errorf("unexpected frame %s", b)
				return
			}
			got++
			go func() {
				// Ping waits for the pong, which this loop reads.
				ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
				defer cancel()
				_ = pinger.conn.Ping(ctx)
			}()
		}
		pingerDone <- nil
	}()

	for i := 0; i < pings; i++ {
		ponger.expect("ping")
		ponger.sendText(`{"type":"pong"}`)
	}
	if err := <-pingerDone; err != nil {
		t.Fatalf("client answering with WebSocket pings: %v", err)
	}
	// Both lived through four timeouts and still work.
	ponger.subscribe("alive")
	pinger.subscribe("alive")

	waitFor(t, 5*time.Second, "the silent client to be closed for no pong", func() bool {
		return n.core.Rejections()["no_pong"] >= 1
	})
	after := time.Since(opened)
	// Reading now, the client library first answers the buffered pings
	// on the closed socket and fails there, before it reaches the close
	// frame; so the close code is checked on the server's side.
	for {
		if _, _, err := silent.readRaw(); err != nil {
			break
		}
	}
	waitFor(t, readTimeout, "the close to be counted", func() bool { return n.core.Snapshot().Closes["no_pong"] == 1 })
	if after < timeout || after > 2*time.Second {
		t.Errorf("silent client closed %v after connecting, want between %v and 2s", after, timeout)
	}
	if n := n.core.Rejections()["no_pong"]; n != 1 {
		t.Errorf("%d clients closed for no pong, want only the silent one", n)
	}
}
