package push

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
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
		hub: h, origins: make(map[string]bool), trusted: o.TrustedProxies,
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
	t := &wsTransport{conn: conn, batch: q.Get("batch") == "1", timeout: srv.hub.opts.WriteTimeout,
		initial: q["channel"], ip: ip, authErr: authErr}
	t.pingFn = t.ping
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

// wsTransport writes a session's frames to a gws connection.
type wsTransport struct {
	conn    *gws.Conn
	batch   bool // pack pending messages into one frame, '\n'-separated
	timeout time.Duration
	buf     []byte   // batch frame, reused
	initial []string // channels from the query string, until OnOpen
	ip      string   // client address, for the per-address limit
	authErr string   // why the handshake's token was refused
	pingFn  func()   // t.ping, bound once
}

// Ping queues a WebSocket ping frame behind the pending writes.
func (t *wsTransport) Ping() { t.conn.Async(t.pingFn) }

func (t *wsTransport) ping() {
	_ = t.conn.SetWriteDeadline(time.Now().Add(t.timeout))
	_ = t.conn.WritePing(nil)
}

// Schedule runs flush on the connection's gws write queue, which runs one
// task at a time: writes never interleave.
func (t *wsTransport) Schedule(flush func()) { t.conn.Async(flush) }

func (t *wsTransport) Write(frames [][]byte) error {
	_ = t.conn.SetWriteDeadline(time.Now().Add(t.timeout))
	if t.batch && len(frames) > 1 {
		b := t.buf[:0]
		for i, f := range frames {
			if i > 0 {
				b = append(b, '\n')
			}
			b = append(b, f...)
		}
		t.buf = b
		return t.conn.WriteMessage(gws.OpcodeText, b)
	}
	for _, f := range frames {
		if err := t.conn.WriteMessage(gws.OpcodeText, f); err != nil {
			return err
		}
	}
	return nil
}

func (t *wsTransport) Close(code uint16, reason string) {
	// A stuck writer holds the socket; a short deadline frees it.
	_ = t.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = t.conn.WriteClose(code, []byte(reason))
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
	sessionOf(c).touch()
	_ = c.WritePong(payload)
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
