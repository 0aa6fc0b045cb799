package push

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lxzan/gws"
)

// Server accepts WebSocket connections for a Hub. It is an http.Handler
// for GET /ws.
type Server struct {
	hub      *Hub
	upgrader *gws.Upgrader
	// Origins allowed to connect from a browser, besides the server's own
	// host. "*" allows any.
	origins map[string]bool
	anyOrig bool
	trusted []netip.Prefix
	ips     *ipLimiter
	// compression: permessage-deflate for clients that offer it.
	compression bool
}

// ServerOptions configure a Server.
type ServerOptions struct {
	// AllowedOrigins lists origins ("https://app.example.com") allowed
	// besides the request's own host; "*" allows every origin.
	AllowedOrigins []string
	// HandshakeTimeout bounds the WebSocket handshake.
	HandshakeTimeout time.Duration
	// Compression turns on permessage-deflate for clients that offer it.
	Compression bool
	// MaxConnsPerIP caps the open WebSocket connections from one client
	// address (0: no cap).
	MaxConnsPerIP int
	// TrustedProxies are the proxies whose X-Forwarded-For is believed
	// when finding a client's address.
	TrustedProxies []netip.Prefix
}

// NewServer returns a WebSocket server for h.
func NewServer(h *Hub, o ServerOptions) *Server {
	srv := &Server{
		hub: h, origins: make(map[string]bool), trusted: o.TrustedProxies, compression: o.Compression,
		ips: &ipLimiter{max: o.MaxConnsPerIP, n: make(map[string]int)},
	}
	for _, o := range o.AllowedOrigins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" {
			srv.anyOrig = true
		} else if o != "" {
			srv.origins[strings.ToLower(o)] = true
		}
	}
	srv.upgrader = gws.NewUpgrader(&handler{hub: h, ips: srv.ips}, &gws.ServerOption{
		ReadMaxPayloadSize: h.opts.MaxFrameBytes,
		// Frames are small JSON commands; a small read buffer keeps idle
		// connections cheap.
		ReadBufferSize:    1024,
		ParallelEnabled:   false,
		CheckUtf8Enabled:  true,
		HandshakeTimeout:  o.HandshakeTimeout,
		PermessageDeflate: gws.PermessageDeflate{Enabled: o.Compression},
		NewSession:        func() gws.SessionStorage { return new(slot) },
		Logger:            gwsLogger{h},
	})
	return srv
}

// CheckOrigin reports whether a browser on origin may connect to a server
// reached at host. Requests without an Origin header (non-browser clients)
// are allowed: Origin only protects browsers' ambient credentials.
func (srv *Server) CheckOrigin(origin, host string) bool {
	if origin == "" || srv.anyOrig {
		return true
	}
	if srv.origins[strings.ToLower(strings.TrimRight(origin, "/"))] {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, host)
}

// ServeHTTP upgrades the request and starts the session. Query: channel
// (repeatable) subscribes at once; batch=1 packs messages into frames;
// token authenticates.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !srv.CheckOrigin(r.Header.Get("Origin"), r.Host) {
		srv.hub.reject(ReasonOrigin)
		httpError(w, http.StatusForbidden, CodeForbidden, "origin not allowed: add it to allowed_origins")
		return
	}
	ip := ClientIP(r, srv.trusted)
	if !srv.ips.acquire(ip) {
		srv.hub.reject(ReasonIPLimit)
		httpError(w, http.StatusTooManyRequests, CodeLimit, "too many connections from your address")
		return
	}
	q := r.URL.Query()
	var claims *Claims
	authErr := ""
	if tok := q.Get("token"); tok != "" {
		c, err := srv.hub.opts.Verifier.Verify(tok)
		switch {
		case err != nil:
			// Upgrade anyway and close with 1008: a browser cannot read an
			// HTTP error from a failed handshake, but it can read a reason.
			authErr = err.Error()
		case srv.hub.banned(c.Subject):
			authErr = "this user is banned"
		}
		claims = c
	}
	conn, err := srv.upgrader.Upgrade(w, r)
	if err != nil {
		srv.ips.release(ip)
		return // gws has answered the client
	}
	compressed := srv.compression && strings.Contains(r.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	t := newWSTransport(conn, srv.hub.writers.pick(), compressed)
	t.batch, t.timeout = q.Get("batch") == "1", srv.hub.opts.WriteTimeout
	t.initial, t.ip, t.authErr = q["channel"], ip, authErr
	s := srv.hub.NewSession(t, false)
	s.setClaims(claims)
	conn.Session().(*slot).s = s
	go conn.ReadLoop()
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	_, _ = w.Write(b)
}

