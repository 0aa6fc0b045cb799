package redisbroker

import (
	"context"
	"strconv"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/redis/go-redis/v9"
)

var _ broker.Presence = (*Broker)(nil)

// Presence keys all share one hash tag, "{herald-presence}", so that one
// script can decide a transition and queue its event atomically (Redis
// Cluster runs a script only on keys of one slot). A set S is six keys:
//
//	...c:S   sorted set, connection -> expiry (Unix ms)
//	...ck:S  hash, connection -> its key
//	...n:S   hash, key -> live connections
//	...k:S   sorted set, the keys (score 0: byte order, for pages)
//	...v:S   hash, key -> value
//	...g:S   sorted set, lingering key -> when its last connection left
//
// with the index "...sets" (set -> latest expiry, for the sweeper), the
// queues "...q:NAME", their leases "...lease:NAME" and the drop counts
// "...drops". The price of one slot is that presence lives on one shard
// of a Redis Cluster; its operations are a few O(log n) steps each.
const presenceTag = "{herald-presence}"

func (b *Broker) presenceKeys(set string, ev *broker.Event) []string {
	p := b.prefix + presenceTag
	keys := []string{p + "c:" + set, p + "ck:" + set, p + "n:" + set, p + "k:" + set, p + "v:" + set, p + "g:" + set, p + "sets", p + "drops"}
	if ev != nil {
		for _, q := range ev.Queues {
			keys = append(keys, b.queueKey(q))
		}
	}
	return keys
}

func (b *Broker) queueKey(q string) string { return b.prefix + presenceTag + "q:" + q }
func (b *Broker) leaseKey(q string) string { return b.prefix + presenceTag + "lease:" + q }

// eventArgs are ARGV[1..5] of every set script: the event to record on a
// transition (type "" records none).
func eventArgs(ev *broker.Event) []any {
	if ev == nil {
		return []any{"", "", "", "", 0}
	}
	return []any{ev.Type, ev.Channel, ev.IDPrefix, broker.EventTime(ev.Time), ev.MaxLen}
}

// presenceLua is the prelude of the set scripts. KEYS as presenceKeys;
// ARGV[1..5] as eventArgs.
const presenceLua = `
local function record(key, i)
  if ARGV[1] == '' or string.sub(key, 1, 2) ~= 'u:' then return end
  local e = {id = ARGV[3] .. '-' .. i, type = ARGV[1], user = string.sub(key, 3), time = ARGV[4]}
  if ARGV[2] ~= '' then e.channel = ARGV[2] end
  local body = cjson.encode(e)
  local maxlen = tonumber(ARGV[5])
  for q = 9, #KEYS do
    if maxlen > 0 and redis.call('LLEN', KEYS[q]) >= maxlen then
      redis.call('HINCRBY', KEYS[8], KEYS[q], 1)
    else
      redis.call('RPUSH', KEYS[q], body)
    end
  end
end
local function depart(key)
  redis.call('ZREM', KEYS[4], key)
  redis.call('ZREM', KEYS[6], key)
  local v = redis.call('HGET', KEYS[5], key)
  redis.call('HDEL', KEYS[5], key)
  return v or ''
end
local function stretch(ttl)
  for i = 1, 6 do
    if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
local function unindex(set)
  if redis.call('ZCARD', KEYS[4]) == 0 then redis.call('ZREM', KEYS[7], set) end
end
`

