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

// idem is the key remembering idempotency key k on the channel: after
// the position's name, so in its slot. ":pos" is the position hash's
// suffix.
func (n names) idem(k string) string {
	return n.pos[:len(n.pos)-len(":pos")] + ":k:" + k
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
// ("herald:{<tag>}stocks:AAPL:pos", tags from slots.go): one SSUBSCRIBE
// command may only name channels of one slot, and a node resubscribes a
// partition's channels in one command after a reconnect or a move
// (nodeconn.go), so every channel of a partition must share a slot.
// Partitions give a fixed, small number of slots to follow, one
// connection per master, however many channels a node has.
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

// publishScript publishes the messages of one partition (on one server:
// any messages) in one call, grouped by channel: for each channel it
// checks the messages' idempotency keys, assigns the channel's next
// offsets, keeps the messages in the stream when the namespace keeps
// history and publishes them, atomically, so that offsets, history and
// live delivery agree on the order of a channel's messages, and two nodes
// racing with one key publish it once. Its cost is per channel where it
// can be: one HMGET, one HINCRBY (by the group's count) and one PUBLISH
// per channel, besides the generation's HGET per call (one XADD more per
// message with history, a GET and a SET more with a key). The expiry is
// renewed on a schedule, not by every publish (a PEXPIRE and an HSET
// once per TTL/16), and the stream is trimmed by the group's last XADD.
// A call carries many messages, which spreads the cost of running a
// script (setting up KEYS and ARGV, entering Lua, each redis.call) that
// a one-message call pays in full.
//
//	KEYS[1] generation hash; then per channel group: the position hash,
//	  the stream, then the idempotency key of each keyed message in order
//	ARGV[1] a fresh id: the epoch of a channel that starts one
//	ARGV[2] time (Unix ms), ARGV[3] PUBLISH or SPUBLISH; then per group:
//	  the message count n, the count of keyed messages nk, TTL in ms,
//	  history size, pub/sub channel; then per message its data (JSON), or
//	  when nk > 0 its key's window in ms ("0": no key) and its data
//
// The position hash holds epoch, offset, gen (the generation it was
// created in), h, the history size of the last publish ("0": no
// stream), and x and l, when (Unix ms, a publishing node's clock) its
// expiry is next due for renewal and for which TTL: see the script. A
// channel is kept at least its TTL after its last publish and at most
// 1.125 times it, provided the nodes' clocks agree within TTL/16 (90
// minutes for the default 24 h, 37 s for 10 minutes). Versions before x
// and l renewed the expiry to the TTL on every publish, which keeps the
// lower bound during a rolling upgrade only when the nodes of the new
// version publish last; a channel of the old and new versions' mixed
// publishes may expire up to TTL/16 early until the last old node is gone.
// The stream is trimmed approximately (MAXLEN ~), whole nodes at
// a time, which costs Redis a tenth of an exact trim; it keeps at least
// the size, and the history script hides what lies beyond it. A channel
// starts a new epoch when it has no state, or when its gen is not the
// current generation: Redis has restored an older copy of its data since
// (guard.go), so offsets after the stored one may have been handed out
// already. An idempotency key holds "<epoch> <offset>" of the publish that
// used it, expiring after its window; a message whose key is there (or
// used earlier in the call) publishes nothing and answers that position.
//
// What goes out on pub/sub is one message per channel group, holding all
// its new messages: "<epoch> <ts> <first offset> <len>:<data><len>:<data>..."
// (decodePayload), the offsets consecutive from the first. One PUBLISH
// per group instead of one per message is most of what a message cost
// Redis (the call, and a write to every subscribed node), and the format
// is cheaper for Lua to build than JSON and for the nodes to read.
//
// It returns per group {epoch, first offset, repeats}: the group's new
// messages have the offsets from the first on, in order; repeats is ""
// or "<i> <epoch> <offset>,..." for each message i (from 1) of the group
// that repeated a key, with the position it answers. Offsets are formatted
// with %d: Lua's tostring would switch to exponent notation past 1e14.
var publishScript = redis.NewScript(publishSource)

const publishSource = `
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then
  gen = ARGV[1]
  redis.call('HSET', KEYS[1], 'gen', gen)
end
local pub, now, out, k, a = ARGV[3], tonumber(ARGV[2]), {}, 2, 4
-- Stream ids without formatting a number per message: "<o div 100>"
-- formatted once per hundred offsets, then the last two digits cut from
-- DIG (string.format costs about a microsecond a call here).
local DIG, idq, ids = '00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899', -1, ''
local function sid(o)
  if o < 100 then return string.format('%d', o) .. '-0' end
  local r = o % 100
  local q = (o - r) / 100
  if q ~= idq then idq, ids = q, string.format('%d', q) end
  return ids .. string.sub(DIG, 2 * r + 1, 2 * r + 2) .. '-0'
end
while a <= #ARGV do
  local n, nk, ttl, size, chan = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local pos, stream = KEYS[k], KEYS[k + 1]
  a, k = a + 5, k + 2
  local step, m, fresh, ik, prev = 1, n, nil, nil, nil
  if nk > 0 then
    -- Keys first: fresh[i] marks what publishes, ik[i] its key; prev[i]
    -- is what a repeat answers ("<epoch> <offset>", or the index of the
    -- message earlier in this call that used the key).
    step, m, fresh, ik, prev = 2, 0, {}, {}, {}
    local seen = {}
    for i = 1, n do
      if ARGV[a + 2 * (i - 1)] ~= '0' then
        local key = KEYS[k]
        k = k + 1
        if seen[key] then
          prev[i] = seen[key]
        else
          local v = redis.call('GET', key)
          if v then
            prev[i] = v
          else
            seen[key], fresh[i], ik[i], m = i, true, key, m + 1
          end
        end
      else
        fresh[i], m = true, m + 1
      end
    end
  end
  local epoch, first, sexp = nil, 0, nil
  if m > 0 then
    local st = redis.call('HMGET', pos, 'epoch', 'gen', 'h', 'x', 'l')
    local hist = st[3]
    epoch = st[1]
    -- The expiry is renewed when due, not on every publish: to TTL + 2s
    -- (s = TTL/16), noting in x when to renew it next (s from now) and
    -- in l the TTL it was for. So a channel is kept at least TTL after
    -- its last publish (a node's clock may be up to s behind the one
    -- that renewed it) and at most TTL + 2s; a changed TTL renews at once.
    local nx = tonumber(st[4])
    local due = st[5] ~= ttl or not nx or now > nx
    if epoch and st[2] == gen then
      first = redis.call('HINCRBY', pos, 'offset', m) - m + 1
    else
      epoch, first, hist, due = ARGV[1], 1, '0', true
      redis.call('DEL', pos, stream)
      redis.call('HSET', pos, 'epoch', epoch, 'offset', m, 'gen', gen, 'h', '0')
    end
    -- A stream created now needs its expiry; one kept renews with pos.
    local newStream = size ~= '0' and (not hist or hist == '0')
    if due or newStream then
      local t = tonumber(ttl)
      local s = math.floor(t / 16)
      local keep = string.format('%d', t + 2 * s)
      if due then
        redis.call('PEXPIRE', pos, keep)
        redis.call('HSET', pos, 'x', string.format('%d', now + s), 'l', ttl)
      end
      if size ~= '0' then sexp = keep end
    end
    if size ~= '0' then
      if hist ~= size then redis.call('HSET', pos, 'h', size) end
    elseif hist and hist ~= '0' then
      redis.call('DEL', stream)
      redis.call('HSET', pos, 'h', '0')
    end
  end
  local off1 = string.format('%d', first)
  local head = (epoch or '') .. ' ' .. ARGV[2] .. ' ' .. off1 .. ' '
  local dups = ''
  if nk == 0 then
    -- The hot path: every message is new, and the data arguments are
    -- contiguous, ready to go out as they are. The stream is trimmed
    -- once, by the group's last entry.
    if size ~= '0' then
      for i = 0, n - 2 do
        redis.call('XADD', stream, sid(first + i), 'p', ARGV[a + i], 't', ARGV[2])
      end
      redis.call('XADD', stream, 'MAXLEN', '~', size, sid(first + n - 1), 'p', ARGV[a + n - 1], 't', ARGV[2])
      if sexp then redis.call('PEXPIRE', stream, sexp) end
    end
    redis.call(pub, chan, head .. table.concat(ARGV, '', a, a + n - 1))
  else
    -- Stream entries, keys, and one PUBLISH carrying the group's new
    -- messages; offs[i] is message i's offset, for repeats of its key.
    local parts, offs, reps, j = {}, {}, {}, 0
    for i = 1, n do
      local w, data = ARGV[a + 2 * i - 2], ARGV[a + 2 * i - 1]
      if fresh[i] then
        local off = first + j
        j = j + 1
        parts[j] = data
        if size ~= '0' or ik[i] then
          local o = string.format('%d', off)
          offs[i] = o
          if size ~= '0' then
            redis.call('XADD', stream, 'MAXLEN', '~', size, o .. '-0', 'p', data, 't', ARGV[2])
          end
          if ik[i] then redis.call('SET', ik[i], epoch .. ' ' .. o, 'PX', w) end
        end
      else
        local p = prev[i]
        if type(p) == 'number' then p = epoch .. ' ' .. offs[p] end
        reps[#reps + 1] = i .. ' ' .. p
      end
    end
    if j > 0 then
      if sexp then redis.call('PEXPIRE', stream, sexp) end
      redis.call(pub, chan, head .. table.concat(parts))
    end
    dups = table.concat(reps, ',')
  end
  out[#out + 1] = epoch or ''
  out[#out + 1] = off1
  out[#out + 1] = dups
  a = a + step * n
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
