package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
)

// serverFrame encodes an unmasked frame as a server sends it.
func serverFrame(op byte, payload []byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func messageFrame(offset uint64, sent int64, pad int) []byte {
	data := fmt.Sprintf(`{"t":%d,"pad":"%s"}`, sent, strings.Repeat("x", pad))
	return push.AppendMessage(nil, &broker.Message{Channel: "c", Offset: offset, Epoch: "e", Data: []byte(data)}, false)
}

// loadStream is what a subscriber reads: the subscribe reply (offset 4),
// offsets 5 and 6, a batch=1 frame holding 7, 8 and 9, a gap (11 after
// 9), a duplicate of 11, frames with 16- and 64-bit lengths (12, 13), a
// WebSocket ping, a JSON ping and a throttled subscription's frame (16,
// "skipped": 2: not a loss).
func loadStream(sent int64) []byte {
	var s []byte
	s = append(s, serverFrame(opText, []byte(`{"type":"subscribed","channel":"c","offset":4,"epoch":"e"}`))...)
	s = append(s, serverFrame(opText, messageFrame(5, sent, 0))...)
	s = append(s, serverFrame(opText, messageFrame(6, sent, 0))...)
	batch := bytes.Join([][]byte{messageFrame(7, sent, 0), messageFrame(8, sent, 0), messageFrame(9, sent, 0)}, []byte("\n"))
	s = append(s, serverFrame(opText, batch)...)
	s = append(s, serverFrame(opText, messageFrame(11, sent, 0))...)
	s = append(s, serverFrame(opText, messageFrame(11, sent, 0))...)
	s = append(s, serverFrame(opText, messageFrame(12, sent, 300))...)
	s = append(s, serverFrame(opPing, []byte("hb"))...)
	s = append(s, serverFrame(opText, messageFrame(13, sent, 70_000))...)
	s = append(s, serverFrame(opText, []byte(`{"type":"ping"}`))...)
	skipping := messageFrame(16, sent, 0)
	skipping = append(skipping[:len(skipping)-1], `,"skipped":2}`...)
	s = append(s, serverFrame(opText, skipping)...)
	return s
}

// testLoadConn is a connection on one end of a socket pair; the test
// writes the server's side and reads the replies on the other end.
func testLoadConn(t *testing.T, run *loadRun) (*loadConn, int) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	return &loadConn{run: run, fd: fds[0], epfd: -1, ready: make(chan error, 1)}, fds[1]
}

// readClientFrame reads one masked frame from fd and unmasks it.
func readClientFrame(t *testing.T, fd int) (op byte, payload []byte) {
	t.Helper()
	var b [6 + 125]byte
	n, err := unix.Read(fd, b[:6])
	if err != nil || n != 6 || b[1]&0x80 == 0 {
		t.Fatalf("client frame header %x (%v): want 6 bytes, masked", b[:max(n, 0)], err)
	}
	size := int(b[1] & 0x7f)
	if n, err = unix.Read(fd, b[6:6+size]); n != size {
		t.Fatalf("client frame payload: %d of %d bytes (%v)", n, size, err)
	}
	for i := range size {
		b[6+i] ^= b[2+i%4]
	}
	return b[0] & 0x0f, b[6 : 6+size]
}

