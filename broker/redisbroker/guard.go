package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/heraldpush/herald/broker"
	"github.com/redis/go-redis/v9"
)

// The generation guard: no offset is handed out twice in one epoch.
//
// A Redis process that restarts from an RDB snapshot, from an AOF fsynced
// every second, or from nothing, or a replica promoted before it had
// every write, holds an older copy of the data: a channel that was at
// offset 850 may be back at 400. Nothing inside that copy records that
// 401-850 were handed out, so publishing on would hand them out again in
// the same epoch, and a reader resuming from 800 would be told its
// history is complete.
//
// So every new connection first checks which process it reached
// (onConnect). A generation hash per partition ("<prefix>#gen" on one
// server, "<prefix>{<p>}#gen" per Cluster partition) records the run_id
// of the process that last checked and the current generation, a random
// id. When the process changed and its data may be older than what was
// acknowledged (not durable, see durable), the guard script gives the
// partition a new generation. Every position hash records the generation
// it was created in; the publish and history scripts start a new epoch
// for a channel whose generation is not the current one. A publish thus
// costs one HGET for this, and no INFO: the process is checked once per
// connection, before any command of ours runs on it (go-redis runs
// OnConnect before handing out a new connection), and a connection never
// outlives its process.

// genKey is the generation hash of partition p (0 without Cluster). "#"
// cannot occur in a channel name, so it is no channel's key.
func (b *Broker) genKey(p int) string {
	if !b.sharded {
		return b.prefix + "#gen"
	}
	return b.prefix + "{" + b.tags[p] + "}#gen"
}

// guardScript compares the process a connection reached with the one the
// generation hash recorded.
//
//	KEYS[1] generation hash
//	ARGV[1] the process's run_id, ARGV[2] "1" if its data is durable
//	ARGV[3] a new generation id
//
// It returns {generation, "0" kept, "1" replaced, or "2" first}. A durable process
// (its AOF is fsynced before it answers) restarted with everything it
// acknowledged: it keeps the generation.
var guardScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'run', 'gen')
if cur[2] and (cur[1] == ARGV[1] or ARGV[2] == '1') then
  if cur[1] ~= ARGV[1] then redis.call('HSET', KEYS[1], 'run', ARGV[1]) end
  return {cur[2], '0'}
end
redis.call('HSET', KEYS[1], 'run', ARGV[1], 'gen', ARGV[3])
if cur[2] then return {ARGV[3], '1'} end
return {ARGV[3], '2'}
`)

// process is what onConnect learns about the Redis process.
type process struct {
	runID   string
	role    string
	durable bool
	why     string // why it is not durable, for the log
}

// onConnect is go-redis's OnConnect hook for every connection the engine
// opens (commands and pub/sub, every node of a Cluster). It costs two
// round trips per new connection: one to learn which process this is and
// to load the scripts (so that EVALSHA finds them), one for the guard. An
// error fails the connection: no publish runs on a process whose
// generation could not be checked.
func (b *Broker) onConnect(ctx context.Context, cn *redis.Conn) error {
	var (
		server, repl *redis.StringCmd
		aof, fsync   *redis.MapStringStringCmd
	)
	_, _ = cn.Pipelined(ctx, func(p redis.Pipeliner) error {
		server = p.Info(ctx, "server")
		repl = p.Info(ctx, "replication")
		aof = p.ConfigGet(ctx, "appendonly")
		fsync = p.ConfigGet(ctx, "appendfsync")
		p.ScriptLoad(ctx, publishSource)
		p.ScriptLoad(ctx, historySource)
		return nil
	})
	if server.Err() == nil && infoField(server.Val(), "redis_mode") == "sentinel" {
		// go-redis runs OnConnect on its connections to the sentinels
		// too: they hold no data and run none of the engine's commands.
		return nil
	}
	proc, err := inspect(server, repl, aof, fsync)
	if err != nil {
		return fmt.Errorf("redisbroker: checking the Redis process: %w", err)
	}
	if proc.role != "master" {
		// A replica takes no writes; and a connection kept open while it
		// is promoted would publish on a process whose generation nobody
		// checked. Connections are only ever made to masters.
		return fmt.Errorf("redisbroker: this Redis is a %s, not a master", proc.role)
	}
	parts := 1
	if b.sharded {
		parts = len(b.genKeys)
	}
	durable := "0"
	if proc.durable {
		durable = "1"
	}
	fresh := broker.NewEpoch()
	cmds := make([]*redis.Cmd, parts)
	_, _ = cn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range cmds {
			cmds[i] = guardScript.Eval(ctx, p, []string{b.genKeys[i]}, proc.runID, durable, fresh)
		}
		return nil
	})
	for i, cmd := range cmds {
		res, err := cmd.StringSlice()
		if err != nil {
			if b.sharded && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
				continue // another node's partition: its connections check it
			}
			return fmt.Errorf("redisbroker: generation check: %w", err)
		}
		if len(res) == 2 && res[1] == "1" {
			b.log.Warn("redis: new process with data that may be older than what it acknowledged; its channels start new epochs",
				"run_id", proc.runID, "partition", i, "reason", proc.why)
		}
	}
	return nil
}

// inspect reads the replies of onConnect's first round trip. The data of
// a process is durable when it fsyncs its AOF before answering
// (appendonly yes, appendfsync always) and it is a master that was never
// promoted from replica in its lifetime (second_repl_offset -1): a
// promoted replica may lack writes its old master acknowledged, whatever
// its persistence. CONFIG refused (renamed, ACL) counts as not durable.
func inspect(server, repl *redis.StringCmd, aof, fsync *redis.MapStringStringCmd) (process, error) {
	var p process
	if err := server.Err(); err != nil {
		return p, fmt.Errorf("INFO server: %w (Herald needs INFO to notice a restarted Redis)", err)
	}
	p.runID = infoField(server.Val(), "run_id")
	if p.runID == "" {
		return p, errors.New("INFO server has no run_id")
	}
	if err := repl.Err(); err != nil {
		return p, fmt.Errorf("INFO replication: %w", err)
	}
	role := infoField(repl.Val(), "role")
	p.role = role
	second := infoField(repl.Val(), "second_repl_offset")
	switch {
	case aof.Err() != nil || fsync.Err() != nil:
		p.why = "CONFIG GET refused"
	case aof.Val()["appendonly"] != "yes":
		p.why = "appendonly " + aof.Val()["appendonly"]
	case fsync.Val()["appendfsync"] != "always":
		p.why = "appendfsync " + fsync.Val()["appendfsync"]
	case role != "master":
		p.why = "role " + role
	case second != "-1":
		p.why = "promoted from replica"
	default:
		p.durable = true
	}
	return p, nil
}

// infoField returns the value of "name:value" in an INFO reply.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
