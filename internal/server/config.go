package server

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heraldpush/herald/internal/webhook"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/ws"
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
	MaxQueueBytes    int           `yaml:"max_queue_bytes" help:"per-connection send queue; a client past it that stopped reading is closed (4001); bursts may reach 8x"`
	MaxChannels      int           `yaml:"max_channels_per_connection" help:"channels one connection may subscribe to"`
	MaxRequestBytes  int64         `yaml:"max_request_bytes" help:"largest HTTP request body"`
	Compression      bool          `yaml:"compression" help:"permessage-deflate for clients that offer it"`
	MaxConnsPerIP    int           `yaml:"max_connections_per_ip" help:"WebSocket connections from one address (0: no cap)"`
	SendBuffer       int           `yaml:"send_buffer_bytes" help:"kernel send buffer (SO_SNDBUF) per WebSocket; Linux doubles it; -1: kernel autotuning"`
	SendLowat        int           `yaml:"send_lowat_bytes" help:"unsent bytes the kernel holds per WebSocket before the client counts as stalled (TCP_NOTSENT_LOWAT, Linux); -1: no limit"`
	TrustedProxies   []string      `yaml:"trusted_proxies" help:"proxy addresses/CIDRs whose X-Forwarded-For is believed"`
	IdleTimeout      time.Duration `yaml:"idle_timeout" help:"close idle HTTP keep-alive connections after this"`

	TokenHMACSecret string        `yaml:"token_hmac_secret" help:"HMAC secret for HS256/384/512 connection tokens (32+ bytes)"`
	TokenPublicKey  string        `yaml:"token_public_key_file" help:"PEM file of RSA/ECDSA/Ed25519 public keys for RS*/PS*/ES*/EdDSA tokens"`
	TokenJWKS       string        `yaml:"token_jwks_file" help:"JSON Web Key Set file for tokens"`
	TokenAudience   string        `yaml:"token_audience" help:"required aud claim (empty: not checked)"`
	TokenIssuer     string        `yaml:"token_issuer" help:"required iss claim (empty: not checked)"`
	TokenLeeway     time.Duration `yaml:"token_leeway" help:"allowed clock skew for exp/nbf/iat"`
	TokenGrace      time.Duration `yaml:"token_grace" help:"time to send a fresh token after expiry before close 4003"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" help:"how long a graceful shutdown may take"`
	DrainDelay      time.Duration `yaml:"drain_delay" help:"on shutdown, time between failing /readyz and closing connections"`

	StatsInterval  time.Duration `yaml:"stats_interval" help:"how often each node reports its figures to the others"`
	CanaryInterval time.Duration `yaml:"canary_interval" help:"how often the node sends a probe through the broker's pub/sub; 3 intervals without one back make /readyz fail (pubsub_stalled)"`

	Webhooks     []webhook.Hook `yaml:"webhooks" help:"presence webhooks: [{url, secret, events: [online, offline, join, leave]}] (YAML in env)"`
	OfflineDelay time.Duration  `yaml:"offline_delay" help:"a user is offline once its last connection has been gone this long"`
	WebhookRetry time.Duration  `yaml:"webhook_retry" help:"how long an undelivered webhook event is retried before it is given up"`

	Demo bool `yaml:"demo" help:"publish the demo feeds; adds the namespaces stocks, sports, danmaku, chat when missing"`

	DebugListen string `yaml:"debug_listen" help:"address serving Go's /debug/pprof profiles (empty: off); keep it private"`

	LogLevel  string `yaml:"log_level" help:"debug, info, warn or error"`
	LogFormat string `yaml:"log_format" help:"text or json"`

	DefaultNamespace push.Namespace             `yaml:"default_namespace" help:"rules for channels without ':' (YAML in env)"`
	Namespaces       map[string]*push.Namespace `yaml:"namespaces" help:"rules per namespace (YAML in env)"`
}

