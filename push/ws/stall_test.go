//go:build linux

package ws

import (
	"context"
	"encoding/binary"
	"fmt"
	"github.com/heraldpush/herald/push"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// dialStalled opens a WebSocket on path whose client will not read: its
// receive buffer is as small as the kernel allows, so that the node's
// send buffer (send_buffer_bytes) is what fills.
func (n *testNode) dialStalled(t testing.TB, path string) *rawWS {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", n.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return n.handshake(t, c, path)
}

// publishUntil publishes 1 KiB messages on channel, one per tick, until
// done or the deadline, and returns how many it published.
func publishUntil(t testing.TB, h *push.Node, channel string, tick time.Duration, deadline time.Duration, done func() bool) int {
	t.Helper()
	data := []byte(`"` + strings.Repeat("x", 1022) + `"`)
	tk := time.NewTicker(tick) // the publish rate, not a wait
	defer tk.Stop()
	end := time.Now().Add(deadline)
	n := 0
	for !done() {
		if time.Now().After(end) {
			t.Fatalf("not done after %v and %d messages", deadline, n)
		}
		if _, err := h.Broker().Publish(context.Background(), channel, data, broker.Retention{}); err != nil {
			t.Fatal(err)
		}
		n++
		<-tk.C
	}
	return n
}

func slowClosed(h *push.Node) uint64 { return h.Rejections()["slow_consumer"] }

// A client that stops reading is closed 4001 once its queue passes
// max_queue_bytes; if it resumes reading within the linger time it reads
// what was buffered and then the 4001 close frame (it used to get the
// buffered bytes and then EOF).
func TestStalledClientThatResumesSees4001(t *testing.T) {
	n := startTestNode(t, push.Options{MaxQueueBytes: 64 << 10})
	c := n.dialStalled(t, "/ws?channel=news")
	publishUntil(t, n.hub, "news", time.Millisecond, 30*time.Second, func() bool { return slowClosed(n.hub) == 1 })
	// The client stays away 3 s after its close (past the writer's 1 s,
	// within the linger): this pause is the scenario, not a wait.
	time.Sleep(3 * time.Second)
	_ = c.SetReadDeadline(time.Now().Add(stalledCloseLinger))
	code, reason, ok := c.closeCode()
	if !ok || code != push.CloseSlowConsumer {
		t.Fatalf("after resuming: close %d %q (close frame: %v), want %d", code, reason, ok, push.CloseSlowConsumer)
	}
}

// rawReader counts the messages a reading client gets.
type rawReader struct {
	ws     *rawWS
	msgs   atomic.Int64
	closed atomic.Value // string: why the connection ended
}

func (r *rawReader) run(wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		op, p, err := r.ws.readFrame()
		switch {
		case err != nil:
			r.closed.Store(err.Error())
			return
		case op == 0x8:
			r.closed.Store(fmt.Sprintf("close %d %q", binary.BigEndian.Uint16(p), p[2:]))
			return
		case op == 0x1 && strings.HasPrefix(string(p), `{"type":"message"`):
			r.msgs.Add(1)
		}
	}
}

// TestStalledBesideReaders (issue 12 item 4, at CI scale): 2,000 clients
// that never read and 20 that do, all on one channel. Every stalled one
// is closed 4001 and its connection gone within the documented time after
// its close (1 s of Interrupt, stalledCloseLinger, closeLinger); no
// reader is closed, and each gets every message.
func TestStalledBesideReaders(t *testing.T) {
	if raceEnabled {
		// Under -race on 2 cores, the readers (goroutines of this very
		// process) can go unscheduled long enough that the writers find
		// their sockets full: about half the runs closed a reader 4001.
		// .ci/run runs this test in a step of its own without -race,
		// where it passed every run (~7 s). The readers' exposure to
		// stalls is a known open point (issue 12 item 4, the p99 figure).
		t.Skip("runs without -race: .ci/run's stalled-subscribers step")
	}
	const stalled, readers = 2000, 20
	n := startTestNode(t, push.Options{MaxQueueBytes: 64 << 10})
	var wg sync.WaitGroup
	rs := make([]*rawReader, readers)
	for i := range rs {
		rs[i] = &rawReader{ws: n.dialRaw(t, "/ws?channel=feed")}
		_ = rs[i].ws.SetDeadline(time.Time{})
	}
	for range stalled {
		n.dialStalled(t, "/ws?channel=feed")
	}
	waitUntil(t, 30*time.Second, "every connection subscribed", func() bool {
		_, _, subs := n.hub.Counts()
		return subs == stalled+readers
	})
	for _, r := range rs {
		wg.Add(1)
		go r.run(&wg)
	}
	start := time.Now()
	base, peak := tcpMemBytes(), int64(0)
	sent := publishUntil(t, n.hub, "feed", 2*time.Millisecond, 2*time.Minute, func() bool {
		peak = max(peak, tcpMemBytes())
		return slowClosed(n.hub) == stalled
	})
	closedAt := time.Since(start)
	// Each stalled connection is gone (its reader side saw the socket
	// close) within the linger time after the last close was counted.
	limit := time.Second + stalledCloseLinger + closeLinger + 2*time.Second
	waitUntil(t, limit, "the stalled connections gone", func() bool { return sessionCount(n.hub) == readers })
	goneAt := time.Since(start)
	for i, r := range rs {
		waitUntil(t, 10*time.Second, "reader got every message", func() bool { return r.msgs.Load() == int64(sent) || r.closed.Load() != nil })
		if why := r.closed.Load(); why != nil {
			t.Fatalf("reader %d closed after %d of %d messages: %v", i, r.msgs.Load(), sent, why)
		}
	}
	if got := n.hub.Snapshot().Closes["slow_consumer"]; got != stalled {
		t.Errorf("slow_consumer closes %d, want %d", got, stalled)
	}
	t.Logf("%d messages of 1 KiB; all %d stalled clients closed 4001 after %v, their connections gone after %v; %d readers got all",
		sent, stalled, closedAt.Round(time.Millisecond), goneAt.Round(time.Millisecond), readers)
	// Machine-wide (other processes' sockets count too), so it is a
	// figure to read, not one to assert on a shared machine.
	t.Logf("kernel TCP memory (/proc/net/sockstat, both ends on this machine): %d MiB before, peak %d MiB: %d KiB per stalled client",
		base>>20, peak>>20, (peak-base)/stalled>>10)
	for _, r := range rs {
		r.ws.Close()
	}
	wg.Wait()
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tcpMemBytes is the kernel's TCP buffer memory, machine-wide (Linux).
func tcpMemBytes() int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "TCP:") {
			continue
		}
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "mem" {
				pages, _ := strconv.ParseInt(f[i+1], 10, 64)
				return pages * int64(os.Getpagesize())
			}
		}
	}
	return 0
}
