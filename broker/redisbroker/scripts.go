package redisbroker

import (
	"hash/fnv"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// names are the Redis keys and the pub/sub channel of one Herald channel.
// They share one hash tag, so that in Redis Cluster they live in one slot:
// a publish script may only touch keys of a single slot, and a sharded
// pub/sub channel is owned by the node of its slot.
type names struct {
	pos    string // hash: epoch, offset
	stream string // stream of retained messages, entry id "<offset>-0"
	pubsub string // channel the publish script publishes to
	gen    string // hash of the generation guarding the channel (see guard.go)
	shard  int    // index of the pub/sub connection that carries it
}

// names returns channel's keys.
//
// Without cluster the hash tag is the channel itself
// ("herald:{stocks:AAPL}:pos"), which reads well in redis-cli. With
// Redis Cluster the tag is the channel's partition instead
// ("herald:{7}stocks:AAPL:pos"): one SSUBSCRIBE command may only name
// channels of one slot, and go-redis resubscribes a connection's channels
// in one command after a reconnect, so every channel carried by one
// pub/sub connection must share a slot. Partitions give a fixed, small
// number of connections however many channels a node has.
func (b *Broker) names(channel string) names {
	if !b.sharded {
		base := b.prefix + "{" + channel + "}"
		return names{pos: base + ":pos", stream: base + ":stream", pubsub: base, gen: b.genKeys[0]}
	}
	h := fnv.New32a()
	h.Write([]byte(channel))
	p := int(h.Sum32() % uint32(len(b.shards)))
	base := b.prefix + "{" + strconv.Itoa(p) + "}" + channel
	return names{pos: base + ":pos", stream: base + ":stream", pubsub: base, gen: b.genKeys[p], shard: p}
}

// controlChannel is the pub/sub channel every connection of shard i stays
// subscribed to. Nobody publishes on it; it pins a cluster connection to the
// slot owner of its partition (go-redis routes a pub/sub connection by its
// first channel) and guarantees that every reconnect is followed by at least
// one subscribe confirmation, which is how reconnects are detected.
func (b *Broker) controlChannel(i int) string {
	if !b.sharded {
		// Channel names never hold "{", so this cannot be a channel's.
		return b.prefix + "control"
	}
	return b.prefix + "{" + strconv.Itoa(i) + "}"
}

// publishScript assigns the next offset, keeps the message in the stream
// when the namespace keeps history and publishes it, atomically, so that
// offsets, history and live delivery agree on the order of a channel's
// messages. It is lean on purpose (it runs once per message): five calls
// without history, two more with it.
//
//	KEYS[1] position hash, KEYS[2] stream, KEYS[3] generation hash
//	ARGV[1] a fresh id: the epoch if the channel starts one
//	ARGV[2] TTL in milliseconds, ARGV[3] history size
//	ARGV[4] time (Unix ms), ARGV[5] data (JSON)
//	ARGV[6] pub/sub channel, ARGV[7] PUBLISH or SPUBLISH
//	ARGV[8] the Herald channel name as a JSON string
//
// The position hash holds epoch, offset, gen (the generation it was
// created in) and h, the history size of the last publish ("0": no
// stream). The stream is trimmed approximately (MAXLEN ~), whole nodes at
// a time, which costs Redis a tenth of an exact trim; it keeps at least
// the size, and the history script hides what lies beyond it. A channel
// starts a new epoch when it has no state, or when its gen is not the
// current generation: Redis has restored an older copy of its data since
// (guard.go), so offsets after the stored one may have been handed out
// already. It returns {epoch, offset}. Offsets are formatted with %d:
// Lua's tostring would switch to exponent notation past 1e14.
var publishScript = redis.NewScript(publishSource)

const publishSource = `
local st = redis.call('HMGET', KEYS[1], 'epoch', 'gen', 'h')
local gen = redis.call('HGET', KEYS[3], 'gen')
if not gen then
  gen = ARGV[1]
  redis.call('HSET', KEYS[3], 'gen', gen)
end
local epoch, offset, hist = st[1], 1, st[3]
if epoch and st[2] == gen then
  offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
else
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 1, 'gen', gen, 'h', '0')
  redis.call('DEL', KEYS[2])
  hist = '0'
end
local off = string.format('%d', offset)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '0' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], off .. '-0', 'd', ARGV[5], 't', ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  if hist ~= ARGV[3] then redis.call('HSET', KEYS[1], 'h', ARGV[3]) end
elseif hist and hist ~= '0' then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'h', '0')
end
redis.call(ARGV[7], ARGV[6], '{"channel":' .. ARGV[8] .. ',"offset":' .. off ..
  ',"epoch":"' .. epoch .. '","ts":' .. ARGV[4] .. ',"data":' .. ARGV[5] .. '}')
return {epoch, off}
`

// historyScript reads a channel's position and part of its stream in one
// atomic step. Like the memory engine, it gives a channel without state a
// new epoch (kept for the default TTL), so that a subscriber that learnt
// the position before the first publish sees that publish in the same
// epoch. A channel whose state predates the current generation starts its
// new epoch here too, so that readers learn of it before the next publish.
//
//	KEYS[1] position hash, KEYS[2] stream, KEYS[3] generation hash
//	ARGV[1] epoch to use if the channel starts one, ARGV[2] its TTL in ms
//	ARGV[3] "" (position only), "f" (XRANGE from ARGV[5]) or
//	        "r" (XREVRANGE down to ARGV[5])
//	ARGV[4] the caller's epoch: if set and different, ARGV[5] becomes "-"
//	ARGV[5] lowest stream id wanted, ARGV[6] COUNT
//
// It returns {epoch, offset, the oldest retained offset ("0": none),
// entries}. Only the last h (the history size of the last publish)
// offsets count as retained.
var historyScript = redis.NewScript(historySource)

const historySource = `
local st = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'gen', 'h')
local gen = redis.call('HGET', KEYS[3], 'gen')
if not gen then
  gen = ARGV[1]
  redis.call('HSET', KEYS[3], 'gen', gen)
end
local epoch, offset = st[1], st[2]
if not epoch or st[3] ~= gen then
  epoch, offset = ARGV[1], '0'
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0, 'gen', gen, 'h', '0')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {epoch, offset, '0', {}}
end
if not offset then offset = '0' end
local size = tonumber(st[4] or '0')
if size <= 0 then return {epoch, offset, '0', {}} end
-- The retained window: the last size offsets, whatever else the
-- approximate trim left in the stream.
local lo = string.format('%d', math.max(tonumber(offset) - size + 1, 1))
local first = '0'
local e = redis.call('XRANGE', KEYS[2], lo, '+', 'COUNT', 1)
if #e > 0 then first = string.match(e[1][1], '^(%d+)') end
local start = ARGV[5]
if ARGV[4] ~= '' and ARGV[4] ~= epoch then start = '-' end
if start == '-' or (start ~= '+' and tonumber(start) < tonumber(lo)) then start = lo end
local entries = {}
if ARGV[3] == 'f' then
  entries = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', ARGV[6])
elseif ARGV[3] == 'r' then
  entries = redis.call('XREVRANGE', KEYS[2], '+', start, 'COUNT', ARGV[6])
end
return {epoch, offset, first, entries}
`
