package ws

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/lxzan/gws"
)

// readBufferSize is each connection's read buffer, held for as long as the
// connection lives. Frames from clients are small JSON commands (a pong is
// 21 bytes on the wire, a subscribe 60-100): 256 bytes read most in one
// read(2), and a longer frame's rest goes straight from the socket into
// its message, one read more. 1 KB cost 18,000 idle connections 14 MB
// (issue 14).
const readBufferSize = 256

// Server accepts WebSocket connections for a Node. It is an http.Handler
// for GET /ws.
type Server struct {
	node     *push.Node
	upgrader *gws.Upgrader
	hd       *handler        // the upgrader's; ServeHTTP opens sessions with it
	admit    *push.Admission // origins, per-address limits, client addresses
	writers  *writers        // run the flushes (writers.go)
	// compression: permessage-deflate for clients that offer it.
	compression  bool
	sendBuffer   int // SO_SNDBUF per connection (sndbuf.go)
	sendLowat    int // TCP_NOTSENT_LOWAT per connection (sndbuf.go)
	maxFrame     int
	writeTimeout time.Duration
}

// ServerOptions configure a Server.
type ServerOptions struct {
	// Admission decides who may connect; nil: a browser only from the
	// server's own host, no cap per address.
	Admission *push.Admission
	// HandshakeTimeout bounds the WebSocket handshake.
	HandshakeTimeout time.Duration
	// Compression turns on permessage-deflate for clients that offer it.
	Compression bool
	// SendBuffer is each connection's kernel send buffer in bytes
	// (SO_SNDBUF): 0 picks DefaultSendBuffer, < 0 leaves the kernel's
	// autotuning (up to 4 MiB a connection on Linux).
	SendBuffer int
	// SendLowat is how many bytes the kernel may hold unsent (waiting for
	// the client's window) before a write stops (TCP_NOTSENT_LOWAT,
	// Linux): 0 picks DefaultSendLowat, < 0 leaves the kernel's default
	// (no limit below SendBuffer).
	SendLowat int
}

// NewServer returns a WebSocket server for n. Its writer goroutines stop
// at the end of n's Close, after the close frames went out.
func NewServer(n *push.Node, o ServerOptions) *Server {
	if o.Admission == nil {
		o.Admission = push.NewAdmission(push.AdmissionOptions{})
	}
	no := n.Options()
	srv := &Server{
		node: n, admit: o.Admission, compression: o.Compression, sendBuffer: o.SendBuffer,
		sendLowat: o.SendLowat, maxFrame: no.MaxFrameBytes, writeTimeout: no.WriteTimeout,
		writers: startWriters(runtime.GOMAXPROCS(0), n.CountLagging),
	}
	n.AfterClose(srv.writers.stop)
	srv.hd = &handler{node: n, admit: o.Admission}
	srv.upgrader = gws.NewUpgrader(srv.hd, &gws.ServerOption{
		ReadMaxPayloadSize: no.MaxFrameBytes,
		ReadBufferSize:     readBufferSize,
		ParallelEnabled:    false,
		CheckUtf8Enabled:   true,
		HandshakeTimeout:   o.HandshakeTimeout,
		// Context takeover off both ways: the shared compressed frames
		// need it (deflate.go); gws answers extensionAnswer.
		PermessageDeflate: gws.PermessageDeflate{
			Enabled: o.Compression, ServerContextTakeover: false, ClientContextTakeover: false,
		},
		NewSession: func() gws.SessionStorage { return new(slot) },
		Logger:     gwsLogger{n},
	})
	return srv
}

