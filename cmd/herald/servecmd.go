package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/heraldpush/herald/internal/demo"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := serveConfig(args, stderr, os.Getenv)
	if err != nil {
		return err
	}
	logger, err := server.NewLogger(cfg, stderr)
	if err != nil {
		return err
	}
	for _, w := range server.EnvWarnings(os.Environ()) {
		logger.Warn("config: " + w)
	}
	var added []string
	if cfg.Demo {
		if cfg.Namespaces == nil {
			cfg.Namespaces = map[string]*push.Namespace{}
		}
		added = demo.AddNamespaces(cfg.Namespaces)
	}
	server.SetGCPercent(os.Getenv)
	n, err := server.Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer n.TuneGC(os.Getenv)() // gctune.go: GOGC paced under fan-out load
	logger.Info("herald serving", "addr", n.Addr(), "node", n.Core().Name(), "broker", server.BrokerName(cfg))
	if cfg.Demo {
		logger.Info("demo feeds on: open the pages at /", "url", server.BrowseURL(n.Addr()), "namespaces_added", added)
		feeds := &demo.Feeds{Node: n.Core(), Log: logger, Step: time.Second}
		demoCtx, stopDemo := context.WithCancel(ctx)
		defer stopDemo()
		go feeds.Run(demoCtx)
	}
	if len(cfg.Keys()) == 0 {
		logger.Warn("no api_key configured: the publisher API accepts loopback clients only")
	}
	return n.Serve(ctx)
}

// serveConfig builds the configuration: defaults, file, environment, flags.
func serveConfig(args []string, stderr io.Writer, getenv func(string) string) (server.Config, error) {
	def := server.DefaultConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", getenv("HERALD_CONFIG"), "YAML config file (env HERALD_CONFIG)")
	listen := fs.String("listen", def.Listen, "address to listen on (HERALD_LISTEN)")
	key := fs.String("api-key", "", "publisher API key (HERALD_API_KEY)")
	redis := fs.String("redis", "", "Redis URL, e.g. redis://localhost:6379/0 (HERALD_REDIS_URL); empty: memory broker")
	origins := fs.String("allowed-origins", "", "comma-separated browser origins allowed besides the own host; * allows all (HERALD_ALLOWED_ORIGINS)")
	node := fs.String("node", "", "node name (HERALD_NODE; default: host name)")
	level := fs.String("log-level", def.LogLevel, "debug, info, warn, error (HERALD_LOG_LEVEL)")
	demo := fs.Bool("demo", false, "publish live demo feeds for the pages at / (HERALD_DEMO); adds the namespaces they need when missing")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: herald serve [flags]\n\nFlags (they override the environment, which overrides the file):\n")
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\nEvery configuration key, its environment variable and default:\n")
		server.PrintKeys(stderr)
	}
	if err := fs.Parse(args); err != nil {
		return def, err
	}
	if fs.NArg() > 0 {
		return def, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := server.LoadConfig(*path, getenv)
	if err != nil {
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

// cmdDemo is "herald serve --demo": the server with the demo feeds.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cmdServe(ctx, append([]string{"--demo"}, args...), stdout, stderr)
}
