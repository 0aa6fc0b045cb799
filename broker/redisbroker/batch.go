package redisbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/redis/go-redis/v9"
)

// Publishes are coalesced: every Publish and PublishBatch call becomes a
// job on b.jobs, and a few publisher goroutines each take every job
// waiting (up to maxPipeline messages) and send them as one pipeline of
// EVALSHA calls, each carrying up to perCall messages, one round trip for
// all. Redis then reads, runs and
// answers them in one go, which is where most of its CPU per publish went
// (a read and a write system call per command). A job is never split, so
// the messages of a PublishBatch run in their order on one connection; and
// a caller whose Publish returned sees its next one run after it, so
// per-channel order is what callers make it.
//
// Whether a message may have been published when its pipeline failed is
// decided exactly: its data goes to go-redis as a pubItem, whose
// MarshalBinary go-redis calls while it writes the command to the
// connection. A message whose MarshalBinary never ran was never written
// (no connection, the dial failed, the pool timed out, a circuit breaker
// is open, an earlier write failed): ErrUnavailable, not published. One
// that was written and got no answer (read timeout, EOF, reset, any
// failure after the write) is ErrUncertain. One that got Redis's answer is
// whatever Redis said.

const (
	// publishers is the number of pipelines in flight at once. One: while
	// its round trip is out, every publish arriving waits for the next
	// pipeline, which then carries them all, so that the script calls and
	// Redis's read and write per round trip are shared by as many messages
	// as the load brings (21-30 per call under 64 connections, against
	// 4 with four publishers in an earlier version: 4-6 against 15 µs of
	// Redis CPU per publish, docs/performance.md). A round trip is far shorter than the time
	// the messages it carries took to arrive, so one is never the limit.
	publishers = 1
	// maxPipeline caps the messages one pipeline gathers from several
	// jobs; a single larger job is sent alone, whole.
	maxPipeline = 512
)

// Job states: a job is taken by a publisher or abandoned by its caller
// (context done, engine closed) before that, never both.
const (
	jobQueued int32 = iota
	jobTaken
	jobAbandoned
)

// pubJob is one Publish or PublishBatch call. The caller owns it until it
// is queued; then the publisher that took it, until it sends on done (a
// buffer of one, so that the send never waits), and the caller again
// once it has received. A job of one message whose caller received is
// referenced by nothing else then, and is reused (singleJobs): an HTTP
// publish allocates no job and no channel of its own.
type pubJob struct {
	items []pubItem
	state atomic.Int32
	done  chan struct{}
	one   [1]pubItem // items of a single Publish, without an allocation of their own
	wire  [96]byte   // one[0].wire when it fits, the usual small message
}

// pubItem is one message of a job, and the result the publisher fills in.
type pubItem struct {
	channel string
	data    json.RawMessage
	r       broker.Retention
	wire    []byte // "<len>:<data>", as the script publishes and stores it
	key     string // idempotency key, "" for none
	window  int64  // the key's window in ms
	// sent is set when go-redis serializes the message onto a connection
	// (see MarshalBinary); atomic because a Cluster pipeline writes to
	// each node from its own goroutine.
	sent atomic.Bool
	pos  broker.Position
	dup  bool
	err  error
}

// MarshalBinary hands go-redis the data, not re-encoded, behind its
// length (the framing of publishScript's payload, so that the script
// passes it on untouched), and records that the command is being
// written.
func (it *pubItem) MarshalBinary() ([]byte, error) {
	it.sent.Store(true)
	return it.wire, nil
}

// groupData is the data of a channel group without keys as one argument
// of publishScript: the messages' frames back to back, which the script
// publishes and stores as they are. Redis then reads one argument per
// group instead of one per message, and Lua makes one string of it.
// Like pubItem's, its MarshalBinary records that the messages are being
// written.
type groupData struct{ items []*pubItem }

func (g *groupData) MarshalBinary() ([]byte, error) {
	n := 0
	for _, it := range g.items {
		n += len(it.wire)
	}
	buf := make([]byte, 0, n)
	for _, it := range g.items {
		it.sent.Store(true)
		buf = append(buf, it.wire...)
	}
	return buf, nil
}

// frame returns "<len>:<data>", in buf when it fits.
func frame(buf []byte, data []byte) []byte {
	b := buf[:0]
	if cap(b) < len(data)+8 {
		b = make([]byte, 0, len(data)+8)
	}
	b = strconv.AppendInt(b, int64(len(data)), 10)
	b = append(b, ':')
	return append(b, data...)
}

// singleJobs holds jobs of one message for reuse (pubJob).
var singleJobs = sync.Pool{New: func() any { return &pubJob{done: make(chan struct{}, 1)} }}

