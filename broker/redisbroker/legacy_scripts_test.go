package redisbroker

import "github.com/redis/go-redis/v9"

// The publish and history scripts of the version before the log
// (ff3ee6c), as its nodes run them during a rolling upgrade: one stream
// entry per message, read by the history script from the stream alone.
// logformat_test.go runs them beside this version's.
var (
	legacyPublishV1 = redis.NewScript(`
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
`)
	legacyHistoryV1 = redis.NewScript(`
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
`)
)
