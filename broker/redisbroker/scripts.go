package redisbroker

import (
	"hash/fnv"

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

// partition returns the Cluster partition of channel.
func (b *Broker) partition(channel string) int {
	h := fnv.New32a()
	h.Write([]byte(channel))
	return int(h.Sum32() % uint32(len(b.genKeys)))
}

// names returns channel's keys.
//
// Without cluster the hash tag is the channel itself
// ("herald:{stocks:AAPL}:pos"), which reads well in redis-cli. With
// Redis Cluster the tag is the channel's partition instead
// ("herald:{<tag>}stocks:AAPL:pos", tags from slots.go): one SSUBSCRIBE command may only name
// channels of one slot, and go-redis resubscribes a connection's channels
// in one command after a reconnect, so every channel carried by one
// pub/sub connection must share a slot. Partitions give a fixed, small
// number of connections however many channels a node has.
func (b *Broker) names(channel string) names {
	if !b.sharded {
		base := b.prefix + "{" + channel + "}"
		return names{pos: base + ":pos", stream: base + ":stream", pubsub: base, gen: b.genKeys[0]}
	}
	p := b.partition(channel)
	base := b.prefix + "{" + b.tags[p] + "}" + channel
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
	return b.prefix + "{" + b.tags[i] + "}"
}

// publishScript publishes one or more messages of one partition (on one
// server: any messages) in one call: for each, in order, it assigns the
// channel's next offset, keeps the message in the stream when the
// namespace keeps history and publishes it, atomically, so that offsets,
// history and live delivery agree on the order of a channel's messages.
// Several messages per call spread the cost of running a script (setting
// up KEYS and ARGV, entering Lua), which is most of what a one-message
// script costs Redis. Per message it makes four calls without history,
// two more with it.
//
//	KEYS[1] generation hash; then per message i (from 0):
//	  KEYS[2+2i] position hash, KEYS[3+2i] stream
//	ARGV[1] a fresh id: the epoch of a channel that starts one
//	ARGV[2] time (Unix ms), ARGV[3] PUBLISH or SPUBLISH; then per message:
//	  ARGV[4+5i] TTL in ms, ARGV[5+5i] history size, ARGV[6+5i] data (JSON),
//	  ARGV[7+5i] pub/sub channel, ARGV[8+5i] the channel name as a JSON string
//
// The position hash holds epoch, offset, gen (the generation it was
// created in) and h, the history size of the last publish ("0": no
// stream). The stream is trimmed approximately (MAXLEN ~), whole nodes at
// a time, which costs Redis a tenth of an exact trim; it keeps at least
// the size, and the history script hides what lies beyond it. A channel
// starts a new epoch when it has no state, or when its gen is not the
// current generation: Redis has restored an older copy of its data since
// (guard.go), so offsets after the stored one may have been handed out
// already. It returns {epoch, offset} per message, flattened. Offsets are
// formatted with %d: Lua's tostring would switch to exponent notation past
// 1e14.
var publishScript = redis.NewScript(publishSource)

const publishSource = `
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then
  gen = ARGV[1]
  redis.call('HSET', KEYS[1], 'gen', gen)
end
local out = {}
for i = 0, (#KEYS - 1) / 2 - 1 do
  local pos, stream, a = KEYS[2 + 2 * i], KEYS[3 + 2 * i], 4 + 5 * i
  local ttl, size, data = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local st = redis.call('HMGET', pos, 'epoch', 'gen', 'h')
  local epoch, offset, hist = st[1], 1, st[3]
  if epoch and st[2] == gen then
    offset = redis.call('HINCRBY', pos, 'offset', 1)
  else
    epoch = ARGV[1]
    redis.call('HSET', pos, 'epoch', epoch, 'offset', 1, 'gen', gen, 'h', '0')
    redis.call('DEL', stream)
    hist = '0'
  end
  local off = string.format('%d', offset)
  redis.call('PEXPIRE', pos, ttl)
  if size ~= '0' then
    redis.call('XADD', stream, 'MAXLEN', '~', size, off .. '-0', 'd', data, 't', ARGV[2])
    redis.call('PEXPIRE', stream, ttl)
    if hist ~= size then redis.call('HSET', pos, 'h', size) end
  elseif hist and hist ~= '0' then
    redis.call('DEL', stream)
    redis.call('HSET', pos, 'h', '0')
  end
  redis.call(ARGV[3], ARGV[a + 3], '{"channel":' .. ARGV[a + 4] .. ',"offset":' .. off ..
    ',"epoch":"' .. epoch .. '","ts":' .. ARGV[2] .. ',"data":' .. data .. '}')
  out[#out + 1] = epoch
  out[#out + 1] = off
end
return out
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