// newJob returns a job for pubs.
func newJob(pubs []broker.Publication) *pubJob {
	var j *pubJob
	if len(pubs) == 1 {
		j = singleJobs.Get().(*pubJob)
		j.items = j.one[:]
	} else {
		j = &pubJob{done: make(chan struct{}, 1), items: make([]pubItem, len(pubs))}
	}
	for i, p := range pubs {
		it := &j.items[i]
		it.channel, it.data, it.r = p.Channel, p.Data, p.Retention
		if p.IdempotencyKey != "" {
			it.key, it.window = p.IdempotencyKey, ttlMillis(broker.IdempotencyWindowOf(p))
		}
		if len(it.data) == 0 {
			it.data = json.RawMessage("null") // keep the published JSON well-formed
		}
		var buf []byte
		if len(pubs) == 1 {
			buf = j.wire[:]
		}
		it.wire = frame(buf, it.data)
	}
	return j
}

// Publish implements broker.Broker: PublishBatch's path for one message,
// without the slices of a batch (an HTTP publish is the hot case).
func (b *Broker) Publish(ctx context.Context, channel string, data json.RawMessage, r broker.Retention) (broker.Position, error) {
	p := [1]broker.Publication{{Channel: channel, Data: data, Retention: r}}
	var res [1]broker.PublishResult
	b.publish(ctx, p[:], res[:])
	return res[0].Position, res[0].Err
}

// PublishBatch implements broker.BatchPublisher: the whole batch is one
// pipelined round trip (with Cluster, one per node it touches, in
// parallel).
func (b *Broker) PublishBatch(ctx context.Context, pubs []broker.Publication) []broker.PublishResult {
	out := make([]broker.PublishResult, len(pubs))
	if len(pubs) > 0 {
		b.publish(ctx, pubs, out)
	}
	return out
}

// publish publishes pubs as one job and fills out, one result each.
func (b *Broker) publish(ctx context.Context, pubs []broker.Publication, out []broker.PublishResult) {
	failAll := func(err error) {
		for i := range out {
			out[i].Err = fmt.Errorf("redisbroker: publish %q: %w", pubs[i].Channel, err)
		}
	}
	if b.closed.Load() {
		failAll(broker.ErrClosed)
		return
	}
	if err := ctx.Err(); err != nil {
		failAll(fmt.Errorf("%w: %w", broker.ErrUnavailable, err))
		return
	}
	j := newJob(pubs)
	select {
	case b.jobs <- j:
	case <-ctx.Done():
		j.release() // never queued
		failAll(fmt.Errorf("%w: %w", broker.ErrUnavailable, ctx.Err()))
		return
	case <-b.done:
		j.release()
		failAll(broker.ErrClosed)
		return
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobAbandoned) {
			failAll(fmt.Errorf("%w: %w", broker.ErrUnavailable, ctx.Err()))
			return
		}
		// A publisher has it, maybe written: the caller cannot wait.
		failAll(fmt.Errorf("%w: %w", broker.ErrUncertain, ctx.Err()))
		return
	case <-b.done:
		if j.state.CompareAndSwap(jobQueued, jobAbandoned) {
			failAll(broker.ErrClosed)
			return
		}
		<-j.done // publishers finish what they took before they stop
	}
	for i := range j.items {
		out[i] = broker.PublishResult{Position: j.items[i].pos, Duplicate: j.items[i].dup, Err: j.items[i].err}
	}
	j.release()
}

// release hands a job of one message back for reuse. Only for a job
// whose done its caller received: an abandoned job may still be in
// b.jobs or with a publisher.
func (j *pubJob) release() {
	if len(j.items) != 1 || &j.items[0] != &j.one[0] {
		return
	}
	j.one[0] = pubItem{}
	j.items = nil
	j.state.Store(jobQueued)
	singleJobs.Put(j)
}

// publisher is one of the engine's publisher goroutines (owned by the
// engine: started by New, stopped by Close through b.done). It gathers
// the jobs waiting and publishes them in one pipeline.
func (b *Broker) publisher() {
	var (
		jobs  []*pubJob
		items []*pubItem
	)
	take := func(j *pubJob) {
		if !j.state.CompareAndSwap(jobQueued, jobTaken) {
			return // its caller gave up on it
		}
		jobs = append(jobs, j)
		for i := range j.items {
			items = append(items, &j.items[i])
		}
	}
	// together is whether the last pipeline carried more than one job:
	// publishes are arriving side by side.
	together := false
	for {
		select {
		case j := <-b.jobs:
			take(j)
		case <-b.done:
			return
		}
		if together {
			// Let the goroutines that are ready run first: request
			// handlers about to publish queue their jobs, and this
			// pipeline carries them instead of the next. It costs a
			// lone publish nothing (nothing else is ready then) and
			// under load fewer, larger pipelines save Redis and this
			// node a round trip's fixed cost per publish
			// (docs/performance.md).
			runtime.Gosched()
		}
	gather:
		for len(items) < maxPipeline {
			select {
			case j := <-b.jobs:
				take(j)
			default:
				break gather
			}
		}
		together = len(jobs) > 1
		if len(items) > 0 {
			b.send(items)
		}
		for _, j := range jobs {
			j.done <- struct{}{} // its caller may reuse j from here on
		}
		clear(jobs)
		clear(items)
		jobs, items = jobs[:0], items[:0]
	}
}

