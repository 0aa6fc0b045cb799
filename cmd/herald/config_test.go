package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// env is a fake environment for serveConfig.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// writeConfig writes a YAML config file and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const fullConfig = `
listen: 127.0.0.1:9100
api_key: file-key
api_keys: [k1, k2]
redis_url: redis://file:6379/0
allowed_origins: [https://a.example, https://b.example]
node: file-node
heartbeat: 5s
heartbeat_timeout: 20s
max_queue_bytes: 131072
max_frame_bytes: 8192
max_channels_per_connection: 7
compression: true
log_level: debug
log_format: json
default_namespace:
  history_size: 5
namespaces:
  stocks:
    history_size: 100
    history_ttl: 10m
    snapshot: true
  chat:
    client_publish: true
    publish_rate: 5/s
    max_message_bytes: 1024
  plain:
`

func TestConfigFile(t *testing.T) {
	path := writeConfig(t, fullConfig)
	cfg, err := serveConfig([]string{"--config", path}, io.Discard, env{}.get)
	if err != nil {
		t.Fatal(err)
	}
	want := server.DefaultConfig()
	want.Listen = "127.0.0.1:9100"
	want.APIKey = "file-key"
	want.APIKeys = []string{"k1", "k2"}
	want.RedisURL = "redis://file:6379/0"
	want.AllowedOrigins = []string{"https://a.example", "https://b.example"}
	want.Node = "file-node"
	want.Heartbeat = 5 * time.Second
	want.HeartbeatTimeout = 20 * time.Second
	want.MaxQueueBytes = 128 << 10
	want.MaxFrameBytes = 8 << 10
	want.MaxChannels = 7
	want.Compression = true
	want.LogLevel, want.LogFormat = "debug", "json"
	want.DefaultNamespace = push.Namespace{HistorySize: 5}
	want.Namespaces = map[string]*push.Namespace{
		"stocks": {HistorySize: 100, HistoryTTL: 10 * time.Minute, Snapshot: true},
		"chat":   {ClientPublish: true, PublishRate: push.Rate{N: 5, Per: time.Second}, MaxMessageBytes: 1024},
		"plain":  nil,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("loaded\n%+v\nwant\n%+v", cfg, want)
		for name, ns := range cfg.Namespaces {
			t.Logf("namespace %s: %+v", name, ns)
		}
	}
	// The rules the hub gets: an empty namespace entry is a namespace
	// with default rules, and names outside it stay unknown.
	nss, err := cfg.NamespaceRules()
	if err != nil {
		t.Fatal(err)
	}
	if ns, err := nss.Lookup("plain:x"); err != nil || *ns != (push.Namespace{}) {
		t.Errorf("plain:x: %+v, %v; want default rules", ns, err)
	}
	if ns, err := nss.Lookup("stocks:AAPL"); err != nil || ns.HistoryTTL != 10*time.Minute {
		t.Errorf("stocks:AAPL: %+v, %v", ns, err)
	}
	if _, err := nss.Lookup("other:x"); err == nil {
		t.Errorf("other:x: namespace not configured, but accepted")
	}
	if got := cfg.Keys(); !reflect.DeepEqual(got, []string{"k1", "k2", "file-key"}) {
		t.Errorf("keys %v, want k1 k2 file-key", got)
	}
}

func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, fullConfig)
	e := env{
		"HERALD_CONFIG":          path,
		"HERALD_LISTEN":          "127.0.0.1:9200",
		"HERALD_API_KEY":         "env-key",
		"HERALD_API_KEYS":        "e1, e2,",
		"HERALD_REDIS_URL":       "redis://env:6379/1",
		"HERALD_ALLOWED_ORIGINS": "https://env.example",
		"HERALD_NODE":            "env-node",
		"HERALD_HEARTBEAT":       "2s",
		"HERALD_MAX_QUEUE_BYTES": "65536",
		"HERALD_COMPRESSION":     "false",
		"HERALD_LOG_LEVEL":       "warn",
		"HERALD_NAMESPACES":      "{news: {history_size: 3, history_ttl: 1h}}",
	}

	t.Run("env beats file", func(t *testing.T) {
		cfg, err := serveConfig(nil, io.Discard, e.get)
		if err != nil {
			t.Fatal(err)
		}
		check(t, "listen", cfg.Listen, "127.0.0.1:9200")
		check(t, "api_key", cfg.APIKey, "env-key")
		check(t, "api_keys", cfg.APIKeys, []string{"e1", "e2"})
		check(t, "redis_url", cfg.RedisURL, "redis://env:6379/1")
		check(t, "allowed_origins", cfg.AllowedOrigins, []string{"https://env.example"})
		check(t, "node", cfg.Node, "env-node")
		check(t, "heartbeat", cfg.Heartbeat, 2*time.Second)
		check(t, "max_queue_bytes", cfg.MaxQueueBytes, 64<<10)
		check(t, "compression", cfg.Compression, false)
		check(t, "log_level", cfg.LogLevel, "warn")
		// Keys the environment does not set keep the file's value.
		check(t, "heartbeat_timeout", cfg.HeartbeatTimeout, 20*time.Second)
		check(t, "log_format", cfg.LogFormat, "json")
		if ns := cfg.Namespaces["news"]; ns == nil || ns.HistorySize != 3 || ns.HistoryTTL != time.Hour {
			t.Errorf("HERALD_NAMESPACES: news = %+v, want history_size 3, history_ttl 1h", ns)
		}
	})

	t.Run("flags beat env", func(t *testing.T) {
		cfg, err := serveConfig([]string{
			"--listen", "127.0.0.1:9300", "--api-key", "flag-key", "--redis", "redis://flag:6379/2",
			"--allowed-origins", "https://f1.example,https://f2.example", "--node", "flag-node", "--log-level", "error",
		}, io.Discard, e.get)
		if err != nil {
			t.Fatal(err)
		}
		check(t, "listen", cfg.Listen, "127.0.0.1:9300")
		check(t, "api_key", cfg.APIKey, "flag-key")
		check(t, "redis_url", cfg.RedisURL, "redis://flag:6379/2")
		check(t, "allowed_origins", cfg.AllowedOrigins, []string{"https://f1.example", "https://f2.example"})
		check(t, "node", cfg.Node, "flag-node")
		check(t, "log_level", cfg.LogLevel, "error")
		check(t, "heartbeat (no flag: env)", cfg.Heartbeat, 2*time.Second)
	})

	t.Run("--config beats HERALD_CONFIG", func(t *testing.T) {
		other := writeConfig(t, "node: other-file\nlog_format: text\n")
		cfg, err := serveConfig([]string{"--config", other}, io.Discard, env{"HERALD_CONFIG": path}.get)
		if err != nil {
			t.Fatal(err)
		}
		check(t, "node", cfg.Node, "other-file")
		check(t, "listen (default)", cfg.Listen, ":8080")
	})

	t.Run("no file, no env: defaults", func(t *testing.T) {
		cfg, err := serveConfig(nil, io.Discard, env{}.get)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cfg, server.DefaultConfig()) {
			t.Errorf("got %+v, want the defaults %+v", cfg, server.DefaultConfig())
		}
	})
}

func check[T any](t *testing.T, key string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", key, got, want)
	}
}

func TestConfigRejects(t *testing.T) {
	cases := []struct {
		name string
		file string // YAML; "" for no file
		env  env
		args []string
		want string // in the error
	}{
		{name: "unknown key", file: "listen: :1\nlisten_addr: :2\n", want: "listen_addr"},
		{name: "unknown namespace key", file: "namespaces:\n  chat:\n    client_publsh: true\n", want: "client_publsh"},
		{name: "unknown default namespace key", file: "default_namespace:\n  histroy_size: 1\n", want: "histroy_size"},
		{name: "bad duration", file: "namespaces:\n  s:\n    history_ttl: ten minutes\n", want: "line 3"},
		{name: "bad rate", file: "namespaces:\n  chat:\n    publish_rate: 5/fortnight\n", want: "5/fortnight"},
		{name: "wrong type", file: "max_queue_bytes: lots\n", want: "lots"},
		{name: "missing file", args: []string{"--config", "/nonexistent/herald.yaml"}, want: "/nonexistent/herald.yaml"},
		{name: "bad env duration", env: env{"HERALD_HEARTBEAT": "soon"}, want: "HERALD_HEARTBEAT"},
		{name: "bad env number", env: env{"HERALD_MAX_FRAME_BYTES": "64k"}, want: "HERALD_MAX_FRAME_BYTES"},
		{name: "bad env bool", env: env{"HERALD_COMPRESSION": "maybe"}, want: "HERALD_COMPRESSION"},
		{name: "bad env YAML", env: env{"HERALD_NAMESPACES": "{chat: [1"}, want: "HERALD_NAMESPACES"},
		{name: "unknown key in env YAML", env: env{"HERALD_NAMESPACES": "{chat: {client_publsh: true}}"}, want: "client_publsh"},
		{name: "unknown flag", args: []string{"--listne", ":1"}, want: "listne"},
		{name: "stray argument", args: []string{"now"}, want: "now"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeConfig(t, tc.file)}, args...)
			}
			e := tc.env
			if e == nil {
				e = env{}
			}
			_, err := serveConfig(args, io.Discard, e.get)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}

	// Names and rules that parse but cannot be served.
	for _, file := range []string{
		"namespaces:\n  \"a:b\": {}\n",
		"namespaces:\n  \"no spaces\": {}\n",
		"namespaces:\n  s:\n    history_size: -1\n",
	} {
		cfg, err := serveConfig([]string{"--config", writeConfig(t, file)}, io.Discard, env{}.get)
		if err != nil {
			t.Fatalf("%q: %v", file, err)
		}
		if _, err := cfg.NamespaceRules(); err == nil {
			t.Errorf("%q: namespaces accepted", file)
		}
	}
}

// TestServeWarnsUnknownEnv: a misspelt HERALD_* variable is a warning at
// startup naming the variable meant, and the server still starts.
func TestServeWarnsUnknownEnv(t *testing.T) {
	t.Setenv("HERALD_REDIS_ULR", "redis://localhost:1/0")
	ctx, cancel := context.WithCancel(context.Background())
	var errw syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdServe(ctx, []string{"--listen", "127.0.0.1:0", "--node", "warn-test"}, io.Discard, &errw)
	}()
	waitFor(t, readTimeout, "the server up", func() bool { return strings.Contains(errw.String(), "herald serving") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if s := errw.String(); !strings.Contains(s, "HERALD_REDIS_ULR is not a Herald setting (did you mean HERALD_REDIS_URL?)") || !strings.Contains(s, "level=WARN") {
		t.Fatalf("log %q: want a warning naming HERALD_REDIS_URL", s)
	}
}
