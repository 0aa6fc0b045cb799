package redisbroker

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseURLSingle(t *testing.T) {
	o, err := parseURL("redis://user:secret@10.0.0.1:6380/2?read_timeout=3s&pool_size=7")
	if err != nil {
		t.Fatal(err)
	}
	opt, ok := o.(*redis.Options)
	if !ok {
		t.Fatalf("got %T, want *redis.Options", o)
	}
	if opt.Addr != "10.0.0.1:6380" || opt.DB != 2 || opt.Username != "user" || opt.Password != "secret" || opt.PoolSize != 7 {
		t.Errorf("options %+v", opt)
	}
	// The URL's own value wins; the rest get the engine's defaults.
	if opt.ReadTimeout != 3*time.Second || opt.WriteTimeout != DefaultIOTimeout || opt.DialTimeout != DefaultDialTimeout ||
		opt.MaxRetries != -1 || opt.DialerRetries != 1 || !opt.ContextTimeoutEnabled || opt.TLSConfig != nil {
		t.Errorf("timeouts %v/%v/%v, retries %d, dials %d, ctx %v, tls %v",
			opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.MaxRetries, opt.DialerRetries, opt.ContextTimeoutEnabled, opt.TLSConfig)
	}
	if o, err := parseURL("rediss://h"); err != nil || o.(*redis.Options).TLSConfig == nil || o.(*redis.Options).Addr != "h:6379" {
		t.Errorf("rediss://h: %+v, %v; want TLS to h:6379", o, err)
	}
	if o, err := parseURL("redis://h?max_retries=2"); err != nil || o.(*redis.Options).MaxRetries != 2 {
		t.Errorf("max_retries=2: %+v, %v", o, err)
	}
}

func TestParseURLCluster(t *testing.T) {
	o, err := parseURL("rediss+cluster://u:p@a:7000,b:7001,c:7002?pool_size=5")
	if err != nil {
		t.Fatal(err)
	}
	opt, ok := o.(*redis.ClusterOptions)
	if !ok {
		t.Fatalf("got %T, want *redis.ClusterOptions", o)
	}
	if !slices.Equal(opt.Addrs, []string{"a:7000", "b:7001", "c:7002"}) || opt.Username != "u" || opt.Password != "p" ||
		opt.PoolSize != 5 || opt.TLSConfig == nil || opt.ReadTimeout != DefaultIOTimeout || opt.MaxRetries != -1 {
		t.Errorf("options %+v", opt)
	}
}

func TestParseURLSentinel(t *testing.T) {
	o, err := parseURL("redis+sentinel://su:sp@s1:26379,s2:26380/mymaster/3?password=mp&dial_timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	opt, ok := o.(*redis.FailoverOptions)
	if !ok {
		t.Fatalf("got %T, want *redis.FailoverOptions", o)
	}
	if opt.MasterName != "mymaster" || opt.DB != 3 || !slices.Equal(opt.SentinelAddrs, []string{"s1:26379", "s2:26380"}) ||
		opt.SentinelUsername != "su" || opt.SentinelPassword != "sp" || opt.Password != "mp" ||
		opt.DialTimeout != 2*time.Second || opt.ReadTimeout != DefaultIOTimeout || opt.TLSConfig != nil {
		t.Errorf("options %+v", opt)
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, raw := range []string{
		"",
		"localhost:6379",
		"http://localhost:6379",
		"redis+sentinel://s1:26379",
		"redis+sentinel://s1:26379/",
		"redis+cluster://a:1,b:2/0",
		"redis+cluster://,b:2",
		"redis://h:6379?no_such_option=1",
		"redis://:hunter2@h:6379/notanumber",
		"redis+cluster://u:hunter2@a:1, b:2",
		"redis://u:hunter2@h:6379/%zz",
	} {
		_, err := parseURL(raw)
		if err == nil {
			t.Errorf("parseURL(%q) succeeded, want an error", raw)
			continue
		}
		if !strings.HasPrefix(err.Error(), "redisbroker: ") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("parseURL(%q) = %q: want a redisbroker: error without the password", raw, err)
		}
	}
}
