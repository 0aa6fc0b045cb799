package e2e

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// cutProxy is a TCP proxy in front of a node, for network failures that
// leave the node up: cut resets every live connection, hold refuses new
// ones, freeze turns live connections into a dead path that TCP does not
// notice (nothing passes, nothing closes) so that only heartbeats can
// find it.
type cutProxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu     sync.Mutex
	refuse bool
	conns  map[*proxyConn]struct{}
}

type proxyConn struct {
	client, server net.Conn
	frozen         atomic.Bool
	ended          atomic.Int32 // directions that have ended
}

func newCutProxy(t testing.TB, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, target: target, conns: map[*proxyConn]struct{}{}}
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

// hold makes the proxy refuse (reset) new connections, or accept them again.
func (p *cutProxy) hold(refuse bool) {
	p.mu.Lock()
	p.refuse = refuse
	p.mu.Unlock()
}

// cut resets every live connection, as a failing network would.
func (p *cutProxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[*proxyConn]struct{}{}
	p.mu.Unlock()
	for pc := range conns {
		reset(pc.client)
		reset(pc.server)
	}
}

// freeze makes every live connection carry nothing from now on, in either
// direction, and never close by itself. New connections work normally.
func (p *cutProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pc := range p.conns {
		pc.frozen.Store(true)
	}
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse
		p.mu.Unlock()
		if refuse {
			reset(c)
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			reset(c)
			continue
		}
		pc := &proxyConn{client: c, server: up}
		p.mu.Lock()
		p.conns[pc] = struct{}{}
		p.mu.Unlock()
		go p.pipe(pc, up, c)
		go p.pipe(pc, c, up)
	}
}

// pipe copies src to dst. When src ends, dst's sending side ends too (a
// server's close handshake goes FIN first, then waits for the client's
// answer) and once both directions have ended both sockets are closed;
// unless the connection is frozen: a dead path carries no close either.
func (p *cutProxy) pipe(pc *proxyConn, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pc.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if pc.frozen.Load() {
		return // cut or cleanup closes it
	}
	if tc, ok := dst.(*net.TCPConn); ok && pc.ended.Add(1) == 1 && tc.CloseWrite() == nil {
		return // the other direction closes both when it ends
	}
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
	_ = pc.client.Close()
	_ = pc.server.Close()
}