// ServeHTTP upgrades the request and starts the session. Query: channel
// (repeatable) subscribes at once; batch=1 packs messages into frames;
// token authenticates.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ip, aerr := srv.admit.Admit(srv.node, r)
	if aerr != nil {
		httpError(w, aerr.Status(), aerr.Code, aerr.Message)
		return
	}
	q := r.URL.Query()
	var claims *push.Claims
	var authErr *push.Error
	if tok := q.Get("token"); tok != "" {
		// Upgrade anyway and close with 1008: a browser cannot read an
		// HTTP error from a failed handshake, but it can read a reason.
		c, err := srv.node.Authenticate(tok)
		authErr, claims = push.AsError(err), c
	}
	nc, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		srv.admit.Release(ip)
		httpError(w, http.StatusInternalServerError, push.CodeInternal, "cannot take over the connection: "+err.Error())
		return
	}
	setSendBuffer(nc, srv.sendBuffer) // sndbuf.go
	setSendLowat(nc, srv.sendLowat)   // sndbuf.go
	// gws answers the client itself when the handshake is wrong. Clients
	// wait for the 101 before they send, so nothing is left buffered.
	compressed := srv.compression && strings.Contains(r.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	t := newWSTransport(nc, srv.writers.pick(), compressed, srv.writeTimeout)
	// The guard sits between the socket and gws's reader (wsguard.go);
	// gws reads through it, not through gwsConn (which only changes
	// writes), to keep the read goroutine's parked stack small (issue 14).
	guard, arm := guardConn(nc, srv.maxFrame, compressed, srv.node) // see wsguard.go
	conn, err := srv.upgrader.UpgradeFromConn(t.gwsConn, bufio.NewReaderSize(guard, readBufferSize), r)
	if err != nil {
		srv.admit.Release(ip)
		return
	}
	t.conn = conn
	t.batch = q.Get("batch") == "1"
	t.initial, t.maxRate, t.ip, t.authErr = q["channel"], q.Get("max_rate"), ip, authErr
	s := srv.node.NewSession(t, false)
	s.SetClaims(claims)
	sl := conn.Session().(*slot)
	sl.s, sl.t = s, t
	arm(conn)
	srv.open(conn)
	go srv.readLoop(conn) // recovers panics: recover.go
}

// open runs the opening work (welcome, the query's subscribes) on the
// handshake's goroutine. A panic in it closes this connection with 1011,
// as one in the read loop does; the read loop still starts, so that the
// client's close answer is read and OnClose cleans the session up.
// Without this, net/http's own recovery would end the handler with the
// socket hijacked, the session registered and no reader: a connection
// left hanging.
func (srv *Server) open(c *gws.Conn) {
	defer func() {
		if v := recover(); v != nil {
			s := sessionOf(c)
			push.LogPanic(srv.node.Logger(), "ws open", v, "client", s.ID(), "remote", c.RemoteAddr().String())
			s.CloseAsync(push.CloseInternal, push.InternalErrorReason)
		}
	}()
	srv.hd.open(c)
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	_, _ = w.Write(b)
}

// wsTransport writes a session's frames to a WebSocket. Its writes run
// on the node's writer goroutines and never wait for the client (see
// wsframe.go), compressed or not (deflate.go). Where the socket has no
// descriptor to write (not a TCP socket; Windows) they go through gws
// instead, on its per-connection write queue, one frame at a time.
type wsTransport struct {
	conn    *gws.Conn
	gwsConn *gwsConn        // what gws reads and writes through
	raw     syscall.RawConn // nil: write through gws
	writer  *writer         // runs the flushes when raw
	batch   bool            // pack pending messages into one frame, '\n'-separated
	deflate bool            // permessage-deflate negotiated: messages go compressed
	timeout time.Duration
	out     []byte      // what the socket has not taken yet (raw)
	outHead int         // out's first outHead bytes end a frame under way; whole frames follow
	lag     lag         // whether the client keeps up (raw; lag.go)
	later   atomic.Bool // the last probe found bytes unread: its flushes wait for the readers' (writers.go)
	// Of the session's writer: the time of the probe before this write
	// (0: none), and whether this flush was scheduled behind the readers'.
	probedAt    int64
	queuedLater bool
	initial     []string    // channels from the query string, until OnOpen
	maxRate     string      // the query's max_rate for them, until OnOpen
	ip          string      // client address, for the per-address limit
	authErr     *push.Error // why the handshake's token was refused
}

// newWSTransport picks the write path for the socket nc: raw unless nc
// is not a socket.
func newWSTransport(nc net.Conn, w *writer, compressed bool, timeout time.Duration) *wsTransport {
	t := &wsTransport{writer: w, timeout: timeout, gwsConn: &gwsConn{Conn: nc, timeout: timeout}, deflate: compressed}
	if sc, ok := nc.(syscall.Conn); ok && rawSocketIO {
		if rc, err := sc.SyscallConn(); err == nil {
			t.raw, t.gwsConn.raw = rc, rc
		}
	}
	return t
}

