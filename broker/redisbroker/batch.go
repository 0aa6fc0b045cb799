package redisbroker

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/heraldpush/herald/broker"
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
	case b.jobs <- j: // the usual case, without a select over three channels
	default:
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
// the jobs waiting and publishes them in one pipeline through pipe, which
// is its own (a pubConn, closed when it stops) or go-redis's.
func (b *Broker) publisher(pipe scriptPipe) {
	if pc, ok := pipe.(*pubConn); ok {
		defer pc.close()
	}
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
			b.send(pipe, items)
		}
		for _, j := range jobs {
			j.done <- struct{}{} // its caller may reuse j from here on
		}
		clear(jobs)
		clear(items)
		jobs, items = jobs[:0], items[:0]
	}
}
