package redisbroker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
)

// testPingInterval is short so that the suite's waits (a TTL test takes
// over a second) span many idle pings: a ping path that mistook silence
// for a lost connection would call HandleReconnect, which the suite
// rejects.
const testPingInterval = 100 * time.Millisecond

var prefixes atomic.Int64

// testPrefix returns a key prefix no other test uses.
func testPrefix(t testing.TB) string {
	name := strings.NewReplacer("/", ".", " ", "_", "{", "(", "}", ")").Replace(t.Name())
	return fmt.Sprintf("t%d.%s:", prefixes.Add(1), name)
}

// newTestBroker returns an engine on url with its own prefix, closed when
// the test ends.
func newTestBroker(t testing.TB, url string, h broker.Handler, opts ...func(*Options)) *Broker {
	t.Helper()
	o := Options{URL: url, Prefix: testPrefix(t), PingInterval: testPingInterval, Logger: testLogger(t)}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, o, h)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

// testLogger logs to the test's output, shown when it fails or with -v.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestContract(t *testing.T) {
	srv := brokertest.StartRedis(t)
	brokertest.Run(t, func(t *testing.T, h broker.Handler) broker.Broker {
		return newTestBroker(t, srv.URL(), h)
	})
}

func TestStore(t *testing.T) {
	srv := brokertest.StartRedis(t)
	brokertest.RunStore(t, newTestBroker(t, srv.URL(), brokertest.NewRecorder()))
}

func TestPresence(t *testing.T) {
	srv := brokertest.StartRedis(t)
	brokertest.RunPresence(t, newTestBroker(t, srv.URL(), brokertest.NewRecorder()))
}