// wsTransport writes a session's frames to a WebSocket. Its writes run
// on the hub's writer goroutines and never wait for the client (see
// wsframe.go); with permessage-deflate negotiated they go through gws
// instead, on its per-connection write queue, one frame at a time.
type wsTransport struct {
	conn    *gws.Conn
	raw     syscall.RawConn // nil: write through gws
	writer  *writer         // runs the flushes when raw
	batch   bool            // pack pending messages into one frame, '\n'-separated
	timeout time.Duration
	out     []byte      // what the socket has not taken yet (raw)
	stop    atomic.Bool // the session is closing: a waiting write gives up soon
	initial []string    // channels from the query string, until OnOpen
	ip      string      // client address, for the per-address limit
	authErr string      // why the handshake's token was refused
}

// newWSTransport picks the write path: raw unless the connection
// compresses (gws keeps the compression state) or is not a socket.
func newWSTransport(conn *gws.Conn, w *writer, compressed bool) *wsTransport {
	t := &wsTransport{conn: conn, writer: w}
	if sc, ok := conn.NetConn().(syscall.Conn); ok && !compressed {
		if rc, err := sc.SyscallConn(); err == nil {
			t.raw = rc
		}
	}
	return t
}

func (t *wsTransport) Schedule(flush func()) {
	if t.raw == nil {
		t.conn.Async(flush)
		return
	}
	t.writer.schedule(flush)
}

func (t *wsTransport) Write(frames [][]byte) error {
	done, err := t.TryWrite(frames)
	if err == nil && !done {
		err = t.Drain()
	}
	return err
}

func (t *wsTransport) TryWrite(frames [][]byte) (bool, error) {
	if t.raw == nil {
		return true, t.writeGWS(frames)
	}
	w := getRawWrite()
	defer putRawWrite(w)
	w.buf = appendFrames(w.buf[:0], frames, t.batch)
	if len(t.out) > 0 {
		t.out = append(t.out, w.buf...)
		return false, nil
	}
	rest, err := w.write(t.raw, w.buf, false)
	if err != nil {
		_ = t.conn.NetConn().Close() // the reader sees it and cleans up
		return true, err
	}
	if len(rest) > 0 {
		t.out = append(t.out, rest...)
		return false, nil
	}
	return true, nil
}

func (t *wsTransport) Drain() error {
	if len(t.out) == 0 {
		return nil
	}
	timeout := t.timeout
	if t.stop.Load() {
		timeout = time.Second
	}
	_ = t.conn.SetWriteDeadline(time.Now().Add(timeout))
	if t.stop.Load() { // Interrupt ran between the check and the deadline
		_ = t.conn.SetWriteDeadline(time.Now().Add(time.Second))
	}
	w := getRawWrite()
	_, err := w.write(t.raw, t.out, true)
	putRawWrite(w)
	if err != nil {
		_ = t.conn.NetConn().Close()
		return err
	}
	// Later writes must not wait; and a slow spell's buffer is let go,
	// idle connections stay small.
	_ = t.conn.SetWriteDeadline(time.Time{})
	t.out = nil
	return nil
}

func (t *wsTransport) Interrupt() {
	t.stop.Store(true)
	_ = t.conn.SetWriteDeadline(time.Now().Add(time.Second))
}

