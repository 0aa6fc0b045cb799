package redisbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
	"github.com/redis/go-redis/v9"
)

// fastFail is how quickly calls must fail while Redis is down.
const fastFail = 3 * time.Second

var retain = broker.Retention{Size: 100, TTL: time.Hour}

func data(i int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)) }

func mustPublish(t *testing.T, b *Broker, channel string, i int) broker.Position {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pos, err := b.Publish(ctx, channel, data(i), retain)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return pos
}

func mustSubscribe(t *testing.T, b *Broker, channels ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Subscribe(ctx, channels...); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
}

// expectUnavailable runs call (with a generous context, so that only the
// engine's own timeouts can make it fail fast) and checks it fails with
// broker.ErrUnavailable within fastFail.
func expectUnavailable(t *testing.T, what string, call func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := call(ctx)
	took := time.Since(start)
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("%s while Redis is down: %v, want ErrUnavailable", what, err)
	}
	if took > fastFail {
		t.Errorf("%s took %v to fail, want under %v", what, took, fastFail)
	}
	if err != nil && !errors.Is(err, broker.ErrUnavailable) {
		return
	}
	t.Logf("%s failed in %v: %v", what, took, err)
}

// downThenUp kills the server, checks that every call fails fast, and
// restarts it.
func downThenUp(t *testing.T, srv *brokertest.RedisServer, b *Broker) {
	t.Helper()
	srv.Kill()
	expectUnavailable(t, "Publish", func(ctx context.Context) error {
		_, err := b.Publish(ctx, "feed", data(0), retain)
		return err
	})
	expectUnavailable(t, "History", func(ctx context.Context) error {
		_, err := b.History(ctx, "feed", broker.HistoryQuery{Limit: 10})
		return err
	})
	expectUnavailable(t, "Subscribe", func(ctx context.Context) error {
		return b.Subscribe(ctx, "other")
	})
	expectUnavailable(t, "Ready", b.Ready)
	srv.Restart()
}