// TestLoadConnFrames writes the stream whole, cut in two at every byte,
// and a byte at a time (sparser within the long frame), and reads it with
// readable through a small buffer (frames longer than half of it grow in
// pending): the counts, the
// latencies and the replies must not depend on where the reads end.
func TestLoadConnFrames(t *testing.T) {
	start := time.Now()
	sent := start.Add(-time.Millisecond).UnixNano()
	stream := loadStream(sent)
	buf := make([]byte, 1024)
	run := &loadRun{} // one for all: a histogram is large
	feed := func(t *testing.T, cuts ...int) {
		c, peer := testLoadConn(t, run)
		delivered, lost, dups, skipped := run.delivered.Load(), run.lost.Load(), run.dups.Load(), run.skipped.Load()
		last := 0
		for _, cut := range append(cuts, len(stream)) {
			if _, err := unix.Write(peer, stream[last:cut]); err != nil {
				t.Fatal(err)
			}
			last = cut
			for {
				unread, err := unix.IoctlGetInt(c.fd, unix.SIOCINQ)
				if err != nil {
					t.Fatal(err)
				}
				if unread == 0 {
					break
				}
				c.readable(buf)
			}
		}
		delivered, lost, dups, skipped = run.delivered.Load()-delivered, run.lost.Load()-lost, run.dups.Load()-dups, run.skipped.Load()-skipped
		if delivered != 10 || lost != 1 || dups != 1 || skipped != 2 || c.next != 17 {
			t.Fatalf("cuts %v: delivered %d lost %d dups %d skipped %d next %d, want 10, 1, 1, 2, 17",
				cuts, delivered, lost, dups, skipped, c.next)
		}
		if len(c.pending) != 0 || c.dead || <-c.ready != nil {
			t.Fatalf("cuts %v: %d bytes pending, dead %v", cuts, len(c.pending), c.dead)
		}
		if op, p := readClientFrame(t, peer); op != opPong || string(p) != "hb" {
			t.Fatalf("cuts %v: answered the ping with %#x %q", cuts, op, p)
		}
		if op, p := readClientFrame(t, peer); op != opText || string(p) != `{"type":"pong"}` {
			t.Fatalf("cuts %v: answered the JSON ping with %#x %q", cuts, op, p)
		}
	}
	feed(t)
	long := bytes.Index(stream, []byte(`"offset":13`))
	for cut := 1; cut < len(stream); cut++ {
		if cut > long {
			cut += 997
		}
		feed(t, min(cut, len(stream)-1))
	}
	var each []int
	for i := 1; i < len(stream); i++ {
		if i > long {
			i += 97
		}
		each = append(each, min(i, len(stream)-1))
	}
	feed(t, each...)
	// Sent 1ms before the test started, read during it. The bound is the
	// elapsed time in fractions of a millisecond: truncated to whole ones
	// it fell below the slowest latency whenever the test ran long.
	if q := run.latency.quantiles(1e-9, 1); q[0] < 1 || q[1] > float64(time.Since(start))/float64(time.Millisecond)+1 {
		t.Errorf("latencies from %vms to %vms", q[0], q[1])
	}
}

// TestNextFrameRefuses: a masked, fragmented or compressed frame, or one
// announcing an absurd length, is an error, not a wait for more bytes.
func TestNextFrameRefuses(t *testing.T) {
	for _, b := range [][]byte{
		{0x81, 0x82, 1, 2, 3, 4, 'h', 'i'}, // masked
		{0x01, 0x02, 'h', 'i'},             // not final
		{0xc1, 0x02, 'h', 'i'},             // RSV1: compressed
		{0x81, 127, 0xff, 0, 0, 0, 0, 0, 0, 0},
	} {
		if _, _, n, err := nextFrame(b); err == nil {
			t.Errorf("% x: n %d, no error", b, n)
		}
	}
}

// serverCPU reads this process's own CPU time, which grows as it works
// (linux: /proc).
func TestServerCPU(t *testing.T) {
	self := []int{os.Getpid()}
	before := serverCPU(self)
	if before < 0 {
		t.Fatal("cannot read this process's CPU time")
	}
	// Spin until the kernel has counted a tick more, or give up.
	after := before
	for end := time.Now().Add(10 * time.Second); after <= before && time.Now().Before(end); {
		after = serverCPU(self)
	}
	if after <= before {
		t.Fatalf("CPU seconds stayed at %v through 10s of spinning", before)
	}
	if serverCPU(nil) != -1 || serverCPU([]int{-5}) != -1 {
		t.Error("no pid, or one without /proc, must read -1")
	}
}