// applyScript runs joins and leaves in order. KEYS[1] the sets index,
// KEYS[2] the drop counts, then the six keys of each set, then the
// queues. ARGV[1] the number of ops, then 16 fields per op: kind (j or l),
// index of its set's first key, set, key, conn, value, expiry (ms), key
// TTL (ms), linger (ms), now (ms), event type ("" none), channel, id
// prefix, time, queue bound, queue key indexes ("9,10"). Returns 1 or 0
// per op: whether it made a transition.
var applyScript = redis.NewScript(`
local out = {}
for o = 0, tonumber(ARGV[1]) - 1 do
  local a = 1 + o * 16
  local kind, b = ARGV[a+1], tonumber(ARGV[a+2])
  local set, key, conn, value = ARGV[a+3], ARGV[a+4], ARGV[a+5], ARGV[a+6]
  local expiry, keyttl, linger, now = ARGV[a+7], tonumber(ARGV[a+8]), tonumber(ARGV[a+9]), ARGV[a+10]
  local C, CK, N, K, V, G = KEYS[b], KEYS[b+1], KEYS[b+2], KEYS[b+3], KEYS[b+4], KEYS[b+5]
  local function record(k)
    if ARGV[a+11] == '' or string.sub(k, 1, 2) ~= 'u:' then return end
    local e = {id = ARGV[a+13] .. '-1', type = ARGV[a+11], user = string.sub(k, 3), time = ARGV[a+14]}
    if ARGV[a+12] ~= '' then e.channel = ARGV[a+12] end
    local body = cjson.encode(e)
    local maxlen = tonumber(ARGV[a+15])
    for qi in string.gmatch(ARGV[a+16], '%d+') do
      local q = KEYS[tonumber(qi)]
      if maxlen > 0 and redis.call('LLEN', q) >= maxlen then
        redis.call('HINCRBY', KEYS[2], q, 1)
      else
        redis.call('RPUSH', q, body)
      end
    end
  end
  local r = 0
  if kind == 'j' then
    if redis.call('ZADD', C, expiry, conn) == 1 then
      redis.call('HSET', CK, conn, key)
      if redis.call('HINCRBY', N, key, 1) == 1 and redis.call('ZREM', G, key) == 0 then
        r = 1
        redis.call('ZADD', K, 0, key)
        if value ~= '' then redis.call('HSET', V, key, value) end
        record(key)
      end
    end
    redis.call('ZADD', KEYS[1], 'GT', expiry, set)
    for i = b, b + 5 do
      if redis.call('PTTL', KEYS[i]) < keyttl then redis.call('PEXPIRE', KEYS[i], keyttl) end
    end
  else
    local k = redis.call('HGET', CK, conn)
    if k then
      redis.call('ZREM', C, conn)
      redis.call('HDEL', CK, conn)
      if redis.call('HINCRBY', N, k, -1) <= 0 then
        redis.call('HDEL', N, k)
        if linger > 0 then
          redis.call('ZADD', G, now, k)
        else
          redis.call('ZREM', K, k)
          redis.call('ZREM', G, k)
          redis.call('HDEL', V, k)
          record(k)
          r = 1
          if redis.call('ZCARD', K) == 0 then redis.call('ZREM', KEYS[1], set) end
        end
      end
    end
  end
  table.insert(out, r)
end
return out
`)

// ARGV[6] set, 7 expiry (ms), 8 key TTL (ms), 9... connections. Returns
// the connections not in the set.
var refreshScript = redis.NewScript(presenceLua + `
local missing = {}
for i = 9, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[7], ARGV[i])
  else
    table.insert(missing, ARGV[i])
  end
end
if redis.call('ZCARD', KEYS[4]) > 0 then
  redis.call('ZADD', KEYS[7], 'GT', ARGV[7], ARGV[6])
  stretch(tonumber(ARGV[8]))
end
return missing
`)

// ARGV[6] set, 7 now (ms), 8 linger (ms), 9 limit. Returns key, value
// pairs of the keys that left.
var reapScript = redis.NewScript(presenceLua + `
local now, linger = tonumber(ARGV[7]), tonumber(ARGV[8])
local out, i = {}, 0
local function gone(key)
  local v = depart(key)
  i = i + 1
  record(key, i)
  table.insert(out, key)
  table.insert(out, v)
end
local late = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[9])
for _, conn in ipairs(late) do
  local key = redis.call('HGET', KEYS[2], conn)
  redis.call('ZREM', KEYS[1], conn)
  redis.call('HDEL', KEYS[2], conn)
  if key and redis.call('HINCRBY', KEYS[3], key, -1) <= 0 then
    redis.call('HDEL', KEYS[3], key)
    if linger > 0 then redis.call('ZADD', KEYS[6], now, key) else gone(key) end
  end
end
if linger > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now - linger, 'LIMIT', 0, ARGV[9])
  for _, key in ipairs(due) do gone(key) end
end
unindex(ARGV[6])
return out
`)