// DefaultConfig is the configuration before the file, the environment
// and flags apply.
func DefaultConfig() Config {
	return Config{
		Listen:           ":8080",
		Heartbeat:        push.DefaultHeartbeat,
		HandshakeTimeout: 5 * time.Second,
		WriteTimeout:     push.DefaultWriteTimeout,
		MaxFrameBytes:    push.DefaultMaxFrameBytes,
		MaxQueueBytes:    push.DefaultMaxQueueBytes,
		SendBuffer:       ws.DefaultSendBuffer,
		SendLowat:        ws.DefaultSendLowat,
		MaxChannels:      push.DefaultMaxChannels,
		MaxRequestBytes:  4 << 20,
		ShutdownTimeout:  15 * time.Second,
		IdleTimeout:      60 * time.Second,
		StatsInterval:    2 * time.Second,
		CanaryInterval:   push.DefaultCanaryInterval,
		TokenLeeway:      push.DefaultLeeway,
		TokenGrace:       push.DefaultTokenGrace,
		OfflineDelay:     push.DefaultOfflineDelay,
		WebhookRetry:     webhook.DefaultRetry,
		LogLevel:         "info",
		LogFormat:        "text",
	}
}

// LoadFile merges the YAML file at path into c. Unknown keys are errors:
// a typo should not silently run with defaults.
func (c *Config) LoadFile(path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && err != io.EOF {
		return fmt.Errorf("config %s: %w", path, yamlError(err, string(src)))
	}
	return nil
}

// LoadConfig is the defaults, then the YAML file at path (none when
// path is ""), then the environment: what serve starts from before its
// flags, and what herald token signs with.
func LoadConfig(path string, getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		if err := cfg.LoadFile(path); err != nil {
			return cfg, err
		}
	}
	return cfg, cfg.LoadEnv(getenv)
}

// EnvName is the environment variable overriding a YAML key.
func EnvName(key string) string { return "HERALD_" + strings.ToUpper(key) }

// LoadEnv applies HERALD_<KEY> for every key of Config.
func (c *Config) LoadEnv(getenv func(string) string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("yaml")
		val := getenv(EnvName(key))
		if val == "" {
			continue
		}
		if err := setField(v.Field(i), val); err != nil {
			return envError(v.Field(i), key, val, err)
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
		// Unknown keys are errors here too, as in the file.
		dec := yaml.NewDecoder(strings.NewReader(val))
		dec.KnownFields(true)
		if err := dec.Decode(f.Addr().Interface()); err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// Keys returns every API key configured.
func (c *Config) Keys() []string {
	out := append([]string(nil), c.APIKeys...)
	if c.APIKey != "" {
		out = append(out, c.APIKey)
	}
	return out
}

// NamespaceRules builds the hub's namespace rules.
func (c *Config) NamespaceRules() (*push.Namespaces, error) {
	ns := &push.Namespaces{Default: c.DefaultNamespace, Named: map[string]*push.Namespace{}}
	for name, rules := range c.Namespaces {
		if name == push.SystemNamespace {
			return nil, fmt.Errorf("config: namespace %q is reserved for the server's own channels (%s): name yours otherwise", name, push.StatsChannel)
		}
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
		if rules.IdempotencyWindow < 0 {
			return nil, fmt.Errorf("config: namespace %q: idempotency_window must not be negative", name)
		}
	}
	return ns, nil
}

// PrintKeys writes the table of every key, its env name and default.
func PrintKeys(w io.Writer) {
	def := DefaultConfig()
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Tag.Get("yaml"), EnvName(f.Tag.Get("yaml")), d, f.Tag.Get("help"))
	}
	tw.Flush()
}

// verifier builds the token verifier from the token_* keys; nil when no
// key is configured.
func (c *Config) verifier() (*push.Verifier, error) {
	o := push.AuthOptions{
		HMACSecret: c.TokenHMACSecret,
		Audience:   c.TokenAudience,
		Issuer:     c.TokenIssuer,
		Leeway:     c.TokenLeeway,
	}
	var err error
	if c.TokenPublicKey != "" {
		if o.PublicKeys, err = os.ReadFile(c.TokenPublicKey); err != nil {
			return nil, fmt.Errorf("config: token_public_key_file: %w", err)
		}
	}
	if c.TokenJWKS != "" {
		if o.JWKS, err = os.ReadFile(c.TokenJWKS); err != nil {
			return nil, fmt.Errorf("config: token_jwks_file: %w", err)
		}
	}
	return push.NewVerifier(o)
}

// trusted parses trusted_proxies: addresses or CIDR prefixes.
func (c *Config) trusted() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("config: trusted_proxies: %q is not an address or CIDR", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
