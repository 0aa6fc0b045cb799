package redisbroker

import (
	"context"
	"strconv"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/redis/go-redis/v9"
)

var _ broker.Store = (*Broker)(nil)

// Store keys: "<prefix>kv{<key>}" is a string with an expiry; a member set
// is a hash of values "<prefix>set{<set>}:h" and a sorted set of expiry
// times "<prefix>set{<set>}:z", both in the set's slot. Members expire one
// by one (Members drops the late ones); the keys themselves expire with
// the last refresh, so a set whose nodes all died goes away.

func (b *Broker) kvKey(key string) string { return b.prefix + "kv{" + key + "}" }

func (b *Broker) setKeys(set string) (h, z string) {
	base := b.prefix + "set{" + set + "}"
	return base + ":h", base + ":z"
}

// SetKey implements broker.Store.
func (b *Broker) SetKey(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := b.client.Set(ctx, b.kvKey(key), value, max(ttl, time.Millisecond)).Err(); err != nil {
		return b.fail("set key", key, err)
	}
	return nil
}

// GetKey implements broker.Store.
func (b *Broker) GetKey(ctx context.Context, key string) ([]byte, error) {
	v, err := b.client.Get(ctx, b.kvKey(key)).Bytes()
	if err == redis.Nil {
		return nil, nil
	}
	if err != nil {
		return nil, b.fail("get key", key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// AddMembers implements broker.Store.
func (b *Broker) AddMembers(ctx context.Context, set string, members map[string][]byte, ttl time.Duration) error {
	if len(members) == 0 {
		return nil
	}
	h, z := b.setKeys(set)
	args := []any{time.Now().Add(ttl).UnixMilli(), max(ttl.Milliseconds(), 1)}
	for m, v := range members {
		args = append(args, m, v)
	}
	if err := addMembersScript.Run(ctx, b.client, []string{h, z}, args...).Err(); err != nil && err != redis.Nil {
		return b.fail("add members", set, err)
	}
	return nil
}

// addMembersScript adds members with their expiry and stretches the keys'
// own expiry to cover them (never shortens it: other members may live
// longer). KEYS hash, zset; ARGV expiry (Unix ms), ttl (ms), then
// member, value pairs.
var addMembersScript = redis.NewScript(`
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1])
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
end
local ttl = tonumber(ARGV[2])
for _, k in ipairs(KEYS) do
  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
return 0
`)

// RemoveMember implements broker.Store.
func (b *Broker) RemoveMember(ctx context.Context, set, member string) error {
	h, z := b.setKeys(set)
	_, err := b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, h, member)
		p.ZRem(ctx, z, member)
		return nil
	})
	if err != nil {
		return b.fail("remove member", set, err)
	}
	return nil
}

// membersScript drops the members whose expiry passed, then returns the
// rest: KEYS hash, zset; ARGV now in Unix milliseconds.
var membersScript = redis.NewScript(`
local late = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, m in ipairs(late) do
  redis.call('HDEL', KEYS[1], m)
  redis.call('ZREM', KEYS[2], m)
end
return redis.call('HGETALL', KEYS[1])
`)

// Members implements broker.Store.
func (b *Broker) Members(ctx context.Context, set string) (map[string][]byte, error) {
	h, z := b.setKeys(set)
	res, err := membersScript.Run(ctx, b.client, []string{h, z}, strconv.FormatInt(time.Now().UnixMilli(), 10)).StringSlice()
	if err != nil {
		return nil, b.fail("members", set, err)
	}
	out := make(map[string][]byte, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		out[res[i]] = []byte(res[i+1])
	}
	return out, nil
}
