package main

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heraldpush/herald/push"
	"gopkg.in/yaml.v3"
)

// Config is the server configuration: defaults, then the YAML file, then
// HERALD_* environment variables, then flags.
type Config struct {
	Listen         string   `yaml:"listen" help:"address to listen on"`
	APIKey         string   `yaml:"api_key" help:"publisher API key (empty: publisher API only from loopback)"`
	APIKeys        []string `yaml:"api_keys" help:"several publisher keys (comma-separated in env)"`
	RedisURL       string   `yaml:"redis_url" help:"redis://host:6379/0 (empty: in-process memory broker)"`
	AllowedOrigins []string `yaml:"allowed_origins" help:"browser origins allowed besides the server's own host; * allows all"`
	Node           string   `yaml:"node" help:"this node's name (default: host name)"`

	Heartbeat        time.Duration `yaml:"heartbeat" help:"interval of server pings"`
	HeartbeatTimeout time.Duration `yaml:"heartbeat_timeout" help:"close a client silent this long (default 3 heartbeats)"`
	HandshakeTimeout time.Duration `yaml:"handshake_timeout" help:"limit for the WebSocket handshake"`
	WriteTimeout     time.Duration `yaml:"write_timeout" help:"limit for one write to a client"`
	MaxFrameBytes    int           `yaml:"max_frame_bytes" help:"largest frame a client may send (1009 past it)"`
	MaxQueueBytes    int           `yaml:"max_queue_bytes" help:"per-connection send queue; a client past it is closed (4001)"`
	MaxChannels      int           `yaml:"max_channels_per_connection" help:"channels one connection may subscribe to"`
	MaxRequestBytes  int64         `yaml:"max_request_bytes" help:"largest HTTP request body"`
	Compression      bool          `yaml:"compression" help:"permessage-deflate for clients that offer it"`
	ShutdownTimeout  time.Duration `yaml:"shutdown_timeout" help:"how long a graceful shutdown may take"`

	Demo bool `yaml:"demo" help:"publish the demo feeds; adds the namespaces stocks, sports, danmaku, chat when missing"`

	LogLevel  string `yaml:"log_level" help:"debug, info, warn or error"`
	LogFormat string `yaml:"log_format" help:"text or json"`

	DefaultNamespace push.Namespace             `yaml:"default_namespace" help:"rules for channels without ':' (YAML in env)"`
	Namespaces       map[string]*push.Namespace `yaml:"namespaces" help:"rules per namespace (YAML in env)"`
}

func defaultConfig() Config {
	return Config{
		Listen:           ":8080",
		Heartbeat:        push.DefaultHeartbeat,
		HandshakeTimeout: 5 * time.Second,
		WriteTimeout:     push.DefaultWriteTimeout,
		MaxFrameBytes:    push.DefaultMaxFrameBytes,
		MaxQueueBytes:    push.DefaultMaxQueueBytes,
		MaxChannels:      push.DefaultMaxChannels,
		MaxRequestBytes:  4 << 20,
		ShutdownTimeout:  15 * time.Second,
		LogLevel:         "info",
		LogFormat:        "text",
	}
}

// loadFile merges the YAML file at path into c. Unknown keys are errors:
// a typo should not silently run with defaults.
func (c *Config) loadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && err != io.EOF {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// envName is the environment variable overriding a YAML key.
func envName(key string) string { return "HERALD_" + strings.ToUpper(key) }

// loadEnv applies HERALD_<KEY> for every key of Config.
func (c *Config) loadEnv(getenv func(string) string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("yaml")
		val := getenv(envName(key))
		if val == "" {
			continue
		}
		if err := setField(v.Field(i), val); err != nil {
			return fmt.Errorf("config: %s=%q: %w", envName(key), val, err)
		}
	}
	return nil
}

func setField(f reflect.Value, val string) error {
	switch f.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(val)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	case []string:
		var out []string
		for _, s := range strings.Split(val, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		f.Set(reflect.ValueOf(out))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(val)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return err
		}
		f.SetBool(b)
	default: // namespaces: YAML (or JSON) in the variable
		return yaml.Unmarshal([]byte(val), f.Addr().Interface())
	}
	return nil
}

// keys returns every API key configured.
func (c *Config) keys() []string {
	out := append([]string(nil), c.APIKeys...)
	if c.APIKey != "" {
		out = append(out, c.APIKey)
	}
	return out
}

// namespaces builds the hub's namespace rules.
func (c *Config) namespaces() (*push.Namespaces, error) {
	ns := &push.Namespaces{Default: c.DefaultNamespace, Named: map[string]*push.Namespace{}}
	for name, rules := range c.Namespaces {
		if name == "" || strings.ContainsRune(name, ':') || !push.ValidChannel(name) {
			return nil, fmt.Errorf("config: bad namespace name %q", name)
		}
		if rules == nil {
			rules = &push.Namespace{}
		}
		ns.Named[name] = rules
	}
	for name, rules := range ns.Named {
		if rules.HistorySize < 0 || rules.HistoryTTL < 0 {
			return nil, fmt.Errorf("config: namespace %q: history_size and history_ttl must not be negative", name)
		}
	}
	return ns, nil
}

// printKeys writes the table of every key, its env name and default.
func printKeys(w io.Writer) {
	def := defaultConfig()
	v := reflect.ValueOf(def)
	t := v.Type()
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "YAML key\tenvironment\tdefault\tmeaning")
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		d := fmt.Sprint(v.Field(i).Interface())
		switch {
		case v.Field(i).IsZero():
			d = "-"
		case f.Type.Kind() == reflect.Struct:
			d = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Tag.Get("yaml"), envName(f.Tag.Get("yaml")), d, f.Tag.Get("help"))
	}
	tw.Flush()
}
