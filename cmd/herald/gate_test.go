package main

import (
	"io"
	"net"
	"sync"
	"testing"
)

// gate is a TCP proxy to a node that can be shut (refusing and resetting
// connections) and opened again: a network outage for the clients behind
// it, while the node itself stays up.
type gate struct {
	t      testing.TB
	ln     net.Listener
	target string
	mu     sync.Mutex
	shut   bool
}

func newGate(t testing.TB, target string) *gate {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{t: t, ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go g.serve()
	return g
}

func (g *gate) addr() string { return g.ln.Addr().String() }

func (g *gate) close() { g.mu.Lock(); g.shut = true; g.mu.Unlock() }
func (g *gate) open()  { g.mu.Lock(); g.shut = false; g.mu.Unlock() }

func (g *gate) serve() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		shut := g.shut
		g.mu.Unlock()
		if shut {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			continue
		}
		go g.pipe(c)
	}
}

func (g *gate) pipe(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", g.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
}
