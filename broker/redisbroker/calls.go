package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/redis/go-redis/v9"
)

// A pipeline is a list of publishScript calls, sent in one round trip by
// a scriptPipe: the engine's own publish connection on one server or
// Sentinel (pubConn), go-redis's pipeline with Cluster (clientPipe).
// Both take a call's keys and arguments from writeCall and leave each
// call's answer in res and err, which send and settle turn into every
// message's outcome.

// perCall caps the messages of one script call: a script blocks Redis
// while it runs, and 64 messages keep that well under a millisecond.
const perCall = 64

// scriptCall is one call of publishScript, the messages it carries and,
// once run, its answer.
type scriptCall struct {
	items []*pubItem
	ends  []int    // the end in items of each channel group, as sent
	res   []string // the script's answer
	err   error    // or why there is none
}

// scriptPipe runs calls in one round trip: with eval, by the script's
// source (EVAL) instead of its hash (EVALSHA). It fills each call's res
// or err, and marks the messages it wrote (pubItem.sent).
type scriptPipe interface {
	run(calls []*scriptCall, eval bool)
}

// sent reports whether any message of the call reached a connection.
func (c *scriptCall) sent() bool {
	for _, it := range c.items {
		if it.sent.Load() {
			return true
		}
	}
	return false
}

// send publishes items in one pipeline through p and records each one's
// outcome. Items are grouped into script calls: on one server in their
// order; with Cluster per partition (a call's keys must share a slot),
// keeping their order within a partition, which holds every channel's
// order.
func (b *Broker) send(p scriptPipe, items []*pubItem) {
	var calls []*scriptCall
	if !b.sharded {
		for len(items) > 0 {
			n := min(len(items), perCall)
			calls = append(calls, &scriptCall{items: items[:n:n]})
			items = items[n:]
		}
	} else {
		open := make(map[int]*scriptCall)
		for _, it := range items {
			p := b.partition(it.channel)
			c := open[p]
			if c == nil || len(c.items) == perCall {
				c = &scriptCall{}
				open[p] = c
				calls = append(calls, c)
			}
			c.items = append(c.items, it)
		}
	}
	p.run(calls, false)
	// NOSCRIPT means Redis lost its script cache (SCRIPT FLUSH; a
	// restart reloads it on connect): nothing of that call ran. Send
	// those again with the script's source, unless a later call with a
	// message of the same channel may have run, which would reorder the
	// channel.
	var again []*scriptCall
	var ran map[string]bool
	for i := len(calls) - 1; i >= 0; i-- {
		c := calls[i]
		if c.err != nil && redis.HasErrorPrefix(c.err, "NOSCRIPT") && !c.touches(ran) {
			for _, it := range c.items {
				it.sent.Store(false)
			}
			c.err = nil
			again = append(again, c)
			continue
		}
		if len(calls) > 1 {
			if ran == nil {
				ran = make(map[string]bool)
			}
			for _, it := range c.items {
				ran[it.channel] = true
			}
		}
		b.settle(c)
	}
	if len(again) == 0 {
		return
	}
	slices.Reverse(again)
	p.run(again, true)
	for _, c := range again {
		b.settle(c)
	}
}

// touches reports whether a message of c is on a channel of set.
func (c *scriptCall) touches(set map[string]bool) bool {
	for _, it := range c.items {
		if set[it.channel] {
			return true
		}
	}
	return false
}

// callWriter takes the keys and the arguments of one script call, the
// keys in their order and the arguments in theirs.
type callWriter interface {
	key(k string)
	str(s string)
	num(n int64)
	// frames is one argument: the frames of items back to back (one
	// item: its frame), recording that they are being written.
	frames(items []*pubItem)
}

// callHead is what every call of one pipeline starts with.
type callHead struct {
	fresh string // the epoch of a channel that starts one
	now   int64  // Unix ms
	cmd   string // PUBLISH or SPUBLISH
}

// head returns the start of a pipeline's calls. One fresh id serves every
// channel of the pipeline that starts an epoch: epochs need to differ
// between a channel's lives, not between channels.
func (b *Broker) head() callHead {
	h := callHead{fresh: broker.NewEpoch(), now: time.Now().UnixMilli(), cmd: "PUBLISH"}
	if b.sharded {
		h.cmd = "SPUBLISH"
	}
	return h
}

// writeCall gives w the keys and arguments of c, publishScript's, after
// ordering c's messages by channel (each channel's in their order), the
// groups the script takes, and records the groups in c.ends.
func (b *Broker) writeCall(w callWriter, c *scriptCall, h callHead) {
	c.groupByChannel()
	c.ends = c.ends[:0]
	w.key(b.genKeyOf(c.items[0].channel)) // a call is of one partition
	w.str(h.fresh)
	w.num(h.now)
	w.str(h.cmd)
	for g := 0; g < len(c.items); {
		first := c.items[g]
		end, keyed := g, 0
		for end < len(c.items) && c.items[end].channel == first.channel {
			if c.items[end].key != "" {
				keyed++
			}
			end++
		}
		n := b.names(first.channel)
		w.key(n.pos)
		w.key(n.stream)
		w.key(n.log)
		last := c.items[end-1] // a reload may change retention midway: the newest wins
		w.num(int64(end - g))
		w.num(int64(keyed))
		w.num(ttlMillis(last.r.TTL))
		w.num(int64(max(last.r.Size, 0)))
		w.str(n.pubsub)
		if keyed == 0 {
			w.frames(c.items[g:end]) // the hot case: one argument for the group
		} else {
			for i := g; i < end; i++ {
				if it := c.items[i]; it.key != "" {
					w.key(n.idem(it.key))
					w.num(it.window)
				} else {
					w.num(0)
				}
				w.frames(c.items[i : i+1])
			}
		}
		c.ends = append(c.ends, end)
		g = end
	}
}

