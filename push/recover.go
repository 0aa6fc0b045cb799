package push

import (
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// A panic on a goroutine that serves one connection must end that
// connection, not the process: an unrecovered panic on any goroutine exits
// the program and drops every client of the node. Each per-connection
// goroutine (the WebSocket read loop with the handlers it calls, the
// session's writer, the HTTP handlers of SSE and long-poll through the
// api package's middleware) recovers, closes its connection with 1011,
// counts the panic and logs it with its stack. docs/security.md says why.

// recoveredPanics counts the panics recovered on connection goroutines,
// process-wide (the /echo endpoint has no node): a process health figure,
// like the goroutine count. It should stay 0; anything else is a bug to
// report.
var recoveredPanics atomic.Uint64

// RecoveredPanics returns how many panics on connection goroutines were
// recovered since the process started (metric herald_panics_recovered_total).
func RecoveredPanics() uint64 { return recoveredPanics.Load() }

// CountPanic counts a panic recovered outside this package (the api
// package's HTTP handlers).
func CountPanic() { recoveredPanics.Add(1) }

const internalErrorReason = "internal error"

// logPanic counts and logs a recovered panic with its stack.
func logPanic(log *slog.Logger, where string, v any, attrs ...any) {
	recoveredPanics.Add(1)
	attrs = append(attrs, "where", where, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	log.Error("panic recovered: the connection is closed with 1011, the node goes on", attrs...)
}

// readLoop runs gws's read loop of a /ws connection. A panic in it (in
// gws's parser or in a handler it calls) would have ended the process;
// here it ends the connection: the session's writer sends 1011 and closes
// the socket, and the cleanup OnClose would have done runs now, since the
// read loop that calls it is gone.
func (srv *Server) readLoop(c *gws.Conn) {
	// The deferred call is a method, not a closure, and does the work:
	// this frame sits under every parked read of an idle connection,
	// which must fit in 2 KB of stack (issue 14).
	defer srv.endReader(c)
	c.ReadLoop()
}

// endReader is readLoop's deferred call: nothing when the loop ended
// normally, the 1011 close and OnClose's cleanup after a panic.
func (srv *Server) endReader(c *gws.Conn) {
	v := recover()
	if v == nil {
		return
	}
	s := sessionOf(c)
	logPanic(srv.node.log, "ws reader", v, "client", s.id, "remote", c.RemoteAddr().String())
	s.closeAsync(CloseInternal, internalErrorReason)
	// Nobody reads the socket any more, so nobody sees the client's
	// close answer: the writer's linger closes it, and this in case
	// the writer was done already.
	time.AfterFunc(2*closeLinger, func() { _ = c.NetConn().Close() })
	hd := &handler{node: srv.node, ips: srv.ips}
	func() {
		defer func() {
			if v := recover(); v != nil {
				logPanic(srv.node.log, "ws cleanup", v, "client", s.id)
			}
		}()
		hd.OnClose(c, &gws.CloseError{Code: CloseInternal, Reason: []byte(internalErrorReason)})
	}()
}

// closeOnce reports whether this is the first cleanup of the connection:
// OnClose runs once, whether gws calls it or readLoop after a panic
// (which may have been in OnClose itself).
func (sl *slot) closeOnce() bool { return sl.cleaned.CompareAndSwap(false, true) }

// catchWriterPanic is deferred by the session's writer (writeOut). The
// writer holds the transport, so it is what closes it: the session is
// marked closed, then the transport sends 1011 and ends the connection; its
// reader side sees the socket close and cleans up as always.
func (s *Session) catchWriterPanic() {
	v := recover()
	if v == nil {
		return
	}
	logPanic(s.node.log, "writer", v, "client", s.id)
	s.mu.Lock()
	s.closed, s.closing = true, false
	s.mu.Unlock()
	s.closeCode.CompareAndSwap(0, CloseInternal)
	defer func() {
		if v := recover(); v != nil {
			logPanic(s.node.log, "writer close", v, "client", s.id)
			if t, ok := s.t.(*wsTransport); ok {
				_ = t.gwsConn.Close()
			}
		}
	}()
	s.t.Close(CloseInternal, internalErrorReason)
}

// echoReadLoop runs the read loop of an /echo connection: a panic closes
// that connection with 1011.
func echoReadLoop(c *gws.Conn) {
	defer func() {
		if v := recover(); v != nil {
			logPanic(slog.Default(), "echo reader", v, "remote", c.RemoteAddr().String())
			_ = c.WriteClose(CloseInternal, []byte(internalErrorReason))
			_ = c.NetConn().Close()
		}
	}()
	c.ReadLoop()
}

// guardConn puts a frameGuard between the socket nc and gws's reader: the
// reader it returns feeds gws, and start arms the guard once gws's
// connection exists (before its read loop runs). A bad header is counted
// (bad_frame; frame_too_big is counted by OnClose on 1009) and closes the
// connection through gws, which sends the close frame the way it sends
// its own protocol errors.
func guardConn(nc net.Conn, maxFrame int, deflate bool, n *Node) (g *frameGuard, start func(c *gws.Conn)) {
	g = &frameGuard{Conn: nc, max: uint64(max(maxFrame, 0)), deflate: deflate}
	g.useRaw()
	return g, func(c *gws.Conn) {
		g.fail = func(code uint16, reason string) {
			if n != nil && code == CloseProtocol {
				n.countRejection(ReasonBadFrame)
			}
			_ = c.WriteClose(code, []byte(reason))
		}
	}
}
