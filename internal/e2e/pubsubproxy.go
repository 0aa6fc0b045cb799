package e2e

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// pubsubProxy is a TCP proxy in front of a real redis-server that can
// hold the pub/sub connections only: a connection becomes a pub/sub one
// when it sends SUBSCRIBE, and while held nothing passes on it in either
// direction (its bytes wait in the proxy and the kernel), while every
// other connection (publishes, history, pings of readiness) goes on. It is
// a node's pub/sub connection paused, which neither side notices until a
// ping goes unanswered. Released, what waited is delivered.
type pubsubProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cond  *sync.Cond // signalled when held changes
	held  bool
	subs  int // connections that subscribed, ever
	conns map[net.Conn]struct{}
}

// subscribers is how many connections have subscribed through the proxy.
func (p *pubsubProxy) subscribers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.subs
}

func newPubSubProxy(t testing.TB, target string) *pubsubProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pubsubProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() {
		ln.Close()
		p.hold(false)
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	go p.serve()
	return p
}

func (p *pubsubProxy) url() string { return "redis://" + p.ln.Addr().String() }

// hold pauses (true) or releases (false) every pub/sub connection, those
// opened later included.
func (p *pubsubProxy) hold(on bool) {
	p.mu.Lock()
	p.held = on
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *pubsubProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		var pubsub pubsubFlag
		go p.pipe(up, c, &pubsub, true)
		go p.pipe(c, up, &pubsub, false)
	}
}

// pubsubFlag records that a connection subscribed; the client-side pipe
// sets it, both read it.
type pubsubFlag struct {
	mu sync.Mutex
	on bool
}

func (f *pubsubFlag) get() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.on
}

func (f *pubsubFlag) set() {
	f.mu.Lock()
	f.on = true
	f.mu.Unlock()
}

// subscribeCmd is how SUBSCRIBE appears in RESP: a bulk string of its own.
var subscribeCmd = []byte("\r\nsubscribe\r\n")

// pipe copies src to dst; fromClient marks the direction that sends
// commands. A chunk on a held pub/sub connection waits for the release.
func (p *pubsubProxy) pipe(dst, src net.Conn, pubsub *pubsubFlag, fromClient bool) {
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient && !pubsub.get() && bytes.Contains(bytes.ToLower(buf[:n]), subscribeCmd) {
				pubsub.set()
				p.mu.Lock()
				p.subs++
				p.mu.Unlock()
			}
			if pubsub.get() {
				p.mu.Lock()
				for p.held {
					p.cond.Wait()
				}
				p.mu.Unlock()
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