// ARGV[6] cursor ("" starts), 7 limit. Returns more (0/1), then key,
// value pairs.
var pageScript = redis.NewScript(presenceLua + `
local from = '-'
if ARGV[6] ~= '' then from = '(' .. ARGV[6] end
local keys = redis.call('ZRANGEBYLEX', KEYS[4], from, '+', 'LIMIT', 0, tonumber(ARGV[7]) + 1)
local more = 0
if #keys > tonumber(ARGV[7]) then
  more = 1
  table.remove(keys)
end
local out = {more}
for _, k in ipairs(keys) do
  table.insert(out, k)
  table.insert(out, redis.call('HGET', KEYS[5], k) or '')
end
return out
`)

// reapLimit bounds the work of one reap script: a set with more late
// entries is finished by the next reaps.
const reapLimit = 1000

// keyTTL is how long a set's keys live past its latest write: long enough
// for its connections and a lingering key.
func keyTTL(ttl, linger time.Duration) int64 {
	return max((ttl + linger + time.Minute).Milliseconds(), 1)
}

// PresenceJoin implements broker.Presence.
func (b *Broker) PresenceJoin(ctx context.Context, op broker.PresenceOp) (bool, error) {
	op.Leave = false
	r, err := b.PresenceApply(ctx, []broker.PresenceOp{op})
	if err != nil {
		return false, err
	}
	return r[0], nil
}

// PresenceLeave implements broker.Presence.
func (b *Broker) PresenceLeave(ctx context.Context, op broker.PresenceOp) (bool, error) {
	op.Leave = true
	r, err := b.PresenceApply(ctx, []broker.PresenceOp{op})
	if err != nil {
		return false, err
	}
	return r[0], nil
}

// PresenceApply implements broker.Presence: one script for all of ops.
func (b *Broker) PresenceApply(ctx context.Context, ops []broker.PresenceOp) ([]bool, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	p := b.prefix + presenceTag
	keys := []string{p + "sets", p + "drops"}
	setBase := map[string]int{}
	queueIdx := map[string]int{}
	args := make([]any, 1, 1+16*len(ops))
	args[0] = len(ops)
	now := time.Now()
	for _, op := range ops {
		base, ok := setBase[op.Set]
		if !ok {
			base = len(keys) + 1
			setBase[op.Set] = base
			keys = append(keys, b.presenceKeys(op.Set, nil)[:6]...)
		}
		kind := "j"
		if op.Leave {
			kind = "l"
		}
		ev := eventArgs(op.Event)
		qs := ""
		if op.Event != nil {
			for _, q := range op.Event.Queues {
				i, ok := queueIdx[q]
				if !ok {
					keys = append(keys, b.queueKey(q))
					i = len(keys)
					queueIdx[q] = i
				}
				if qs != "" {
					qs += ","
				}
				qs += strconv.Itoa(i)
			}
		}
		args = append(args, kind, base, op.Set, op.Key, op.Conn, op.Value,
			now.Add(op.TTL).UnixMilli(), keyTTL(op.TTL, op.Linger), op.Linger.Milliseconds(), now.UnixMilli(),
			ev[0], ev[1], ev[2], ev[3], ev[4], qs)
	}
	res, err := applyScript.Run(ctx, b.client, keys, args...).Int64Slice()
	if err != nil {
		return nil, b.fail("presence apply", ops[0].Set, err)
	}
	out := make([]bool, len(ops))
	for i := range out {
		out[i] = i < len(res) && res[i] == 1
	}
	return out, nil
}

// PresenceRefresh implements broker.Presence.
func (b *Broker) PresenceRefresh(ctx context.Context, set string, conns []string, ttl time.Duration) ([]string, error) {
	if len(conns) == 0 {
		return nil, nil
	}
	args := append(eventArgs(nil), set, time.Now().Add(ttl).UnixMilli(), keyTTL(ttl, 0))
	for _, c := range conns {
		args = append(args, c)
	}
	missing, err := refreshScript.Run(ctx, b.client, b.presenceKeys(set, nil), args...).StringSlice()
	if err != nil && err != redis.Nil {
		return nil, b.fail("presence refresh", set, err)
	}
	return missing, nil
}

