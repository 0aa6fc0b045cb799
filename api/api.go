// Package api is Herald's HTTP surface on Echo: the publisher API behind
// API keys, history, health, and the mounts for WebSocket, echo and the
// web pages. It adapts HTTP to Herald's core through the interface it
// declares (Node, node.go), never the broker, and answers errors with the
// status of push's one table of error codes (errors.go).
package api

import (
	"context"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/labstack/echo/v4"
)

// DefaultMaxRequestBytes caps a request body (a batch of publishes).
const DefaultMaxRequestBytes = 4 << 20

// Options configure the HTTP API.
type Options struct {
	// Node is Herald's core (a *push.Node).
	Node Node
	// The transports (push/ws, push/sse, push/poll): WS serves GET /ws,
	// SSE GET /sse, Poll GET /api/poll; EchoSocket serves GET /echo (a
	// WebSocket that echoes frames back, for checking a network path;
	// nothing to do with Echo, the HTTP framework).
	WS         http.Handler
	SSE        http.Handler
	Poll       http.Handler
	EchoSocket http.Handler
	// MaxRequestBytes caps a request body.
	MaxRequestBytes int64
	// BodyTimeout bounds reading a request body (default
	// DefaultBodyTimeout; see body_deadline.go).
	BodyTimeout time.Duration
	// Pages are the web pages served at / (index.html at the root).
	Pages fs.FS
	// Script is the browser client (clients/js), served at /herald.js so
	// that pages can import it from the server they talk to.
	Script []byte
	// Worker is the client's SharedWorker (new Herald({shared: true})),
	// served at /herald-worker.js, next to /herald.js, which loads it from
	// there.
	Worker []byte
	Logger *slog.Logger
	// OpenAPI is served at /api/openapi.yaml.
	OpenAPI []byte
	// Metrics, if set, is served at /metrics and times publishes.
	Metrics *Metrics
}

// Server is the HTTP API.
type Server struct {
	opts     Options
	echo     *echo.Echo
	node     Node
	draining atomic.Bool
}

// New builds the HTTP API.
func New(o Options) *Server {
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, node: o.Node}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler
	e.Use(s.recoverPanics) // recover.go
	s.echo = e

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	if o.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(o.Metrics.Handler()))
	}
	if o.WS != nil {
		e.GET("/ws", echo.WrapHandler(o.WS))
	}
	if o.EchoSocket != nil {
		e.GET("/echo", echo.WrapHandler(o.EchoSocket))
	}
	// Subscriber endpoints: open like /ws (private namespaces need tokens).
	if o.SSE != nil {
		e.GET("/sse", echo.WrapHandler(o.SSE))
	}
	if o.Poll != nil {
		e.GET("/api/poll", echo.WrapHandler(o.Poll))
	}
	if o.OpenAPI != nil {
		e.GET("/api/openapi.yaml", func(c echo.Context) error {
			return c.Blob(http.StatusOK, "application/yaml", o.OpenAPI)
		})
	}

	// The publisher API. The group puts the key check in front of its
	// unknown paths too (401 before 404); its routes are wrapped here,
	// once, because Echo applies route middleware anew on every request
	// (an allocation per publish).
	e.Group("/api", s.authorize)
	pub := func(method, path string, h echo.HandlerFunc) { e.Add(method, "/api"+path, s.authorize(h)) }
	pub(http.MethodPost, "/publish", s.publish)
	pub(http.MethodPost, "/batch", s.batch)
	pub(http.MethodGet, "/channels/:channel/history", s.history)
	pub(http.MethodGet, "/channels/:channel/presence", s.presence)
	pub(http.MethodGet, "/channels", s.channels)
	pub(http.MethodGet, "/stats", s.stats)
	pub(http.MethodPost, "/disconnect", s.disconnect)
	if o.Script != nil {
		e.GET("/herald.js", s.script)
	}
	if o.Worker != nil {
		e.GET("/herald-worker.js", s.worker)
	}
	if o.Pages != nil {
		// The admin page asks for an API key itself and keeps it in the
		// tab's sessionStorage; the page is public, the data behind it is not.
		e.GET("/admin", s.page("admin.html"))
		e.GET("/*", echo.WrapHandler(pageHandler(o.Pages)))
	}
	return s
}

// Routes lists the method and path of every route, for checking the
// OpenAPI document against them.
func (s *Server) Routes() [][2]string {
	var out [][2]string
	for _, r := range s.echo.Routes() {
		out = append(out, [2]string{r.Method, r.Path})
	}
	return out
}

// Handler is the http.Handler serving everything.
func (s *Server) Handler() http.Handler { return s.echo }

// Drain marks the server as going away: /readyz fails from now on.
func (s *Server) Drain() { s.draining.Store(true) }

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok", "node": s.node.Name()})
}

func (s *Server) readyz(c echo.Context) error {
	if s.draining.Load() {
		return newError(push.CodeDraining, "node is shutting down")
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.node.Ready(ctx); err != nil {
		if e := push.AsError(err); e.Code == push.CodePubSubStalled {
			return e
		}
		return newError(push.CodeUnavailable, "broker unreachable: "+err.Error())
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready", "node": s.node.Name()})
}

// authorize checks the API key (Authorization: Bearer or X-API-Key); the
// node compares it in constant time against every configured key. With
// none, the publisher API accepts only loopback clients: a fresh install
// is usable locally and closed to the network.
func (s *Server) authorize(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !s.node.HasAPIKeys() {
			// A proxied request is not local even when the proxy is.
			if isLoopback(r.RemoteAddr) && r.Header.Get("X-Forwarded-For") == "" && r.Header.Get("Forwarded") == "" {
				if err := keylessCheck(r); err != nil { // web pages on this machine: keyless.go
					return err
				}
				return next(c)
			}
			return newError(push.CodeUnauthorized, "no api_key is configured: the publisher API only accepts loopback clients")
		}
		key := r.Header.Get("X-API-Key")
		if auth := r.Header.Get("Authorization"); key == "" && auth != "" {
			scheme, token, ok := strings.Cut(auth, " ")
			if ok && strings.EqualFold(scheme, "Bearer") {
				key = strings.TrimSpace(token)
			}
		}
		if key == "" {
			return newError(push.CodeUnauthorized, "missing API key: send Authorization: Bearer <key> or X-API-Key")
		}
		if !s.node.CheckAPIKey(key) {
			return newError(push.CodeUnauthorized, "invalid API key")
		}
		return next(c)
	}
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// script serves the browser client. no-cache: browsers revalidate, so a
// page never runs a client older than the server it talks to.
func (s *Server) script(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", s.opts.Script)
}

func (s *Server) worker(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", s.opts.Worker)
}

// page serves the embedded page name.
func (s *Server) page(name string) echo.HandlerFunc {
	return func(c echo.Context) error {
		b, err := fs.ReadFile(s.opts.Pages, name)
		if err != nil {
			return newError(push.CodeNotFound, name+" is not embedded")
		}
		c.Response().Header().Set("Cache-Control", "no-cache")
		return c.HTMLBlob(http.StatusOK, b)
	}
}

// pageHandler serves the embedded pages with index.html at /.
func pageHandler(pages fs.FS) http.Handler {
	return http.FileServer(http.FS(pages))
}