// perCall caps the messages of one script call: a script blocks Redis
// while it runs, and 64 messages keep that well under a millisecond.
const perCall = 64

// scriptCall is one call of publishScript and the messages it carries.
type scriptCall struct {
	items []*pubItem
	ends  []int // the end in items of each channel group, as sent
	cmd   *redis.Cmd
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

// send publishes items in one pipeline and records each one's outcome.
// Items are grouped into script calls: on one server in their order; with
// Cluster per partition (a call's keys must share a slot), keeping their
// order within a partition, which holds every channel's order.
func (b *Broker) send(items []*pubItem) {
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
	// The context has no deadline: the connection's read and write
	// timeouts bound the round trip, and callers stop waiting when their
	// own context ends.
	ctx := context.Background()
	b.pipeline(ctx, calls, func(p redis.Pipeliner, keys []string, args []any) *redis.Cmd {
		return p.EvalSha(ctx, publishScript.Hash(), keys, args...)
	})
	// NOSCRIPT means Redis lost its script cache (SCRIPT FLUSH; a
	// restart reloads it on connect): nothing of that call ran. Send
	// those again with the script's source, unless a later call with a
	// message of the same channel may have run, which would reorder the
	// channel.
	var again []*scriptCall
	ran := make(map[string]bool)
	for i := len(calls) - 1; i >= 0; i-- {
		c := calls[i]
		if err := c.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") && !c.touches(ran) {
			for _, it := range c.items {
				it.sent.Store(false)
			}
			again = append(again, c)
			continue
		}
		for _, it := range c.items {
			ran[it.channel] = true
		}
		b.settle(c)
	}
	if len(again) == 0 {
		return
	}
	slices.Reverse(again)
	b.pipeline(ctx, again, func(p redis.Pipeliner, keys []string, args []any) *redis.Cmd {
		return p.Eval(ctx, publishSource, keys, args...)
	})
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

// pipeline queues each call with queue and executes them all in one
// round trip (with Cluster, one per node, in parallel). It first orders
// each call's messages by channel (keeping each channel's order), the
// groups publishScript takes.
func (b *Broker) pipeline(ctx context.Context, calls []*scriptCall, queue func(p redis.Pipeliner, keys []string, args []any) *redis.Cmd) {
	now := time.Now().UnixMilli()
	// One fresh id serves every channel of the pipeline that starts an
	// epoch: epochs need to differ between a channel's lives, not between
	// channels.
	fresh := broker.NewEpoch()
	cmd := "PUBLISH"
	if b.sharded {
		cmd = "SPUBLISH"
	}
	pipe := b.client.Pipeline()
	for _, c := range calls {
		c.groupByChannel()
		c.ends = c.ends[:0]
		keys := make([]string, 1, 1+3*len(c.items))
		args := make([]any, 3, 3+6*len(c.items))
		args[0], args[1], args[2] = fresh, now, cmd
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
			keys[0] = n.gen // the same for every message of a call
			keys = append(keys, n.pos, n.stream, n.log)
			last := c.items[end-1] // a reload may change retention midway: the newest wins
			args = append(args, end-g, keyed, ttlMillis(last.r.TTL), max(last.r.Size, 0), n.pubsub)
			if keyed == 0 {
				// The hot case: one argument for the group.
				if end-g == 1 {
					args = append(args, first)
				} else {
					args = append(args, &groupData{items: c.items[g:end]})
				}
			} else {
				for _, it := range c.items[g:end] {
					if it.key != "" {
						keys = append(keys, n.idem(it.key))
						args = append(args, it.window)
					} else {
						args = append(args, 0)
					}
					args = append(args, it)
				}
			}
			c.ends = append(c.ends, end)
			g = end
		}
		c.cmd = queue(pipe, keys, args)
	}
	// Exec's error is the first command's; each command has its own.
	_, _ = pipe.Exec(ctx)
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

// settle records the outcome of every message of c from its command.
func (b *Broker) settle(c *scriptCall) {
	res, err := c.cmd.StringSlice()
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
