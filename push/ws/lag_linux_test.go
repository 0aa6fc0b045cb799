package ws

import (
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
)

// dataSegmentsIn is how many TCP segments with data the client end c has
// received (tcpi_data_segs_in): on loopback, one per write of the server
// while the client's window is open.
func dataSegmentsIn(t testing.TB, c *rawWS) uint32 {
	t.Helper()
	rc, err := c.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ti *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) { ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	return ti.Data_segs_in
}

// A client that stops reading costs a few writes before its socket is
// full, not one per message (lag.go): its window fills from writes held
// back and gathered. 110-byte messages at 50 a second fill the 4 KiB
// window in 37-39 writes of one message each, which the node used to make
// (39 data segments received here with lag detection turned off); now 11
// to 19 (issue 12 item 4). A reader on the same channel gets every
// message and is not closed.
func TestStalledClientCostsFewWrites(t *testing.T) {
	n := startTestNode(t, push.Options{MaxQueueBytes: 8 << 20, WriteTimeout: time.Second})
	stalled := n.dialStalled(t, "/ws?channel=feed")
	r := &rawReader{ws: n.dialReader(t, "/ws?channel=feed")}
	_ = r.ws.SetDeadline(time.Time{})
	waitUntil(t, 10*time.Second, "both subscribed", func() bool { _, _, subs := n.hub.Counts(); return subs == 2 })
	var wg sync.WaitGroup
	wg.Add(1)
	go r.run(&wg)
	data := []byte(`"` + strings.Repeat("x", 70) + `"`)
	sent := 0
	tk := time.NewTicker(20 * time.Millisecond) // the feed's rate, not a wait
	defer tk.Stop()
	end := time.Now().Add(time.Minute)
	for slowClosed(n.hub) == 0 {
		if time.Now().After(end) {
			t.Fatalf("the stalled client not closed 4001 after %d messages", sent)
		}
		if _, err := n.hub.Broker().Publish(t.Context(), "feed", data, broker.Retention{}); err != nil {
			t.Fatal(err)
		}
		sent++
		<-tk.C
	}
	segs := dataSegmentsIn(t, stalled)
	waitUntil(t, 10*time.Second, "the reader got every message", func() bool { return r.msgs.Load() == int64(sent) || r.closed.Load() != nil })
	if why := r.closed.Load(); why != nil {
		t.Fatalf("reader closed after %d of %d messages: %v", r.msgs.Load(), sent, why)
	}
	t.Logf("%d messages; the stalled client received %d data segments before its 4001", sent, segs)
	if got := n.hub.Snapshot().Lagging; got < 1 {
		t.Errorf("lagging_clients %d, want the stalled client counted", got)
	}
	if segs > 27 {
		t.Errorf("the stalled client received %d data segments (writes) before its 4001, want at most 27", segs)
	}
	r.ws.Close()
	wg.Wait()
}
