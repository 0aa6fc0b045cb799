package e2e

import (
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// slowLink is a TCP proxy in front of a node whose server-to-client
// direction carries at most rate bytes a second: a browser on a slow
// mobile link, for every protocol (Chromium's own throttling leaves
// WebSocket frames alone in some versions). The proxy's socket towards
// the node has a small receive buffer, so that the node sees the link's
// pace instead of a kernel buffer that hides it.
type slowLink struct {
	ln     net.Listener
	target string
	rate   int

	mu    sync.Mutex
	conns []net.Conn
}

func newSlowLink(t testing.TB, target string, rate int) *slowLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &slowLink{ln: ln, target: target, rate: rate}
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, c := range l.conns {
			c.Close()
		}
	})
	go l.serve()
	return l
}

func (l *slowLink) addr() string { return l.ln.Addr().String() }

func (l *slowLink) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		// The small receive buffer is set before connecting: set after,
		// the window the SYN offered (64 KiB on loopback) stays open
		// until filled, and that much of the node's frames sat in the
		// proxy, seconds of the link's rate, in front of a close frame
		// the client then did not get within the node's linger.
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { setRecvBuffer(fd, 4<<10) })
		}}
		up, err := d.Dial("tcp", l.target)
		if err != nil {
			c.Close()
			continue
		}
		l.mu.Lock()
		l.conns = append(l.conns, c, up)
		l.mu.Unlock()
		go l.pipe(up, c, 0)      // client -> node: not limited
		go l.pipe(c, up, l.rate) // node -> client: the slow side
	}
}

// pipe copies src to dst; rate > 0 paces it to rate bytes a second, in
// chunks of a tenth of that. The pauses are the link's speed, not waits
// for a condition.
func (l *slowLink) pipe(dst, src net.Conn, rate int) {
	defer dst.Close()
	defer src.Close()
	chunk := 32 << 10
	if rate > 0 {
		chunk = max(rate/10, 512)
	}
	buf := make([]byte, chunk)
	start, sent := time.Now(), 0
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			sent += n
			if rate > 0 {
				due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
				time.Sleep(time.Until(due))
			}
		}
		if err != nil {
			return
		}
	}
}
