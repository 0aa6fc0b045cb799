package redisbroker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
	"github.com/redis/go-redis/v9"
)

// legacyPublishScript is the publish script before publishes were
// coalesced (commit 089404c), kept here so that BenchmarkRedisPublishCPU
// measures before and after in one run: one EVALSHA round trip per
// publish, stream work (a DEL) even without history.
var legacyPublishScript = redis.NewScript(`
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local off = string.format('%d', offset)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
if offset == 1 then
  redis.call('DEL', KEYS[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '0' then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], off .. '-0', 'd', ARGV[5], 't', ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
else
  redis.call('DEL', KEYS[2])
end
redis.call(ARGV[7], ARGV[6], '{"channel":' .. ARGV[8] .. ',"offset":' .. off ..
  ',"epoch":"' .. epoch .. '","ts":' .. ARGV[4] .. ',"data":' .. ARGV[5] .. '}')
return {epoch, off}
`)

// legacyPublish is the old Publish: one script call per message.
func legacyPublish(ctx context.Context, b *Broker, channel string, r broker.Retention) error {
	n := b.names(channel)
	return legacyPublishScript.Run(ctx, b.client, []string{n.pos, n.stream},
		broker.NewEpoch(), ttlMillis(r.TTL), max(r.Size, 0), time.Now().UnixMilli(),
		[]byte(benchData), n.pubsub, "PUBLISH", encodeChannel(channel)).Err()
}

// redisCPU reads a redis-server's CPU time (user + system) from /proc.
func redisCPU(b *testing.B, c *redis.Client) time.Duration {
	b.Helper()
	pid := infoField(c.Info(context.Background(), "server").Val(), "process_id")
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		b.Fatalf("read redis-server's CPU time: %v", err)
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// scriptUsec returns the calls and microseconds INFO commandstats
// counts for the script commands (evalsha and eval).
func scriptUsec(b *testing.B, c *redis.Client) (calls, usec int64) {
	b.Helper()
	info := c.Info(context.Background(), "commandstats").Val()
	for _, cmd := range []string{"evalsha", "eval"} {
		v := infoField(info, "cmdstat_"+cmd)
		for kv := range strings.SplitSeq(v, ",") {
			k, val, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(val, 10, 64)
			switch k {
			case "calls":
				calls += n
			case "usec":
				usec += n
			}
		}
	}
	return calls, usec
}

// BenchmarkRedisPublishCPU measures publishes from 64 goroutines (like
// wrk with 64 connections) on a local redis-server, the node subscribed,
// with the engine's coalesced pipelines ("after") and the old one script
// call per publish ("before"), with and without history. Besides
// publishes/s it reports Redis's CPU per publish from /proc
// (redis-µs/publish: everything Redis spent, network included), the
// scripts' own time from INFO commandstats (script-µs/publish) and how
// many publishes one script call carried (publishes/call).
//
//	go test -run '^$' -bench BenchmarkRedisPublishCPU -benchtime 3s ./broker/redisbroker
func BenchmarkRedisPublishCPU(b *testing.B) {
	srv := brokertest.StartRedis(b)
	adm := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer adm.Close()
	for _, hist := range []struct {
		name string
		r    broker.Retention
	}{{"history", broker.Retention{Size: 20}}, {"nohistory", broker.Retention{}}} {
		for _, impl := range []string{"before", "after"} {
			b.Run(impl+"/"+hist.name, func(b *testing.B) {
				br := newTestBroker(b, srv.URL(), &countHandler{})
				ctx := context.Background()
				chans := make([]string, 16)
				for i := range chans {
					chans[i] = fmt.Sprintf("bench%d", i)
				}
				if err := br.Subscribe(ctx, chans...); err != nil {
					b.Fatal(err)
				}
				if err := adm.ConfigResetStat(ctx).Err(); err != nil {
					b.Fatal(err)
				}
				cpu0 := redisCPU(b, adm)
				b.ReportAllocs()
				b.SetParallelism(32) // 64 publishers on 2 cores
				b.ResetTimer()
				var next atomicCounter
				b.RunParallel(func(pb *testing.PB) {
					ch := chans[next.add()%len(chans)]
					for pb.Next() {
						var err error
						if impl == "before" {
							err = legacyPublish(ctx, br, ch, hist.r)
						} else {
							_, err = br.Publish(ctx, ch, benchData, hist.r)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				cpu := redisCPU(b, adm) - cpu0
				calls, usec := scriptUsec(b, adm)
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "redis-µs/publish")
				if calls > 0 {
					// A call may carry several publishes: per publish.
					b.ReportMetric(float64(usec)/float64(b.N), "script-µs/publish")
					b.ReportMetric(float64(b.N)/float64(calls), "publishes/call")
				}
			})
		}
	}
}

// atomicCounter hands each parallel publisher its own channel.
type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add() int { return int(c.n.Add(1)) }

// encodeChannel returns the channel's name as a JSON string, for the
// message the legacy publish script assembles. Valid channel names need no
// escaping, so they skip the encoder.
func encodeChannel(channel string) string {
	for i := 0; i < len(channel); i++ {
		if c := channel[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(channel) // a string always encodes
			return string(b)
		}
	}
	return `"` + channel + `"`
}
