// Package server assembles a Herald node from its configuration: the
// hub, the broker engine, the WebSocket server and the HTTP API on one
// listener, plus the optional debug listener, and drains it on shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/heraldpush/herald/api"
	"github.com/heraldpush/herald/broker"
	heraldjs "github.com/heraldpush/herald/clients/js"
	"github.com/heraldpush/herald/clients/web"
	"github.com/heraldpush/herald/docs"
	"github.com/heraldpush/herald/internal/webhook"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/poll"
	"github.com/heraldpush/herald/push/sse"
	"github.com/heraldpush/herald/push/ws"
)

// defaultGCPercent is the GOGC Herald runs with unless GOGC is set. Its
// heap is mostly connection state, and it allocates about once per
// message, not per delivery: with less headroom than Go's default 100 the
// collector runs a little more often for no measurable CPU, and each idle
// connection costs about 0.8 KB less (docs/performance.md).
const defaultGCPercent = 50

// SetGCPercent applies defaultGCPercent unless GOGC is set.
func SetGCPercent(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// NewLogger is the logger log_level and log_format ask for.
func NewLogger(cfg Config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("config: log_level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("config: log_format %q: want text or json", cfg.LogFormat)
}

// Node is one running Herald server: the parts wired together.
type Node struct {
	cfg       Config
	log       *slog.Logger
	core      *push.Node
	broker    broker.Broker
	api       *api.Server
	http      *http.Server
	ln        net.Listener
	addr      string
	served    chan error
	debug     *http.Server // nil unless debug_listen is set
	debugAddr net.Addr
	webhooks  *webhook.Sender // nil without webhooks
}

// Start wires the parts from cfg and starts serving.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Node, error) {
	nss, err := cfg.NamespaceRules()
	if err != nil {
		return nil, err
	}
	verifier, err := cfg.verifier()
	if err != nil {
		return nil, err
	}
	trusted, err := cfg.trusted()
	if err != nil {
		return nil, err
	}
	for _, h := range cfg.Webhooks {
		if err := h.Validate(); err != nil {
			return nil, fmt.Errorf("webhooks: %w", err)
		}
	}
	name := cfg.Node
	if name == "" {
		name, _ = os.Hostname()
	}
	var metrics *api.Metrics
	core := push.NewNode(push.Options{
		ObserveBroker: func(op string, d time.Duration, err error) {
			if metrics != nil {
				metrics.ObserveBroker(op, d, err)
			}
		},
		Node:             name,
		Namespaces:       nss,
		Heartbeat:        cfg.Heartbeat,
		HeartbeatTimeout: cfg.HeartbeatTimeout,
		MaxQueueBytes:    cfg.MaxQueueBytes,
		MaxFrameBytes:    cfg.MaxFrameBytes,
		WriteTimeout:     cfg.WriteTimeout,
		MaxChannels:      cfg.MaxChannels,
		Verifier:         verifier,
		APIKeys:          cfg.Keys(),
		StatsInterval:    cfg.StatsInterval,
		CanaryInterval:   cfg.CanaryInterval,
		TokenGrace:       cfg.TokenGrace,
		Logger:           logger,
		EventQueues:      webhook.Queues(cfg.Webhooks),
		OfflineDelay:     cfg.OfflineDelay,
	})
	metrics = api.NewMetrics(core)
	b, err := openBroker(ctx, cfg, core, logger)
	if err != nil {
		return nil, err
	}
	var sender *webhook.Sender
	if len(cfg.Webhooks) > 0 {
		store, _ := b.(broker.Presence)
		sender, err = webhook.New(webhook.Options{Hooks: cfg.Webhooks, Store: store, Owner: name + "-" + broker.NewEpoch(), Retry: cfg.WebhookRetry, Logger: logger})
		if err != nil {
			_ = b.Close(context.Background())
			return nil, err
		}
		if err := metrics.Register(sender); err != nil {
			_ = b.Close(context.Background())
			return nil, err
		}
	}
	core.Start(ctx, b)
	if sender != nil {
		sender.Start()
	}
	// One admission for every transport: the per-address cap counts a
	// client's connections on all of them.
	admit := push.NewAdmission(push.AdmissionOptions{
		AllowedOrigins: cfg.AllowedOrigins,
		MaxConnsPerIP:  cfg.MaxConnsPerIP,
		TrustedProxies: trusted,
	})
	a := api.New(api.Options{
		Node: core,
		WS: ws.NewServer(core, ws.ServerOptions{
			Admission:        admit,
			HandshakeTimeout: cfg.HandshakeTimeout,
			Compression:      cfg.Compression,
			SendBuffer:       cfg.SendBuffer,
			SendLowat:        cfg.SendLowat,
		}),
		SSE:             sse.New(core, admit),
		Poll:            poll.New(core, admit),
		EchoSocket:      ws.NewEchoSocket(cfg.MaxFrameBytes, cfg.HandshakeTimeout),
		MaxRequestBytes: cfg.MaxRequestBytes,
		Pages:           web.Pages(),
		Script:          heraldjs.Source,
		Worker:          heraldjs.Worker,
		Metrics:         metrics,
		OpenAPI:         docs.OpenAPI,
		Logger:          logger,
	})
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		_ = b.Close(context.Background())
		return nil, err
	}
	n := &Node{
		cfg: cfg, log: logger, core: core, broker: b, api: a, ln: ln, webhooks: sender,
		addr:   ln.Addr().String(),
		served: make(chan error, 1),
		http: &http.Server{
			Handler: a.Handler(),
			// Slowloris: a client that trickles its handshake is cut off.
			ReadHeaderTimeout: cfg.HandshakeTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
	}
	if cfg.DebugListen != "" {
		if n.debug, n.debugAddr, err = startDebug(cfg.DebugListen, logger); err != nil {
			_ = ln.Close()
			_ = b.Close(context.Background())
			return nil, fmt.Errorf("debug_listen: %w", err)
		}
	}
	go func() {
		err := n.http.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		n.served <- err
	}()
	return n, nil
}

// Serve waits until ctx ends (SIGTERM, say) and then drains the node
// within shutdown_timeout; or returns at once the error that stopped the
// HTTP server.
func (n *Node) Serve(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case err := <-n.served:
		return err
	}
	n.log.Info("shutting down", "deadline", n.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	return n.Shutdown(sctx)
}

// Shutdown drains the node: /readyz fails first (and drain_delay gives
// load balancers time to see it), the listener stops accepting, every
// WebSocket gets 1001 so clients reconnect elsewhere and event streams and
// long-polls end, in-flight requests (publishes) finish, then the broker
// closes.
func (n *Node) Shutdown(ctx context.Context) error {
	n.api.Drain()
	if d := n.cfg.DrainDelay; d > 0 {
		n.log.Info("draining: unready, waiting before closing connections", "delay", d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	// Shutdown closes the listener at once, then waits for requests; the
	// streams among them end when the hub closes their sessions.
	httpDone := make(chan error, 1)
	go func() { httpDone <- n.http.Shutdown(ctx) }()
	herr := n.core.Close(ctx, push.CloseGoingAway, "server shutting down")
	err := <-httpDone
	if n.debug != nil {
		_ = n.debug.Close()
	}
	if n.webhooks != nil {
		_ = n.webhooks.Close(ctx) // what is queued stays queued
	}
	if cerr := n.broker.Close(ctx); err == nil {
		err = cerr
	}
	if err == nil {
		err = herr
	}
	return err
}

// BrowseURL is the address to open in a browser for a listen address:
// an unspecified host (":8080", "[::]:8080") is reachable as localhost.
func BrowseURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// BrokerName names the engine cfg selects, for logs.
func BrokerName(cfg Config) string {
	if cfg.RedisURL != "" {
		return "redis"
	}
	return "memory"
}

// openBroker picks the engine: Redis when redis_url is set, else memory.
func openBroker(ctx context.Context, cfg Config, h broker.Handler, logger *slog.Logger) (broker.Broker, error) {
	if cfg.RedisURL != "" {
		return openRedis(ctx, cfg, h, logger)
	}
	return broker.NewMemory(h), nil
}

// Addr is the address the node listens on.
func (n *Node) Addr() string { return n.addr }

// Core is the server's push.Node: the one entry point of every transport
// and of the HTTP API (its hub, the local fan-out, is inside it).
func (n *Node) Core() *push.Node { return n.core }

// API is the node's HTTP API.
func (n *Node) API() *api.Server { return n.api }

// Config is the configuration the node runs with.
func (n *Node) Config() Config { return n.cfg }

// Served yields Serve's result once the listener stops: nil after a
// Shutdown, the error otherwise.
func (n *Node) Served() <-chan error { return n.served }

// DebugAddr is the debug_listen address, nil when it is off.
func (n *Node) DebugAddr() net.Addr { return n.debugAddr }