// genKeyOf is the generation hash of channel's partition.
func (b *Broker) genKeyOf(channel string) string {
	if !b.sharded {
		return b.genKeys[0]
	}
	return b.genKeys[b.partition(channel)]
}

// clientPipe runs the calls through go-redis: with Cluster, one pipeline
// per node, in parallel.
type clientPipe struct{ b *Broker }

// clientArgs is a callWriter for go-redis. The data goes as pubItem and
// groupData, whose MarshalBinary marks what go-redis wrote.
type clientArgs struct {
	keys []string
	args []any
}

func (a *clientArgs) key(k string) { a.keys = append(a.keys, k) }
func (a *clientArgs) str(s string) { a.args = append(a.args, s) }
func (a *clientArgs) num(n int64)  { a.args = append(a.args, n) }
func (a *clientArgs) frames(items []*pubItem) {
	if len(items) == 1 {
		a.args = append(a.args, items[0])
		return
	}
	a.args = append(a.args, &groupData{items: items})
}

func (p clientPipe) run(calls []*scriptCall, eval bool) {
	// The context has no deadline: the connection's read and write
	// timeouts bound the round trip, and callers stop waiting when their
	// own context ends.
	ctx := context.Background()
	h := p.b.head()
	pipe := p.b.client.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		a := clientArgs{keys: make([]string, 0, 1+3*len(c.items)), args: make([]any, 0, 4+6*len(c.items))}
		p.b.writeCall(&a, c, h)
		if eval {
			cmds[i] = pipe.Eval(ctx, publishSource, a.keys, a.args...)
		} else {
			cmds[i] = pipe.EvalSha(ctx, publishScript.Hash(), a.keys, a.args...)
		}
	}
	// Exec's error is the first command's; each command has its own.
	_, _ = pipe.Exec(ctx)
	for i, c := range calls {
		c.res, c.err = cmds[i].StringSlice()
	}
}

// groupByChannel orders c's messages by channel, each channel's in their
// order, the channels in the order of their first message. Calls are
// small (perCall), so a stable sort on first appearance is cheap, and
// nothing is moved when the call has one channel, the usual hot case.
func (c *scriptCall) groupByChannel() {
	if len(c.items) < 2 {
		return
	}
	var rank map[string]int
	for _, it := range c.items[1:] {
		if it.channel != c.items[0].channel {
			rank = make(map[string]int)
			break
		}
	}
	if rank == nil {
		return
	}
	for _, it := range c.items {
		if _, ok := rank[it.channel]; !ok {
			rank[it.channel] = len(rank)
		}
	}
	slices.SortStableFunc(c.items, func(x, y *pubItem) int { return rank[x.channel] - rank[y.channel] })
}

// settle records the outcome of every message of c from its answer.
func (b *Broker) settle(c *scriptCall) {
	res, err := c.res, c.err
	if err != nil {
		sent := c.sent()
		for _, it := range c.items {
			it.err = b.publishError(it.channel, err, sent)
		}
		return
	}
	if len(res) != 3*len(c.ends) {
		// The script ran: published, but we cannot say where.
		for _, it := range c.items {
			it.err = fmt.Errorf("redisbroker: publish %q: %w: script returned %d values for %d channels", it.channel, broker.ErrUncertain, len(res), len(c.ends))
		}
		return
	}
	g := 0
	for i, end := range c.ends {
		if err := settleGroup(c.items[g:end], res[3*i], res[3*i+1], res[3*i+2]); err != nil {
			for _, it := range c.items[g:end] {
				it.err = fmt.Errorf("redisbroker: publish %q: %w: %w", it.channel, broker.ErrUncertain, err)
			}
		}
		g = end
	}
}

// settleGroup records the positions of one channel group from the
// script's answer for it: its epoch, the first new offset and the
// repeats ("<i> <epoch> <offset>,...", i from 1). The group's other
// messages have consecutive offsets from the first, in order.
func settleGroup(items []*pubItem, epoch, first, repeats string) error {
	next, err := strconv.ParseUint(first, 10, 64)
	if err != nil {
		return fmt.Errorf("bad offset %q", first)
	}
	for rep := range strings.SplitSeq(repeats, ",") {
		if rep == "" {
			continue
		}
		f := strings.Fields(rep)
		if len(f) != 3 {
			return fmt.Errorf("bad repeat %q", rep)
		}
		i, err1 := strconv.Atoi(f[0])
		off, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || i < 1 || i > len(items) {
			return fmt.Errorf("bad repeat %q", rep)
		}
		items[i-1].dup, items[i-1].pos = true, broker.Position{Epoch: f[1], Offset: off}
	}
	for _, it := range items {
		if !it.dup {
			it.pos = broker.Position{Epoch: epoch, Offset: next}
			next++
		}
	}
	return nil
}

// publishError classifies a failed publish: Redis's own answer says what
// happened; without one, sent tells whether the command may have reached
// Redis.
func (b *Broker) publishError(channel string, err error, sent bool) error {
	var rerr redis.Error
	switch {
	case errors.As(err, &rerr):
		// Redis answered: it refused the script unexecuted (LOADING,
		// READONLY, ...: unavailable), or the script failed.
		return b.fail("publish", channel, err)
	case sent:
		return fmt.Errorf("redisbroker: publish %q: %w: %w", channel, broker.ErrUncertain, err)
	case b.closed.Load():
		return fmt.Errorf("redisbroker: publish %q: %w", channel, broker.ErrClosed)
	default:
		return fmt.Errorf("redisbroker: publish %q: %w: %w", channel, broker.ErrUnavailable, err)
	}
}