// writeGWS writes frames through gws (compressed connections).
func (t *wsTransport) writeGWS(frames [][]byte) error {
	_ = t.conn.SetWriteDeadline(time.Now().Add(t.timeout))
	if t.batch && len(frames) > 1 {
		var b []byte
		for _, f := range frames {
			if isControl(f) {
				continue
			}
			if len(b) > 0 {
				b = append(b, '\n')
			}
			b = append(b, f...)
		}
		if len(b) > 0 {
			if err := t.conn.WriteMessage(gws.OpcodeText, b); err != nil {
				return err
			}
		}
		for _, f := range frames {
			if isControl(f) {
				if err := t.conn.WriteMessage(gws.Opcode(f[0]&0x0F), f[2:]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, f := range frames {
		op, p := gws.OpcodeText, f
		if isControl(f) {
			op, p = gws.Opcode(f[0]&0x0F), f[2:]
		}
		if err := t.conn.WriteMessage(op, p); err != nil {
			return err
		}
	}
	return nil
}

// Close sends the close frame and closes the socket. The session's writer
// calls it, so no frame is being written; but when the socket did not
// take all of the last one, a close frame cannot follow it and the client
// sees the connection drop instead.
func (t *wsTransport) Close(code uint16, reason string) {
	if t.raw == nil {
		_ = t.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = t.conn.WriteClose(code, []byte(reason))
		return
	}
	if len(t.out) == 0 {
		w := getRawWrite()
		_, _ = w.write(t.raw, wsCloseFrame(code, reason), false)
		putRawWrite(w)
	}
	_ = t.conn.NetConn().Close()
}

// slot is the per-connection storage gws asks for; we keep one pointer
// instead of gws's default map.
type slot struct{ s *Session }

func (sl *slot) Len() int                       { return 1 }
func (sl *slot) Load(string) (any, bool)        { return sl.s, sl.s != nil }
func (sl *slot) Delete(string)                  {}
func (sl *slot) Store(string, any)              {}
func (sl *slot) Range(f func(string, any) bool) { f("session", sl.s) }

type gwsLogger struct{ h *Hub }

func (l gwsLogger) Error(v ...any) { l.h.log.Error("gws", "err", v) }

// handler adapts gws events to sessions.
type handler struct {
	hub *Hub
	ips *ipLimiter
}

func sessionOf(c *gws.Conn) *Session { return c.Session().(*slot).s }

func (hd *handler) OnOpen(c *gws.Conn) {
	s := sessionOf(c)
	t := s.t.(*wsTransport)
	initial := t.initial
	t.initial = nil
	hd.hub.log.Debug("connection open", "client", s.id, "transport", "ws", "remote", c.RemoteAddr().String())
	if t.authErr != "" {
		hd.hub.reject(ReasonToken)
		s.closeAsync(ClosePolicy, t.authErr)
		return
	}
	s.send(s.welcome(t.batch))
	s.Open(initial, nil)
}

func (hd *handler) OnClose(c *gws.Conn, err error) {
	s := sessionOf(c)
	s.Close()
	hd.hub.countClose(s, err)
	hd.ips.release(s.t.(*wsTransport).ip)
	if code, ok := err.(interface{ Uint16() uint16 }); ok && code.Uint16() == CloseTooBig {
		hd.hub.reject(ReasonFrameTooBig)
	}
	if hd.hub.log.Enabled(context.Background(), slog.LevelDebug) {
		hd.hub.log.Debug("connection closed", "client", s.id, "transport", "ws", "reason", err,
			"duration", time.Since(time.Unix(0, s.opened)).Round(time.Millisecond))
	}
}

func (hd *handler) OnPing(c *gws.Conn, payload []byte) {
	s := sessionOf(c)
	s.touch()
	s.send(wsPongFrame(payload))
}

func (hd *handler) OnPong(c *gws.Conn, payload []byte) { sessionOf(c).touch() }

func (hd *handler) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	s := sessionOf(c)
	s.touch()
	if m.Opcode != gws.OpcodeText {
		s.reject("", CodeBadRequest, "binary frames are not part of the protocol: send JSON text frames", "")
		return
	}
	s.handle(m.Bytes())
}