// PresenceReap implements broker.Presence.
func (b *Broker) PresenceReap(ctx context.Context, set string, linger time.Duration, ev *broker.Event) ([]broker.PresenceEntry, error) {
	args := append(eventArgs(ev), set, time.Now().UnixMilli(), linger.Milliseconds(), reapLimit)
	res, err := reapScript.Run(ctx, b.client, b.presenceKeys(set, ev), args...).StringSlice()
	if err != nil && err != redis.Nil {
		return nil, b.fail("presence reap", set, err)
	}
	return pairs(res), nil
}

func pairs(res []string) []broker.PresenceEntry {
	out := make([]broker.PresenceEntry, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		e := broker.PresenceEntry{Key: res[i]}
		if res[i+1] != "" {
			e.Value = []byte(res[i+1])
		}
		out = append(out, e)
	}
	return out
}

// PresenceCount implements broker.Presence.
func (b *Broker) PresenceCount(ctx context.Context, set string) (int, error) {
	n, err := b.client.ZCard(ctx, b.presenceKeys(set, nil)[3]).Result()
	if err != nil {
		return 0, b.fail("presence count", set, err)
	}
	return int(n), nil
}

// PresencePage implements broker.Presence.
func (b *Broker) PresencePage(ctx context.Context, set, cursor string, limit int) ([]broker.PresenceEntry, bool, error) {
	if limit <= 0 {
		return nil, false, nil
	}
	args := append(eventArgs(nil), cursor, limit)
	res, err := pageScript.Run(ctx, b.client, b.presenceKeys(set, nil), args...).Slice()
	if err != nil {
		return nil, false, b.fail("presence page", set, err)
	}
	if len(res) == 0 {
		return nil, false, nil
	}
	more, _ := res[0].(int64)
	strs := make([]string, 0, len(res)-1)
	for _, v := range res[1:] {
		s, _ := v.(string)
		strs = append(strs, s)
	}
	return pairs(strs), more == 1, nil
}

// PresenceStale implements broker.Presence.
func (b *Broker) PresenceStale(ctx context.Context, limit int) ([]string, error) {
	sets, err := b.client.ZRangeByScore(ctx, b.prefix+presenceTag+"sets", &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(time.Now().UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, b.fail("presence stale", "", err)
	}
	return sets, nil
}

var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

var trimScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[2], ARGV[2], -1)
return 1
`)

// QueueLease implements broker.Presence.
func (b *Broker) QueueLease(ctx context.Context, queue, owner string, ttl time.Duration) (bool, error) {
	n, err := leaseScript.Run(ctx, b.client, []string{b.leaseKey(queue)}, owner, max(ttl.Milliseconds(), 1)).Int()
	if err != nil {
		return false, b.fail("queue lease", queue, err)
	}
	return n == 1, nil
}

// QueuePeek implements broker.Presence.
func (b *Broker) QueuePeek(ctx context.Context, queue string, n int) ([][]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	res, err := b.client.LRange(ctx, b.queueKey(queue), 0, int64(n-1)).Result()
	if err != nil {
		return nil, b.fail("queue peek", queue, err)
	}
	out := make([][]byte, len(res))
	for i, s := range res {
		out[i] = []byte(s)
	}
	return out, nil
}

// QueueTrim implements broker.Presence.
func (b *Broker) QueueTrim(ctx context.Context, queue, owner string, n int) error {
	ok, err := trimScript.Run(ctx, b.client, []string{b.leaseKey(queue), b.queueKey(queue)}, owner, n).Int()
	if err != nil {
		return b.fail("queue trim", queue, err)
	}
	if ok != 1 {
		return broker.ErrLeaseLost
	}
	return nil
}

// QueueStats implements broker.Presence.
func (b *Broker) QueueStats(ctx context.Context, queue string) (broker.QueueStats, error) {
	var ln *redis.IntCmd
	var dropped *redis.StringCmd
	_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		ln = p.LLen(ctx, b.queueKey(queue))
		dropped = p.HGet(ctx, b.prefix+presenceTag+"drops", b.queueKey(queue))
		return nil
	})
	if err != nil && err != redis.Nil {
		return broker.QueueStats{}, b.fail("queue stats", queue, err)
	}
	d, _ := dropped.Int64()
	return broker.QueueStats{Len: ln.Val(), Dropped: d}, nil
}
