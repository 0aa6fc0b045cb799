package redisbroker

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
)

// countHandler counts the messages the engine delivers.
type countHandler struct{ n atomic.Int64 }

func (h *countHandler) HandleMessage(*broker.Message) { h.n.Add(1) }
func (h *countHandler) HandleReconnect()              {}

var benchData = json.RawMessage(`{"price":101.25,"symbol":"HRLD","seq":123456}`)

// BenchmarkRedisPublish measures one publish (the script: position, stream
// append with history trim, PUBLISH) on a local redis-server, one at a
// time and from parallel goroutines, with this node subscribed so every
// message also comes back through the pub/sub connection.
func BenchmarkRedisPublish(b *testing.B) {
	srv := brokertest.StartRedis(b)
	r := broker.Retention{Size: 100}
	run := func(b *testing.B, parallel bool) {
		h := &countHandler{}
		br := newTestBroker(b, srv.URL(), h)
		ctx := context.Background()
		if err := br.Subscribe(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		if !parallel {
			for b.Loop() {
				if _, err := br.Publish(ctx, "bench", benchData, r); err != nil {
					b.Fatal(err)
				}
			}
		} else {
			b.SetParallelism(8) // 16 publishers on 2 cores: Redis round trips overlap
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := br.Publish(ctx, "bench", benchData, r); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
	}
	b.Run("serial", func(b *testing.B) { run(b, false) })
	b.Run("parallel", func(b *testing.B) { run(b, true) })
}