// gwsConn is the socket as gws sees it. On raw connections gws writes
// only its handshake answer and the close frames it sends by itself (the
// answer to a client's close, or to a protocol error), and then closes the
// socket. Those writes must not wait on a client that does not read: the
// writer goroutines share the socket's write lock. So they go out like the
// messages, without waiting, and not at all while a message is half
// written (the close would land inside it, and the session's own Drain
// holds the write lock while it waits): closing the socket is what
// matters then. Writes through gws (sockets without a descriptor) are bounded by
// the write timeout instead.
type gwsConn struct {
	net.Conn
	raw     syscall.RawConn
	timeout time.Duration
	partial atomic.Bool // the socket took part of a frame; the rest waits
	stop    atomic.Bool // the session is closing: a waiting write gives up soon
}

// writeTimeout is how long a write may wait for the client.
func (c *gwsConn) writeTimeout() time.Duration {
	if c.stop.Load() {
		return time.Second
	}
	return c.timeout
}

var errPartialFrame = errors.New("push: a frame is half written, no close frame can follow it")

func (c *gwsConn) Write(p []byte) (int, error) {
	if c.raw == nil {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout()))
		return c.Conn.Write(p)
	}
	if c.partial.Load() {
		return 0, errPartialFrame
	}
	w := getRawWrite()
	rest, err := w.write(c.raw, p, false)
	putRawWrite(w)
	if err == nil && len(rest) > 0 {
		err = io.ErrShortWrite
	}
	return len(p) - len(rest), err
}

func (t *wsTransport) Schedule(flush func()) {
	if t.raw == nil {
		t.conn.Async(flush)
		return
	}
	// No writer runs for the session now (it schedules a flush only
	// then): the fields of its writer are free to set.
	later := t.later.Load()
	t.queuedLater = later
	t.writer.schedule(flush, later)
}

func (t *wsTransport) Write(frames []*push.Frame) error {
	done, err := t.TryWrite(frames)
	if err == nil && !done {
		err = t.Drain()
	}
	return err
}

func (t *wsTransport) TryWrite(frames []*push.Frame) (bool, error) {
	if t.raw == nil {
		return true, t.writeGWS(frames)
	}
	w := getRawWrite()
	defer putRawWrite(w)
	w.buf = appendFrames(w.buf[:0], frames, t.batch, t.deflate)
	if len(t.out) > 0 {
		t.out = append(t.out, w.buf...)
		return false, nil
	}
	rest, err := w.write(t.raw, w.buf, false)
	t.lag.wrote(len(w.buf)-len(rest), t.probedAt)
	t.probedAt = 0
	if err != nil {
		_ = t.gwsConn.Close() // the reader sees it and cleans up
		return true, err
	}
	if len(rest) > 0 {
		t.outHead = unsentHead(w.buf, 0, len(w.buf)-len(rest))
		t.out = append(t.out, rest...)
		t.gwsConn.partial.Store(true)
		return false, nil
	}
	return true, nil
}

func (t *wsTransport) Drain() error {
	if len(t.out) == 0 {
		return nil
	}
	// Spread at random (sndbuf.go): clients that stalled together are not
	// closed together.
	_ = t.conn.SetWriteDeadline(time.Now().Add(drainSpread(t.gwsConn.writeTimeout())))
	if t.gwsConn.stop.Load() { // Interrupt may have run before the deadline was set
		_ = t.conn.SetWriteDeadline(time.Now().Add(time.Second))
	}
	w := getRawWrite()
	rest, err := w.write(t.raw, t.out, true)
	putRawWrite(w)
	t.lag.wrote(len(t.out)-len(rest), time.Now().UnixNano())
	if err != nil {
		t.outHead = unsentHead(t.out, t.outHead, len(t.out)-len(rest))
		if t.gwsConn.stop.Load() {
			t.out = rest // closing: Close tries once more (closeStalled)
			return err
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The client stopped reading: the session closes it 4001,
			// and Close tries once more (closeStalled).
			t.out = rest
			return push.ErrNotReading
		}
		_ = t.gwsConn.Close()
		return err
	}
	// Later writes must not wait; and a slow spell's buffer is let go,
	// idle connections stay small.
	_ = t.conn.SetWriteDeadline(time.Time{})
	t.out, t.outHead = nil, 0
	t.gwsConn.partial.Store(false)
	return nil
}

