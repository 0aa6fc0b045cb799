package redisbroker

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// newClient builds the go-redis client for one of the URL forms of the
// package doc. Sentinel and Cluster URLs are rewritten into the forms
// go-redis parses (first host in the URL, the others as addr= options), so
// that every go-redis URL option works in all three.
func newClient(raw string) (redis.UniversalClient, error) {
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
			return nil, fmt.Errorf("redisbroker: Redis URL %q: %w", redact(raw), err)
		}
		defaults(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.ContextTimeoutEnabled)
		return redis.NewClient(o), nil
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
			return nil, fmt.Errorf("redisbroker: Redis URL %q: %w", redact(raw), err)
		}
		defaults(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.ContextTimeoutEnabled)
		return redis.NewClusterClient(o), nil
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
			return nil, fmt.Errorf("redisbroker: Redis URL %q: %w", redact(raw), err)
		}
		defaults(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.ContextTimeoutEnabled)
		return redis.NewFailoverClient(o), nil
	}
	return nil, fmt.Errorf("redisbroker: Redis URL %q: scheme must be redis, rediss, unix, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster", redact(raw))
}

// hostList parses a URL whose host is a comma-separated list and returns
// it with scheme, the first host, and the others as addr= options.
func hostList(raw, scheme string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("redisbroker: Redis URL %q: %w", redact(raw), err)
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

// defaults fills the timeouts the URL left unset (go-redis's own defaults
// are 5s and three retries: too slow to fail while Redis is down).
// go-redis reads -1 as "none" for MaxRetries.
func defaults(dial, read, write *time.Duration, retries *int, ctxTimeouts *bool) {
	if *dial == 0 {
		*dial = DefaultDialTimeout
	}
	if *read == 0 {
		*read = DefaultIOTimeout
	}
	if *write == 0 {
		*write = DefaultIOTimeout
	}
	if *retries == 0 {
		*retries = -1
	}
	*ctxTimeouts = true
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
