package push

import (
	"context"
	"log/slog"
	"net"
	"net/http"
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
}

// NewServer returns a WebSocket server for h.
func NewServer(h *Hub, o ServerOptions) *Server {
	srv := &Server{hub: h, origins: make(map[string]bool)}
	for _, o := range o.AllowedOrigins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" {
			srv.anyOrig = true
		} else if o != "" {
			srv.origins[strings.ToLower(o)] = true
		}
	}
	srv.upgrader = gws.NewUpgrader(&handler{hub: h}, &gws.ServerOption{
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
// (repeatable) subscribes at once; batch=1 packs messages into frames.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !srv.CheckOrigin(r.Header.Get("Origin"), r.Host) {
		http.Error(w, `{"error":{"code":"forbidden","message":"origin not allowed"}}`, http.StatusForbidden)
		return
	}
	q := r.URL.Query()
	conn, err := srv.upgrader.Upgrade(w, r)
	if err != nil {
		return // gws has answered the client
	}
	s := newSession(srv.hub, conn, q.Get("batch") == "1")
	conn.Session().(*slot).s = s
	s.initial = q["channel"]
	go conn.ReadLoop()
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// slot is the per-connection storage gws asks for; we keep one pointer
// instead of gws's default map.
type slot struct{ s *Session }

func (sl *slot) Len() int { return 1 }
func (sl *slot) Load(string) (any, bool) {
	return sl.s, sl.s != nil
}
func (sl *slot) Delete(string)                  {}
func (sl *slot) Store(string, any)              {}
func (sl *slot) Range(f func(string, any) bool) { f("session", sl.s) }

type gwsLogger struct{ h *Hub }

func (l gwsLogger) Error(v ...any) { l.h.log.Error("gws", "err", v) }

// handler adapts gws events to sessions.
type handler struct{ hub *Hub }

func sessionOf(c *gws.Conn) *Session { return c.Session().(*slot).s }

func (hd *handler) OnOpen(c *gws.Conn) {
	s := sessionOf(c)
	hd.hub.sessions.add(s)
	hd.hub.log.Debug("connection open", "client", s.id, "remote", c.RemoteAddr().String())
	s.start()
}

func (hd *handler) OnClose(c *gws.Conn, err error) {
	s := sessionOf(c)
	s.mu.Lock()
	s.closed = true
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		hd.hub.detach(sub)
	}
	hd.hub.sessions.remove(s)
	if hd.hub.log.Enabled(context.Background(), slog.LevelDebug) {
		hd.hub.log.Debug("connection closed", "client", s.id, "reason", err, "duration", time.Since(time.Unix(0, s.opened)).Round(time.Millisecond))
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