func TestRedisRestartKeepsHistoryWithAOF(t *testing.T) {
	srv := brokertest.StartRedis(t, brokertest.AppendOnly(true))
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, srv.URL(), rec)
	mustSubscribe(t, b, "feed")
	var last broker.Position
	for i := 1; i <= 3; i++ {
		last = mustPublish(t, b, "feed", i)
	}
	rec.WaitMessages(t, "feed", 3)

	downThenUp(t, srv, b)

	rec.WaitReconnects(t, 1)
	brokertest.WaitUntil(t, 10*time.Second, func() error { return b.Ready(context.Background()) })
	pos := mustPublish(t, b, "feed", 4)
	if pos != (broker.Position{Epoch: last.Epoch, Offset: 4}) {
		t.Fatalf("publish after restart = %+v, want %s:4 (same epoch: the data survived)", pos, last.Epoch)
	}
	msgs := rec.WaitMessages(t, "feed", 4)
	if len(msgs) != 4 || msgs[3].Offset != 4 || msgs[3].Epoch != last.Epoch {
		t.Fatalf("delivered %+v, want offsets 1-4 in epoch %s", msgs, last.Epoch)
	}
	h, err := b.History(context.Background(), "feed", broker.HistoryQuery{Since: broker.Position{Epoch: last.Epoch}, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !h.Complete || len(h.Messages) != 4 || h.Position != pos || string(h.Messages[0].Data) != string(data(1)) {
		t.Fatalf("history after restart = %+v, want messages 1-4, complete, at %+v", h, pos)
	}
	// Subscribing works again, and the reconnect was reported once.
	mustSubscribe(t, b, "other")
	mustPublish(t, b, "other", 1)
	rec.WaitMessages(t, "other", 1)
	if n := rec.Reconnects(); n != 1 {
		t.Fatalf("HandleReconnect called %d times, want 1", n)
	}
}

func TestRedisRestartWithoutAOFStartsNewEpoch(t *testing.T) {
	srv := brokertest.StartRedis(t, brokertest.AppendOnly(false))
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, srv.URL(), rec)
	mustSubscribe(t, b, "feed")
	mustPublish(t, b, "feed", 1)
	last := mustPublish(t, b, "feed", 2)
	rec.WaitMessages(t, "feed", 2)

	downThenUp(t, srv, b)

	rec.WaitReconnects(t, 1)
	h, err := b.History(context.Background(), "feed", broker.HistoryQuery{Since: last, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if h.Position.Epoch == last.Epoch || h.Position.Offset != 0 || h.Complete || len(h.Messages) != 0 {
		t.Fatalf("history after losing the data = %+v, want a new epoch at 0, not complete", h)
	}
	pos := mustPublish(t, b, "feed", 3)
	if pos != (broker.Position{Epoch: h.Position.Epoch, Offset: 1}) {
		t.Fatalf("publish = %+v, want %s:1", pos, h.Position.Epoch)
	}
	msgs := rec.WaitMessages(t, "feed", 3)
	if m := msgs[2]; m.Epoch != pos.Epoch || m.Offset != 1 {
		t.Fatalf("delivered %s:%d, want %s:1", m.Epoch, m.Offset, pos.Epoch)
	}
}

// admin returns a plain client for poking at the server.
func admin(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A pub/sub connection killed while Redis stays up: go-redis redials and
// resubscribes, and the engine reports the reconnect once.
func TestRedisPubSubConnectionKilled(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, srv.URL(), rec)
	mustSubscribe(t, b, "feed")
	mustPublish(t, b, "feed", 1)
	rec.WaitMessages(t, "feed", 1)

	ctx := context.Background()
	n, err := admin(t, srv.Addr()).ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	if err != nil || n != 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub = %d, %v; want 1 connection killed", n, err)
	}
	rec.WaitReconnects(t, 1)
	mustPublish(t, b, "feed", 2)
	if msgs := rec.WaitMessages(t, "feed", 2); msgs[1].Offset != 2 {
		t.Fatalf("after the reconnect got %+v", msgs[1])
	}
	if n := rec.Reconnects(); n != 1 {
		t.Fatalf("HandleReconnect called %d times, want 1", n)
	}
}

// A server that stops answering (here: every client paused) makes calls
// fail within the I/O timeout, and a pub/sub connection silent past a ping
// is replaced, the reconnect reported.
func TestRedisSilentServer(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, srv.URL(), rec)
	mustSubscribe(t, b, "feed")

	ctx := context.Background()
	if err := admin(t, srv.Addr()).Do(ctx, "CLIENT", "PAUSE", 2500, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	// Redis runs the script once the pause ends: the publish was sent and
	// not answered, so its outcome is unknown (ErrUncertain), and fast.
	start := time.Now()
	if _, err := b.Publish(ctx, "feed", data(1), retain); !errors.Is(err, broker.ErrUncertain) || time.Since(start) > fastFail {
		t.Errorf("Publish to a paused server: %v after %v, want ErrUncertain within %v", err, time.Since(start), fastFail)
	}
	rec.WaitReconnects(t, 1)
	pos := mustPublish(t, b, "feed", 2)
	rec.WaitPosition(t, "feed", pos)
}

// Unsubscribe and Subscribe made while the connection is down take effect
// when it is back: nothing unsubscribed comes back to life.
func TestRedisUnsubscribeWhileDown(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, srv.URL(), rec)
	mustSubscribe(t, b, "gone", "kept")
	srv.Kill()
	brokertest.WaitUntil(t, 10*time.Second, func() error {
		if b.Ready(context.Background()) == nil {
			return errors.New("still ready")
		}
		return nil
	})
	if err := b.Unsubscribe(context.Background(), "gone"); err != nil {
		t.Fatalf("Unsubscribe while down: %v", err)
	}
	srv.Restart()
	rec.WaitReconnects(t, 1)
	mustPublish(t, b, "gone", 1)
	mustPublish(t, b, "kept", 1)
	rec.WaitMessages(t, "kept", 1)
	if got := rec.Messages("gone"); len(got) != 0 {
		t.Fatalf("delivered %d messages of a channel unsubscribed while down", len(got))
	}
	// And Redis itself no longer has it subscribed.
	chans, err := admin(t, srv.Addr()).PubSubChannels(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chans {
		if c == b.names("gone").pubsub {
			t.Fatalf("Redis still has %s subscribed: %v", c, chans)
		}
	}
}

// New fails fast, with ErrUnavailable, when nothing listens.
func TestNewUnreachable(t *testing.T) {
	srv := brokertest.StartRedis(t)
	srv.Kill()
	start := time.Now()
	_, err := New(context.Background(), Options{URL: srv.URL()}, brokertest.NewRecorder())
	if !errors.Is(err, broker.ErrUnavailable) || time.Since(start) > fastFail {
		t.Fatalf("New with Redis down = %v after %v, want ErrUnavailable within %v", err, time.Since(start), fastFail)
	}
}
