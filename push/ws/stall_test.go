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

// A client that stops reading on a feed too quiet to fill its queue is
// closed 4001 too, once its socket has not taken what waits for it within
// write_timeout (it used to be cut without a close frame); if it resumes
// within the linger time it reads the 4001 and its reason.
func TestStalledOnAQuietFeedSees4001(t *testing.T) {
	const writeTimeout = time.Second
	n := startTestNode(t, push.Options{MaxQueueBytes: 8 << 20, WriteTimeout: writeTimeout})
	c := n.dialStalled(t, "/ws?channel=news")
	waitUntil(t, 10*time.Second, "subscribed", func() bool { _, _, subs := n.hub.Counts(); return subs == 1 })
	start := time.Now()
	sent := publishUntil(t, n.hub, "news", 5*time.Millisecond, 30*time.Second, func() bool { return slowClosed(n.hub) == 1 })
	took := time.Since(start)
	// 200 KiB/s: the socket is full within a fraction of a second, and
	// the queue (8 MiB) is nowhere near full when write_timeout passes.
	if took > writeTimeout+5*time.Second {
		t.Errorf("closed %v after the first message (%d of 1 KiB), want about write_timeout (%v) after its socket filled", took, sent, writeTimeout)
	}
	_ = c.SetReadDeadline(time.Now().Add(stalledCloseLinger))
	code, reason, ok := c.closeCode()
	if !ok || code != push.CloseSlowConsumer || reason != push.NotReadingReason {
		t.Fatalf("after resuming: close %d %q (close frame: %v), want %d %q", code, reason, ok, push.CloseSlowConsumer, push.NotReadingReason)
	}
	t.Logf("closed 4001 %v after the first of %d messages", took.Round(time.Millisecond), sent)
}

// dialReader opens a WebSocket on path for a client that reads, with a
// 2 MiB receive buffer (see TestStalledBesideReaders).
func (n *testNode) dialReader(t testing.TB, path string) *rawWS {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2<<20)
		})
	}}
	c, err := d.Dial("tcp", n.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return n.handshake(t, c, path)
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
// its close (1 s of Interrupt, stalledCloseLinger and its spread of up to
// 1 s, closeLinger); no reader is closed, and each gets every message.
//
// The readers keep a 2 MiB receive buffer (what Linux's autotuning grows a
// fast reader's to anyway): this process's goroutines, the readers among
// them, can go unscheduled for a second on a shared 2-core machine, and a
// reader that reads nothing for that long at 500 KiB/s is a slow consumer
// by any measure. A server that stopped writing to them would still
// overflow their queues.
func TestStalledBesideReaders(t *testing.T) {
	if raceEnabled {
		// Under -race on the loaded 2-core machine about one run in five
		// failed: some readers and stalled clients (17 and 37 of one run)
		// ended without a close code (closes "abnormal") before every
		// stalled one was closed; with send_lowat_bytes at 4 KiB, 2 runs
		// in 7 closed a reader 4001 after 14-20 messages, most likely
		// its ACKs late under the race detector's load: 10 segments of
		// congestion window in flight, then 4 KiB unsent, and it counted
		// as stalled while its 64 KiB queue filled (not confirmed). .ci/run
		// runs this test without -race in a step of its own, where it
		// passes.
		t.Skip("runs without -race: .ci/run's stalled-subscribers step")
	}
	const stalled, readers = 2000, 20
	n := startTestNode(t, push.Options{MaxQueueBytes: 64 << 10})
	var wg sync.WaitGroup
	rs := make([]*rawReader, readers)
	for i := range rs {
		rs[i] = &rawReader{ws: n.dialReader(t, "/ws?channel=feed")}
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
	giveUp := time.Now().Add(2 * time.Minute)
	sent := publishUntil(t, n.hub, "feed", 2*time.Millisecond, 3*time.Minute, func() bool {
		peak = max(peak, tcpMemBytes())
		if time.Now().After(giveUp) {
			// Say how the connections ended, not just that it took long.
			for i, r := range rs {
				if why := r.closed.Load(); why != nil {
					t.Logf("reader %d ended: %v", i, why)
				}
			}
			t.Fatalf("after 2 minutes %d of %d stalled closed 4001; %d sessions left; closes %v",
				slowClosed(n.hub), stalled, sessionCount(n.hub), n.hub.Snapshot().Closes)
		}
		return slowClosed(n.hub) >= stalled // more: a reader was closed, reported below
	})
	closedAt := time.Since(start)
	// Each stalled connection is gone (its reader side saw the socket
	// close) within the linger time after the last close was counted.
	limit := time.Second + stalledCloseLinger + time.Second + closeLinger + 2*time.Second
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

// A client that stops reading counts as stalled once the kernel holds
// about send_lowat_bytes for it unsent (TCP_NOTSENT_LOWAT), not once the
// whole send buffer (64 KiB) is full: what each stalled client costs the
// writers and the kernel before the queue limit acts (issue 12 item 4).
// The server socket's send queue is read from /proc/net/tcp; with the
// client's window closed, nearly all of it is unsent.
func TestStalledAtSendLowat(t *testing.T) {
	n := startTestNode(t, push.Options{MaxQueueBytes: 1 << 20}) // not closed while we look
	c := n.dialStalled(t, "/ws?channel=news")
	waitUntil(t, 10*time.Second, "subscribed", func() bool { _, _, subs := n.hub.Counts(); return subs == 1 })
	server := n.srv.Listener.Addr().(*net.TCPAddr).Port
	client := c.LocalAddr().(*net.TCPAddr).Port
	// Publish until the kernel stops taking more for this client: its
	// send queue unchanged over 60 messages, looked at every 20 (reading
	// /proc/net/tcp takes a while on a busy machine).
	last, same, i := -1, 0, 0
	sent := publishUntil(t, n.hub, "news", time.Millisecond, time.Minute, func() bool {
		if i++; i%20 != 0 {
			return false
		}
		q := sendQueue(t, server, client)
		if q == last {
			same++
		} else {
			last, same = q, 0
		}
		return same >= 3
	})
	t.Logf("after %d messages of 1 KiB the kernel holds %d bytes for the stalled client", sent, last)
	if last < DefaultSendLowat/2 || last > DefaultSendLowat+8192 {
		t.Errorf("send queue of a stalled client: %d bytes, want about %d (send_lowat_bytes)", last, DefaultSendLowat)
	}
}

// sendQueue is the tx_queue of the loopback TCP socket from local port
// lport to rport (/proc/net/tcp, hex); -1 when not found.
func sendQueue(t testing.TB, lport, rport int) int {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(":%04X", lport)
	peer := fmt.Sprintf(":%04X", rport)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasSuffix(f[1], want) || !strings.HasSuffix(f[2], peer) {
			continue
		}
		tx, _, _ := strings.Cut(f[4], ":")
		q, err := strconv.ParseInt(tx, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		return int(q)
	}
	return -1
}
