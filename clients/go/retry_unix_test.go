//go:build unix

package heraldclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker/brokertest"
	heraldclient "github.com/heraldpush/herald/clients/go"
	"github.com/heraldpush/herald/internal/e2e"
	"github.com/heraldpush/herald/push"
)

// statusCounter counts the answers a Publisher's attempts got.
type statusCounter struct {
	next              http.RoundTripper
	uncertain, failed atomic.Int64 // 504s; no answer at all
}

func (s *statusCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(r)
	switch {
	case err != nil:
		s.failed.Add(1)
	case resp.StatusCode == http.StatusGatewayTimeout:
		s.uncertain.Add(1)
	}
	return resp, err
}

// TestIdempotentRetryThroughRedisFaults is the proof of exactly-once
// publish (docs/guarantees.md): a Publisher retrying every 504 and broken
// request with its idempotency key, while the node's redis-server (AOF
// fsynced always) is first paused long enough for publishes in flight to
// time out as outcome_unknown, then killed and restarted, leaves its
// subscriber with every message exactly once and in order.
func TestIdempotentRetryThroughRedisFaults(t *testing.T) {
	srv := brokertest.StartRedis(t, brokertest.AppendOnly(true))
	cfg := e2e.Config()
	cfg.RedisURL = srv.URL()
	cfg.Namespaces = map[string]*push.Namespace{"t": {HistorySize: 10000, HistoryTTL: time.Hour}}
	n := e2e.Start(t, cfg)
	sub := n.Dial(e2e.Query("channel", "t:once"))
	sub.Welcome()
	sub.Expect("subscribed")

	const total = 400
	counter := &statusCounter{next: http.DefaultTransport}
	p := &heraldclient.Publisher{
		URL:      n.URL(),
		Client:   &http.Client{Timeout: 5 * time.Second, Transport: counter},
		RetryFor: 2 * time.Minute,
	}
	var published, duplicates atomic.Int64
	pubErr := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= total; i++ {
			ans, err := p.Publish(ctx, "t:once", json.RawMessage(fmt.Sprint(i)))
			if err != nil {
				pubErr <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
			if strings.Contains(string(ans), `"duplicate":true`) {
				duplicates.Add(1)
			}
			published.Store(int64(i))
		}
	})
	failed := func() bool {
		select {
		case err := <-pubErr:
			t.Fatal(err)
		default:
		}
		return false
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		e2e.WaitFor(t, 90*time.Second, what, func() bool { return !failed() && cond() })
	}

	wait("100 publishes", func() bool { return published.Load() >= 100 })
	srv.Pause()
	wait("a publish answered 504 while Redis is paused", func() bool { return counter.uncertain.Load() > 0 })
	srv.Resume()
	wait("200 publishes", func() bool { return published.Load() >= 200 })
	srv.Kill()
	srv.Restart()
	wait("every publish", func() bool { return published.Load() == total })
	wg.Wait()
	failed()

	// Every message once, in order, at consecutive offsets of one epoch
	// (the AOF kept everything, so the epoch holds).
	var epoch string
	for i := 1; i <= total; i++ {
		m := sub.Expect("message")
		if string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("message %d carries %s (offset %d): a duplicate, a loss or a reorder", i, m.Data, m.Offset)
		}
		if m.Offset != uint64(i) || (epoch != "" && m.Epoch != epoch) {
			t.Fatalf("message %d at %s:%d, want offset %d in epoch %s", i, m.Epoch, m.Offset, i, epoch)
		}
		epoch = m.Epoch
	}
	// A marker after the last: nothing else (no late duplicate) came first.
	marker := n.Publish("t:once", "end")
	if m := sub.Expect("message"); m.Offset != marker.Offset {
		t.Fatalf("after the last message got %s, want the marker at %d", m.Raw, marker.Offset)
	}
	t.Logf("%d publishes: %d answers 504 and %d requests without an answer retried; %d retries answered duplicate",
		total, counter.uncertain.Load(), counter.failed.Load(), duplicates.Load())
}
