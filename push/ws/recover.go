package ws

import (
	"log/slog"
	"net"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/lxzan/gws"
)

// Panics on a connection's goroutines end that connection, not the
// process (push/recover.go says why). Here: the read loops of /ws and
// /echo, and the guard's close.

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
	push.LogPanic(srv.node.Logger(), "ws reader", v, "client", s.ID(), "remote", c.RemoteAddr().String())
	s.CloseAsync(push.CloseInternal, push.InternalErrorReason)
	// Nobody reads the socket any more, so nobody sees the client's
	// close answer: the writer's linger closes it, and this in case
	// the writer was done already.
	time.AfterFunc(2*closeLinger, func() { _ = c.NetConn().Close() })
	hd := srv.hd
	func() {
		defer func() {
			if v := recover(); v != nil {
				push.LogPanic(srv.node.Logger(), "ws cleanup", v, "client", s.ID())
			}
		}()
		hd.OnClose(c, &gws.CloseError{Code: push.CloseInternal, Reason: []byte(push.InternalErrorReason)})
	}()
}

// closeOnce reports whether this is the first cleanup of the connection:
// OnClose runs once, whether gws calls it or readLoop after a panic
// (which may have been in OnClose itself).
func (sl *slot) closeOnce() bool { return sl.cleaned.CompareAndSwap(false, true) }

// echoReadLoop runs the read loop of an /echo connection: a panic closes
// that connection with 1011.
func echoReadLoop(c *gws.Conn) {
	defer func() {
		if v := recover(); v != nil {
			push.LogPanic(slog.Default(), "echo reader", v, "remote", c.RemoteAddr().String())
			_ = c.WriteClose(push.CloseInternal, []byte(push.InternalErrorReason))
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
func guardConn(nc net.Conn, maxFrame int, deflate bool, n *push.Node) (g *frameGuard, start func(c *gws.Conn)) {
	g = &frameGuard{Conn: nc, max: uint64(max(maxFrame, 0)), deflate: deflate}
	g.useRaw()
	return g, func(c *gws.Conn) {
		g.fail = func(code uint16, reason string) {
			if n != nil && code == push.CloseProtocol {
				n.CountRejection(push.ReasonBadFrame)
			}
			_ = c.WriteClose(code, []byte(reason))
		}
	}
}
