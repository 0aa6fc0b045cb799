package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// newClient builds the go-redis client for one of the URL forms of the
// package doc. It also returns the client's read timeout: how long a reply
// may take before the connection counts as broken.
// onConnect runs on every new connection before it is used.
func newClient(raw string, onConnect func(context.Context, *redis.Conn) error) (redis.UniversalClient, time.Duration, error) {
	o, err := parseURL(raw)
	if err != nil {
		return nil, 0, err
	}
	switch o := o.(type) {
	case *redis.ClusterOptions:
		o.OnConnect = onConnect
		return redis.NewClusterClient(o), o.ReadTimeout, nil
	case *redis.FailoverOptions:
		o.OnConnect = onConnect
		return redis.NewFailoverClient(o), o.ReadTimeout, nil
	default:
		opt := o.(*redis.Options)
		opt.OnConnect = onConnect
		return redis.NewClient(opt), opt.ReadTimeout, nil
	}
}

// parseURL returns the go-redis options (*redis.Options,
// *redis.ClusterOptions or *redis.FailoverOptions) for raw, with the
// engine's defaults. Sentinel and Cluster URLs are rewritten into the forms
// go-redis parses (first host in the URL, the others as addr= options), so
// that every go-redis URL option works in all three.
func parseURL(raw string) (any, error) {
	if raw == "" {
		return nil, fmt.Errorf("redisbroker: no Redis URL")
	}
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("redisbroker: Redis URL %q: want redis://host:port", redact(raw))
	}
	switch scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, urlError(raw, err)
		}
		defaults(knobs{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled})
		return o, nil
	case "redis+cluster", "rediss+cluster":
		u, err := hostList(raw, strings.TrimSuffix(scheme, "+cluster"))
		if err != nil {
			return nil, err
		}
		if strings.Trim(u.Path, "/") != "" {
			return nil, fmt.Errorf("redisbroker: Redis URL %q: Cluster has no databases, drop the path", redact(raw))
		}
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, urlError(raw, err)
		}
		defaults(knobs{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled})
		return o, nil
	case "redis+sentinel", "rediss+sentinel":
		u, err := hostList(raw, strings.TrimSuffix(scheme, "+sentinel"))
		if err != nil {
			return nil, err
		}
		master, db, _ := strings.Cut(strings.Trim(u.Path, "/"), "/")
		if master == "" {
			return nil, fmt.Errorf("redisbroker: Redis URL %q: want redis+sentinel://host:26379/<master name>", redact(raw))
		}
		q := u.Query()
		q.Set("master_name", master)
		if db != "" {
			q.Set("db", db)
		}
		u.Path, u.RawQuery = "", q.Encode()
		o, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, urlError(raw, err)
		}
		defaults(knobs{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled})
		return o, nil
	}
	return nil, fmt.Errorf("redisbroker: Redis URL %q: scheme must be redis, rediss, unix, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster", redact(raw))
}

// hostList parses a URL whose host is a comma-separated list and returns
// it with scheme, the first host, and the others as addr= options.
func hostList(raw, scheme string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, urlError(raw, err)
	}
	hosts := strings.Split(u.Host, ",")
	if hosts[0] == "" {
		return nil, fmt.Errorf("redisbroker: Redis URL %q: no host", redact(raw))
	}
	q := u.Query()
	for _, h := range hosts[1:] {
		if h = strings.TrimSpace(h); h != "" {
			q.Add("addr", h)
		}
	}
	u.Scheme, u.Host, u.RawQuery = scheme, hosts[0], q.Encode()
	return u, nil
}

// knobs are the fields of go-redis's three option structs that defaults
// sets.
type knobs struct {
	dial, read, write *time.Duration
	retries, dials    *int
	ctxTimeouts       *bool
}

// defaults fills what the URL left unset. go-redis's own defaults (5s
// timeouts, three command retries, five dial attempts) take many seconds
// to give up on a Redis that is down, and a retried publish script could
// publish twice. go-redis reads MaxRetries -1 as "none".
func defaults(k knobs) {
	if *k.dial == 0 {
		*k.dial = DefaultDialTimeout
	}
	if *k.read == 0 {
		*k.read = DefaultIOTimeout
	}
	if *k.write == 0 {
		*k.write = DefaultIOTimeout
	}
	if *k.retries == 0 {
		*k.retries = -1
	}
	if *k.dials == 0 {
		*k.dials = 1
	}
	*k.ctxTimeouts = true
}

// urlError wraps an error about raw. A *url.Error is unwrapped: it quotes
// the whole URL, password included.
func urlError(raw string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("redisbroker: Redis URL %q: %w", redact(raw), err)
}

// redact hides a password in a URL for error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if i := strings.Index(raw, "@"); i >= 0 {
			return "…" + raw[i:]
		}
		return raw
	}
	return u.Redacted()
}
