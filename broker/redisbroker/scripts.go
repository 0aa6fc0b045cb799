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
	stream string // stream of retained messages, one entry each, as versions before log wrote them
	log    string // stream of retained messages, one entry per group (publishScript)
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
		return names{pos: base + ":pos", stream: base + ":stream", log: base + ":log", pubsub: base, gen: b.genKeys[0]}
	}
	p := b.partition(channel)
	base := b.prefix + "{" + b.tags[p] + "}" + channel
	return names{pos: base + ":pos", stream: base + ":stream", log: base + ":log", pubsub: base, gen: b.genKeys[p], shard: p}
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

// logGroupMax bounds the messages of one entry of a channel's log: the
// trim and the history reads rely on it (an entry with id e holds at most
// offsets e to e+logGroupMax-1). A group is the messages of one channel
// in one script call, so perCall may not exceed it.
const logGroupMax = 64

var _ = [logGroupMax - perCall]struct{}{} // perCall <= logGroupMax

// publishScript publishes the messages of one partition (on one server:
// any messages) in one call, grouped by channel: for each channel it
// checks the messages' idempotency keys, assigns the channel's next
// offsets, keeps the messages in the log when the namespace keeps
// history and publishes them, atomically, so that offsets, history and
// live delivery agree on the order of a channel's messages, and two nodes
// racing with one key publish it once. Its cost is per channel where it
// can be: one HMGET, one HINCRBY (by the group's count), one PUBLISH and,
// with history, one XADD per channel, besides the generation's HGET per
// call (a GET and a SET more per message with a key). The expiry is
// renewed on a schedule, not by every publish (a PEXPIRE and an HSET
// once per TTL/16). A call carries many messages, which spreads the cost
// of running a script (setting up KEYS and ARGV, entering Lua, each
// redis.call) that a one-message call pays in full.
//
//	KEYS[1] generation hash; then per channel group: the position hash,
//	  the stream, the log, then the idempotency key of each keyed message
//	  in order
//	ARGV[1] a fresh id: the epoch of a channel that starts one
//	ARGV[2] time (Unix ms), ARGV[3] PUBLISH or SPUBLISH; then per group:
//	  the message count n, the count of keyed messages nk, TTL in ms,
//	  history size, pub/sub channel; then when nk = 0 the data of all
//	  its messages in one argument, each framed "<len>:<data>", back to
//	  back; when nk > 0 per message its key's window in ms ("0": no
//	  key) and its framed data
//
// The position hash holds epoch, offset, gen (the generation it was
// created in), g, the history size of the last publish ("0" or absent:
// no log), h, the same for the stream of older versions, and x and l,
// when (Unix ms, a publishing node's clock) its expiry is next due for
// renewal and for which TTL: see the script. A channel is kept at least
// its TTL after its last publish and at most 1.125 times it, provided the
// nodes' clocks agree within TTL/16 (90 minutes for the default 24 h,
// 37 s for 10 minutes). Versions before x and l renewed the expiry to the
// TTL on every publish, which keeps the lower bound during a rolling
// upgrade only when the nodes of the new version publish last; a channel
// of the old and new versions' mixed publishes may expire up to TTL/16
// early until the last old node is gone. A channel starts a new epoch
// when it has no state, or when its gen is not the current generation:
// Redis has restored an older copy of its data since (guard.go), so
// offsets after the stored one may have been handed out already. An
// idempotency key holds "<epoch> <offset>" of the publish that used it,
// expiring after its window; a message whose key is there (or used
// earlier in the call) publishes nothing and answers that position.
//
// History is the log: a stream with one entry per group, id "<first
// offset>-0", fields n (its message count, at most logGroupMax), t (Unix
// ms) and g, the group's framed data as published ("<len>:<data>...").
// One XADD per group instead of one per message is most of what history
// cost Redis (each redis.call, and a listpack insert per entry). It is
// trimmed approximately (MINID ~, whole nodes at a time) below the
// oldest entry that may hold one of the last size offsets; the history
// script hides what lies beyond them.
//
// Versions before the log kept one stream entry per message in the
// stream ("<offset>-0", fields p, framed data, or d, raw data, and t),
// with h the size. Their nodes read only the stream, so in a rolling
// upgrade the two must not disagree: a publish of this version moves
// what the stream retains into the log (one entry per message), deletes
// the stream and sets h to "0", so that an older node reads the channel
// as keeping no history (its subscribers are told recovered: false,
// never given a wrong or gapped history), and when an older node
// publishes after it, its stream holds only its own consecutive
// messages since, which it reads correctly and this version reads
// beside the log. A log an older version's new epoch left behind has no
// g and is deleted by the next publish that keeps history.
//
// What goes out on pub/sub is one message per channel group, holding all
// its new messages: "<epoch> <ts> <first offset> <len>:<data><len>:<data>..."
// (decodePayload), the offsets consecutive from the first. One PUBLISH
// per group instead of one per message is most of what a message cost
// Redis (the call, and a write to every subscribed node), and the format
// is cheaper for Lua to build than JSON and for the nodes to read. With
// history, the same bytes after the head are the log entry's g.
//
// It returns per group {epoch, first offset, repeats}: the group's new
// messages have the offsets from the first on, in order; repeats is ""
// or "<i> <epoch> <offset>,..." for each message i (from 1) of the group
// that repeated a key, with the position it answers. Offsets are formatted
// with %d: Lua's tostring would switch to exponent notation past 1e14.
var publishScript = redis.NewScript(publishSource)

