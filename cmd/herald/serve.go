package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/heraldpush/herald/api"
	"github.com/heraldpush/herald/broker"
	heraldjs "github.com/heraldpush/herald/clients/js"
	"github.com/heraldpush/herald/clients/web"
	"github.com/heraldpush/herald/docs"
	"github.com/heraldpush/herald/push"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := serveConfig(args, stderr, os.Getenv)
	if err != nil {
		return err
	}
	logger, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	var added []string
	if cfg.Demo {
		added = cfg.addDemoNamespaces()
	}
	setGCPercent(os.Getenv)
	n, err := startNode(ctx, cfg, logger)
	if err != nil {
		return err
	}
	logger.Info("herald serving", "addr", n.addr, "node", n.hub.Name(), "broker", brokerName(cfg))
	if cfg.Demo {
		logger.Info("demo feeds on: open the pages at /", "url", browseURL(n.addr), "namespaces_added", added)
		feeds := &demoFeeds{node: n.hub, log: logger, step: time.Second}
		demoCtx, stopDemo := context.WithCancel(ctx)
		defer stopDemo()
		go feeds.run(demoCtx)
	}
	if len(cfg.keys()) == 0 {
		logger.Warn("no api_key configured: the publisher API accepts loopback clients only")
	}
	select {
	case <-ctx.Done():
	case err := <-n.served:
		return err
	}
	logger.Info("shutting down", "deadline", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return n.shutdown(sctx)
}

// defaultGCPercent is the GOGC Herald runs with unless GOGC is set. Its
// heap is mostly connection state, and it allocates about once per
// message, not per delivery: with less headroom than Go's default 100 the
// collector runs a little more often for no measurable CPU, and each idle
// connection costs about 0.8 KB less (docs/performance.md).
const defaultGCPercent = 50

func setGCPercent(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// serveConfig builds the configuration: defaults, file, environment, flags.
func serveConfig(args []string, stderr io.Writer, getenv func(string) string) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", getenv("HERALD_CONFIG"), "YAML config file (env HERALD_CONFIG)")
	listen := fs.String("listen", cfg.Listen, "address to listen on (HERALD_LISTEN)")
	key := fs.String("api-key", "", "publisher API key (HERALD_API_KEY)")
	redis := fs.String("redis", "", "Redis URL, e.g. redis://localhost:6379/0 (HERALD_REDIS_URL); empty: memory broker")
	origins := fs.String("allowed-origins", "", "comma-separated browser origins allowed besides the own host; * allows all (HERALD_ALLOWED_ORIGINS)")
	node := fs.String("node", "", "node name (HERALD_NODE; default: host name)")
	level := fs.String("log-level", cfg.LogLevel, "debug, info, warn, error (HERALD_LOG_LEVEL)")
	demo := fs.Bool("demo", false, "publish live demo feeds for the pages at / (HERALD_DEMO); adds the namespaces they need when missing")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: herald serve [flags]\n\nFlags (they override the environment, which overrides the file):\n")
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\nEvery configuration key, its environment variable and default:\n")
		printKeys(stderr)
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if *path != "" {
		if err := cfg.loadFile(*path); err != nil {
			return cfg, err
		}
	}
	if err := cfg.loadEnv(getenv); err != nil {
		return cfg, err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "api-key":
			cfg.APIKey = *key
		case "redis":
			cfg.RedisURL = *redis
		case "allowed-origins":
			cfg.AllowedOrigins = strings.Split(*origins, ",")
		case "node":
			cfg.Node = *node
		case "log-level":
			cfg.LogLevel = *level
		case "demo":
			cfg.Demo = *demo
		}
	})
	return cfg, nil
}

func newLogger(cfg Config, w io.Writer) (*slog.Logger, error) {
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

// node is one running Herald server: the parts wired together.
type node struct {
	cfg       Config
	log       *slog.Logger
	hub       *push.Node
	broker    broker.Broker
	api       *api.Server
	http      *http.Server
	ln        net.Listener
	addr      string
	served    chan error
	debug     *http.Server // nil unless debug_listen is set
	debugAddr net.Addr
}

// startNode wires the parts from cfg and starts serving.
func startNode(ctx context.Context, cfg Config, logger *slog.Logger) (*node, error) {
	nss, err := cfg.namespaces()
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
	name := cfg.Node
	if name == "" {
		name, _ = os.Hostname()
	}
	var metrics *api.Metrics
	hub := push.NewNode(push.Options{
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
		APIKeys:          cfg.keys(),
		StatsInterval:    cfg.StatsInterval,
		TokenGrace:       cfg.TokenGrace,
		Logger:           logger,
	})
	metrics = api.NewMetrics(hub)
	b, err := openBroker(ctx, cfg, hub, logger)
	if err != nil {
		return nil, err
	}
	hub.Start(ctx, b)
	ws := push.NewServer(hub, push.ServerOptions{
		AllowedOrigins:   cfg.AllowedOrigins,
		HandshakeTimeout: cfg.HandshakeTimeout,
		Compression:      cfg.Compression,
		MaxConnsPerIP:    cfg.MaxConnsPerIP,
		TrustedProxies:   trusted,
	})
	a := api.New(api.Options{
		Node:            hub,
		WS:              ws,
		Echo:            push.NewEcho(cfg.MaxFrameBytes, cfg.HandshakeTimeout),
		MaxRequestBytes: cfg.MaxRequestBytes,
		Pages:           web.Pages(),
		Script:          heraldjs.Source,
		CheckOrigin:     ws.CheckOrigin,
		Metrics:         metrics,
		OpenAPI:         docs.OpenAPI,
		Logger:          logger,
	})
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		_ = b.Close(context.Background())
		return nil, err
	}
	n := &node{
		cfg: cfg, log: logger, hub: hub, broker: b, api: a, ln: ln,
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

// shutdown drains the node: /readyz fails first (and drain_delay gives
// load balancers time to see it), the listener stops accepting, every
// WebSocket gets 1001 so clients reconnect elsewhere and event streams and
// long-polls end, in-flight requests (publishes) finish, then the broker
// closes.
func (n *node) shutdown(ctx context.Context) error {
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
	herr := n.hub.Close(ctx, push.CloseGoingAway, "server shutting down")
	err := <-httpDone
	if n.debug != nil {
		_ = n.debug.Close()
	}
	if cerr := n.broker.Close(ctx); err == nil {
		err = cerr
	}
	if err == nil {
		err = herr
	}
	return err
}

// browseURL is the address to open in a browser for a listen address:
// an unspecified host (":8080", "[::]:8080") is reachable as localhost.
func browseURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

func brokerName(cfg Config) string {
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