// Pace probes the client's window when due (lag.go) before a write of
// queued frames, and says whether the write should wait: behind the
// readers' flushes once, when the client has not read what it was sent
// (a flush scheduled before that was found), or until its next write is
// due, when it lags.
func (t *wsTransport) Pace() (time.Duration, bool) {
	if t.raw == nil || !t.lag.due() {
		t.probedAt = 0
		return 0, false
	}
	if wnd, ok := peerWindow(t.raw); ok {
		was := t.lag.lagging
		t.lag.observe(wnd)
		t.later.Store(t.lag.unread > 0)
		if t.lag.lagging && !was {
			t.writer.lagged()
		}
	}
	t.probedAt = time.Now().UnixNano()
	if t.lag.lagging {
		d := t.lag.hold(t.probedAt)
		return d, d > 0
	}
	return 0, t.later.Load() && !t.queuedLater
}

// ScheduleAfter runs flush on the connection's writer after d, behind
// the readers' flushes (Pace). The session's writer calls it, and stays
// the transport's owner until flush runs. The writer keeps the wait
// (writer.scheduleAt): no timer, goroutine or closure per held write.
func (t *wsTransport) ScheduleAfter(d time.Duration, flush func()) {
	t.queuedLater = true
	if d <= 0 {
		t.writer.schedule(flush, true)
		return
	}
	t.writer.scheduleAt(time.Now().UnixNano()+int64(d), flush)
}

func (t *wsTransport) Interrupt() {
	t.gwsConn.stop.Store(true)
	_ = t.conn.SetWriteDeadline(time.Now().Add(time.Second))
}