// entryEndLua defines entryEnd(e): the last offset of a stream entry of
// the log (its n field) or of the stream (one message).
const entryEndLua = `
local function entryEnd(e)
  local o, f, n = tonumber(string.match(e[1], '^(%d+)')), e[2], 1
  for i = 1, #f, 2 do
    if f[i] == 'n' then n = tonumber(f[i + 1]) end
  end
  return o + n - 1
end
`

const publishSource = `
local GROUP = 64
` + entryEndLua + `
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then
  gen = ARGV[1]
  redis.call('HSET', KEYS[1], 'gen', gen)
end
local pub, now, out, k, a = ARGV[3], tonumber(ARGV[2]), {}, 2, 4
-- migrate moves what an older version's stream retains (the last h
-- offsets up to last) into log, one entry per message, past log's
-- newest entry.
local function migrate(stream, log, last, h)
  local top = 0
  local e = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
  if #e > 0 then top = entryEnd(e[1]) end
  local lo = math.max(last - h + 1, top + 1, 1)
  for _, e in ipairs(redis.call('XRANGE', stream, string.format('%d', lo), '+')) do
    local f, d, t = e[2], nil, '0'
    for i = 1, #f, 2 do
      local v = f[i + 1]
      if f[i] == 'p' then d = v
      elseif f[i] == 'd' then d = #v .. ':' .. v
      elseif f[i] == 't' then t = v end
    end
    if d then redis.call('XADD', log, e[1], 'n', '1', 't', t, 'g', d) end
  end
end
-- xadd appends the n messages from offset first to log as one entry and
-- trims what no longer holds one of the last size offsets.
local function xadd(log, first, n, body, size, sexp)
  local id = string.format('%d', first) .. '-0'
  local minid = first + n - tonumber(size) - (GROUP - 1)
  if minid > 1 then
    redis.call('XADD', log, 'MINID', '~', string.format('%d', minid), id, 'n', n, 't', ARGV[2], 'g', body)
  else
    redis.call('XADD', log, id, 'n', n, 't', ARGV[2], 'g', body)
  end
  if sexp then redis.call('PEXPIRE', log, sexp) end
end
while a <= #ARGV do
  local n, nk, ttl, size, chan = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local pos, stream, log = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  a, k = a + 5, k + 3
  -- na: the group's data arguments (one without keys).
  local na, m, fresh, ik, prev = 1, n, nil, nil, nil
  if nk > 0 then
    -- Keys first: fresh[i] marks what publishes, ik[i] its key; prev[i]
    -- is what a repeat answers ("<epoch> <offset>", or the index of the
    -- message earlier in this call that used the key).
    na, m, fresh, ik, prev = 2 * n, 0, {}, {}, {}
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
    local st = redis.call('HMGET', pos, 'epoch', 'gen', 'h', 'x', 'l', 'g')
    local hist, glog = st[3], st[6]
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
      epoch, first, hist, glog, due = ARGV[1], 1, '0', '0', true
      redis.call('DEL', pos, stream, log)
      redis.call('HSET', pos, 'epoch', epoch, 'offset', m, 'gen', gen, 'h', '0')
    end
    -- A log started now needs its expiry; one kept renews with pos.
    local newLog = size ~= '0' and (not glog or glog == '0')
    if due or newLog then
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
      -- A log without g is not this state's (an older version started
      -- a new epoch since): it goes.
      if not glog then redis.call('DEL', log) end
      if hist and hist ~= '0' then migrate(stream, log, first - 1, tonumber(hist)) end
      if glog ~= size then redis.call('HSET', pos, 'g', size) end
    elseif glog and glog ~= '0' then
      redis.call('DEL', log)
      redis.call('HSET', pos, 'g', '0')
    end
    if hist and hist ~= '0' then
      redis.call('DEL', stream)
      redis.call('HSET', pos, 'h', '0')
    end
  end
  local off1 = string.format('%d', first)
  local head = (epoch or '') .. ' ' .. ARGV[2] .. ' ' .. off1 .. ' '
  local dups = ''
  if nk == 0 then
    -- The hot path: every message is new, and the group's data is one
    -- argument, ready to go out (and into the log) as it is.
    local body = ARGV[a]
    if size ~= '0' then xadd(log, first, n, body, size, sexp) end
    redis.call(pub, chan, head .. body)
  else
    -- Keys, then one log entry and one PUBLISH carrying the group's new
    -- messages; offs[i] is message i's offset, for repeats of its key.
    local parts, offs, reps, j = {}, {}, {}, 0
    for i = 1, n do
      local w, data = ARGV[a + 2 * i - 2], ARGV[a + 2 * i - 1]
      if fresh[i] then
        local off = first + j
        j = j + 1
        parts[j] = data
        if ik[i] then
          local o = string.format('%d', off)
          offs[i] = o
          redis.call('SET', ik[i], epoch .. ' ' .. o, 'PX', w)
        end
      else
        local p = prev[i]
        if type(p) == 'number' then p = epoch .. ' ' .. offs[p] end
        reps[#reps + 1] = i .. ' ' .. p
      end
    end
    if j > 0 then
      local body = table.concat(parts)
      if size ~= '0' then xadd(log, first, j, body, size, sexp) end
      redis.call(pub, chan, head .. body)
    end
    dups = table.concat(reps, ',')
  end
  out[#out + 1] = epoch or ''
  out[#out + 1] = off1
  out[#out + 1] = dups
  a = a + na
end
return out
`

// historyScript reads a channel's position and part of its history in
// one atomic step. Like the memory engine, it gives a channel without
// state a new epoch (kept for the default TTL), so that a subscriber that
// learnt the position before the first publish sees that publish in the
// same epoch. A channel whose state predates the current generation
// starts its new epoch here too, so that readers learn of it before the
// next publish.
//
//	KEYS[1] position hash, KEYS[2] stream, KEYS[3] generation hash,
//	KEYS[4] log
//	ARGV[1] epoch to use if the channel starts one, ARGV[2] its TTL in ms
//	ARGV[3] "" (position only), "f" (the first ARGV[6] messages from
//	        ARGV[5] on) or "r" (the last ARGV[6] down to ARGV[5])
//	ARGV[4] the caller's epoch: if set and different, ARGV[5] becomes "-"
//	ARGV[5] lowest offset wanted ("-": all, "+": none), ARGV[6] COUNT
//
// It returns {epoch, offset, the oldest retained offset ("0": none), log
// entries, stream entries, the lowest offset wanted}: the entries hold at
// least the messages asked for (log entries are whole groups, which may
// begin below the lowest offset), and the caller picks them out
// (parseHistory). Only the last max(g, h) offsets count as retained (the
// history size of the last publish, of this version or an older one).
// The stream is read only while h says an older version wrote it since
// (publishScript).
var historyScript = redis.NewScript(historySource)

const historySource = `
local GROUP = 64
` + entryEndLua + `
local st = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'gen', 'h', 'g')
local gen = redis.call('HGET', KEYS[3], 'gen')
if not gen then
  gen = ARGV[1]
  redis.call('HSET', KEYS[3], 'gen', gen)
end
local epoch, offset = st[1], st[2]
if not epoch or st[3] ~= gen then
  epoch, offset = ARGV[1], '0'
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0, 'gen', gen, 'h', '0')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {epoch, offset, '0', {}, {}, '0'}
end
if not offset then offset = '0' end
local h, g = tonumber(st[4] or '0'), tonumber(st[5] or '0')
local size = math.max(h, g)
if size <= 0 then return {epoch, offset, '0', {}, {}, '0'} end
-- The retained window: the last size offsets, whatever else the
-- approximate trim left. Its oldest message is in the log unless only
-- the stream holds one (log entries are older than the stream's).
local lo = math.max(tonumber(offset) - size + 1, 1)
local los = string.format('%d', lo)
local first = nil
if g > 0 then
  local e = redis.call('XREVRANGE', KEYS[4], los, '-', 'COUNT', 1)
  if #e > 0 and entryEnd(e[1]) >= lo then
    first = lo
  else
    e = redis.call('XRANGE', KEYS[4], los, '+', 'COUNT', 1)
    if #e > 0 then first = tonumber(string.match(e[1][1], '^(%d+)')) end
  end
end
if not first and h > 0 then
  local e = redis.call('XRANGE', KEYS[2], los, '+', 'COUNT', 1)
  if #e > 0 then first = tonumber(string.match(e[1][1], '^(%d+)')) end
end
if not first then return {epoch, offset, '0', {}, {}, '0'} end
local fs = string.format('%d', first)
local start = ARGV[5]
if ARGV[4] ~= '' and ARGV[4] ~= epoch then start = '-' end
if ARGV[3] == '' or start == '+' then return {epoch, offset, fs, {}, {}, '0'} end
local s = first
if start ~= '-' then s = math.max(tonumber(start), first) end
local ss = string.format('%d', s)
-- Log entries that may hold s begin at most GROUP - 1 below it; reading
-- forward, up to GROUP - 1 entries may lie wholly below s.
local ls = string.format('%d', math.max(s - GROUP + 1, 1))
local c = tonumber(ARGV[6])
local logs, strs = {}, {}
if ARGV[3] == 'f' then
  if g > 0 then logs = redis.call('XRANGE', KEYS[4], ls, '+', 'COUNT', c + GROUP - 1) end
  if h > 0 then strs = redis.call('XRANGE', KEYS[2], ss, '+', 'COUNT', c) end
elseif ARGV[3] == 'r' then
  if g > 0 then logs = redis.call('XREVRANGE', KEYS[4], '+', ls, 'COUNT', c) end
  if h > 0 then strs = redis.call('XREVRANGE', KEYS[2], '+', ss, 'COUNT', c) end
end
return {epoch, offset, fs, logs, strs, ss}
`