// writeGWS writes frames through gws (sockets without a descriptor); gwsConn
// bounds each write.
func (t *wsTransport) writeGWS(frames []*push.Frame) error {
	w := getRawWrite()
	defer putRawWrite(w)
	for i := 0; i < len(frames); {
		f := frames[i]
		if f.Raw { // a control frame of ours: opcode, length, payload
			if err := t.conn.WriteMessage(gws.Opcode(f.Bytes[0]&0x0F), f.Bytes[2:]); err != nil {
				return err
			}
			i++
			continue
		}
		// A run of messages: one frame each, or one in all on batch.
		j := i + 1
		for t.batch && j < len(frames) && !frames[j].Raw {
			j++
		}
		if j == i+1 {
			if err := t.conn.WriteMessage(gws.OpcodeText, f.Bytes); err != nil {
				return err
			}
			i = j
			continue
		}
		b := w.buf[:0]
		for k := i; k < j; k++ {
			if k > i {
				b = append(b, '\n')
			}
			b = append(b, frames[k].Bytes...)
		}
		w.buf = b
		if err := t.conn.WriteMessage(gws.OpcodeText, b); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// closeLinger is how long a closed connection waits for the client's
// close answer before its socket is closed anyway.
const closeLinger = time.Second

// Close sends the close frame and ends the connection. The session's
// writer calls it, so no frame is being written; but when the socket did
// not take all of the last one, a close frame cannot follow it and the
// client sees the connection drop instead.
//
// After the close frame the socket only stops sending (FIN), and is closed
// when the client answers (gws's reader sees the close or the end of the
// stream) or after closeLinger. Closing it at once would make the kernel
// answer any frame the client sent meanwhile, still unread, with a reset,
// and a browser that gets the reset before it reads the close frame
// reports 1006 instead of the code sent.
func (t *wsTransport) Close(code uint16, reason string) {
	if t.raw == nil {
		t.gwsConn.stop.Store(true)
		_ = t.conn.WriteClose(code, []byte(reason))
		return
	}
	// What the socket has not taken goes first, then the close frame; a
	// full socket waits for the client up to stalledCloseLinger, on a
	// goroutine of its own (sndbuf.go). For a slow consumer only the frame
	// under way: the whole frames behind it are dropped with its queue
	// (protocol.md, 4001), and on a slow link they were seconds of the
	// client's bandwidth before the close (a lagging client's gathered
	// write is up to 800 ms of its feed). The deadline Interrupt set has
	// passed: it would fail even this write, which does not wait.
	_ = t.conn.SetWriteDeadline(time.Time{})
	out := t.out
	if code == push.CloseSlowConsumer {
		out = out[:t.outHead]
	}
	w := getRawWrite()
	rest, err := w.write(t.raw, append(out, wsCloseFrame(code, reason)...), false)
	putRawWrite(w)
	if err == nil && len(rest) > 0 {
		go t.closeStalled(rest)
		return
	}
	t.lingerClose(err == nil)
}

// slot is the per-connection storage gws asks for; we keep two pointers
// instead of gws's default map.
type slot struct {
	s       *push.Session
	t       *wsTransport
	cleaned atomic.Bool // OnClose ran (recover.go)
}

func (sl *slot) Len() int                       { return 1 }
func (sl *slot) Load(string) (any, bool)        { return sl.s, sl.s != nil }
func (sl *slot) Delete(string)                  {}
func (sl *slot) Store(string, any)              {}
func (sl *slot) Range(f func(string, any) bool) { f("session", sl.s) }

type gwsLogger struct{ n *push.Node }

func (l gwsLogger) Error(v ...any) { l.n.Logger().Error("gws", "err", v) }

// handler adapts gws events to sessions.
type handler struct {
	node  *push.Node
	admit *push.Admission
}

func sessionOf(c *gws.Conn) *push.Session { return c.Session().(*slot).s }

func transportOf(c *gws.Conn) *wsTransport { return c.Session().(*slot).t }

// OnOpen does nothing: gws calls it on the connection's read goroutine,
// which lives as long as the connection. The opening work (welcome,
// subscribes) needs more than the 4 KB stack that goroutine parks with
// between frames, and a grown stack stays grown until a GC shrinks it,
// which an idle server seldom runs: ServeHTTP does it in open instead,
// on the handshake's goroutine, which ends right after (issue 14).
func (hd *handler) OnOpen(*gws.Conn) {}

// open greets the client and subscribes the channels of the query string.
func (hd *handler) open(c *gws.Conn) {
	s, t := sessionOf(c), transportOf(c)
	initial, maxRate := t.initial, t.maxRate
	t.initial, t.maxRate = nil, ""
	hd.node.Logger().Debug("connection open", "client", s.ID(), "transport", "ws", "remote", c.RemoteAddr().String())
	if t.authErr != nil {
		s.CloseAsync(push.CloseCode(t.authErr.Code), t.authErr.Message)
		return
	}
	s.Register() // before the welcome: a client that saw it can be kicked
	s.Send(s.Welcome(t.batch))
	s.OpenWith(initial, nil, maxRate)
}

func (hd *handler) OnClose(c *gws.Conn, err error) {
	if !c.Session().(*slot).closeOnce() {
		return
	}
	s := sessionOf(c)
	s.Release()
	hd.node.CountClose(s, clientCloseCode(err))
	hd.admit.Release(transportOf(c).ip)
	if code, ok := err.(interface{ Uint16() uint16 }); ok && code.Uint16() == push.CloseTooBig {
		hd.node.CountRejection(push.ReasonFrameTooBig)
	}
	if log := hd.node.Logger(); log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("connection closed", "client", s.ID(), "transport", "ws", "reason", err,
			"duration", time.Since(s.Opened()).Round(time.Millisecond))
	}
}

// clientCloseCode is the close code in err, the reason gws's read loop
// ended: the client's close frame, or the guard's failure; 0 without one.
func clientCloseCode(err error) uint16 {
	var ce *gws.CloseError
	var sc interface{ Uint16() uint16 }
	switch {
	case errors.As(err, &ce):
		return ce.Code
	case errors.As(err, &sc):
		return sc.Uint16()
	}
	return 0
}

func (hd *handler) OnPing(c *gws.Conn, payload []byte) {
	s := sessionOf(c)
	s.Touch()
	s.Send(push.RawFrame(wsPongFrame(payload)))
}

func (hd *handler) OnPong(c *gws.Conn, payload []byte) { sessionOf(c).Touch() }

// pongCommand is the pong as clients/js, clients/go and `herald bench` send it.
var pongCommand = []byte(`{"type":"pong"}`)

func (hd *handler) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	s := sessionOf(c)
	s.Touch()
	// The heartbeat answer, byte for byte as Herald's clients send it, is
	// not decoded: encoding/json needs more stack than the read goroutine
	// parks with, and every idle connection would keep a stack grown at
	// each heartbeat (issue 14). Any other spelling takes the full path.
	if m.Opcode == gws.OpcodeText && bytes.Equal(m.Bytes(), pongCommand) {
		return
	}
	if s.IsClosed() {
		return
	}
	if m.Opcode != gws.OpcodeText {
		s.Reject("", push.CodeBadRequest, "binary frames are not part of the protocol: send JSON text frames", "")
		return
	}
	s.Handle(m.Bytes())
}

// PingFrame is the WebSocket ping the heartbeat sends after its JSON ping
// (push.Pinger).
func (t *wsTransport) PingFrame() *push.Frame { return wsPingFrame }

// Abort closes the socket at once, without a close frame (push.Aborter).
func (t *wsTransport) Abort() { _ = t.gwsConn.Close() }
