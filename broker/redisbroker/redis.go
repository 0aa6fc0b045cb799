// Package redisbroker is Herald's Redis engine. It lets any number of
// Herald nodes share channels through Redis (one server, Sentinel or
// Cluster) and keeps channel history in Redis streams. It is the only
// package that imports go-redis.
//
// # Connecting
//
// Options.URL picks the deployment:
//
//	redis://[user:pass@]host:6379[/db][?opts]         one server (rediss:// for TLS; unix:///path/redis.sock)
//	redis+sentinel://[user:pass@]s1:26379,s2:26379/mymaster[/db][?opts]
//	                                                  Sentinel; user:pass are the sentinels', the master's
//	                                                  go in ?username=&password=
//	redis+cluster://[user:pass@]h1:6379,h2:6379[?opts]
//	                                                  Redis Cluster (rediss+cluster:// for TLS); the hosts are seeds
//
// opts are go-redis's URL options (dial_timeout, read_timeout,
// write_timeout, pool_size, max_retries, ...). Unless set there, the engine
// dials within 1s, gives up a read or write after 1s, never retries a
// command (a retried publish could be published twice) and honours context
// deadlines, so that while Redis is down every call fails fast with an
// error wrapping broker.ErrUnavailable. Host lists are comma-separated;
// IPv6 literals are only supported in the single-server form.
//
// # Layout
//
// A channel's state is two keys sharing a hash tag, so that they live in one
// Cluster slot: "<prefix>{<channel>}:pos", a hash with the channel's epoch
// and last offset, and "<prefix>{<channel>}:log", a stream holding the
// retained messages, one entry per group published together, under ids
// "<first offset>-0" (absent when the namespace keeps no history; older
// versions kept one entry per message in "<prefix>{<channel>}:stream",
// which is read beside the log and moved into it by the next publish:
// scripts.go), and "<prefix>{<channel>}:k:<key>" per idempotency key,
// "<epoch> <offset>" of the publish that used it, expiring after its
// window. Messages are published on the pub/sub channel
// "<prefix>{<channel>}", several of one channel in one pub/sub message
// ("<epoch> <ts> <first offset> <len>:<data>...", payload.go). With Redis Cluster
// the hash tag is the channel's partition instead of its name
// ("<prefix>{<tag>}<channel>:pos", see Options.Partitions; the tags are
// chosen to spread the partitions evenly over the slots, slots.go): one
// SSUBSCRIBE command may only name channels of one slot, so a partition's
// channels are (re)subscribed in one command.
//
// A publish runs in a Lua script: the idempotency key check, next offset, epoch (a new random one when
// the channel's state is gone or predates the current generation, see
// guard.go), append to the log trimmed to about the retention size (the
// history script hides entries past it), expire the keys after the
// retention TTL, PUBLISH (SPUBLISH in Cluster). The script runs
// atomically, so offsets, history and live order agree. Concurrent
// publishes and batches are coalesced (batch.go): one pipelined round trip
// carries them all, one script call up to 64 messages of a partition,
// grouped by channel so that the position work is done once per channel
// and one PUBLISH carries the group. On one server and with Sentinel the
// publisher writes those pipelines itself on a connection of its own
// (pubconn.go); with Cluster they go through go-redis.
// A publish fails with broker.ErrUnavailable only when it was never
// written to a connection; written and unanswered is broker.ErrUncertain.
//
// Every new connection checks which Redis process it reached and whether
// that process's data is durable before anything else runs on it
// (guard.go): a process that may have come back with older data than it
// acknowledged starts a new generation, so that no offset is handed out
// twice in one epoch. docs/guarantees.md has the table per persistence
// mode.
//
// # Delivery
//
// A node holds one pub/sub connection (with Cluster, one per master:
// nodeconn.go) whatever its number of channels and clients, subscribed to
// the channels the hub asked for. Subscribe returns once Redis confirmed
// the subscription, so everything published after it returns is delivered.
// Messages reach the Handler in offset order per channel, from a few
// delivery goroutines (one per channel hash), so one slow channel does not
// hold up the others. Each connection is pinged when idle; one that stays
// silent is replaced. After a connection was lost and is back (go-redis
// redials and resubscribes; with Cluster, the engine does, one SSUBSCRIBE
// per partition), Handler.HandleReconnect is called once (with Cluster,
// once per partition): some messages may have been missed in between and
// the hub fills the gap from history. With Cluster a partition follows
// its slot to another master (failover, resharding) the same way.
//
// # Goroutines and locks
//
// Owned by the Broker, started by New, ended by Close: the delivery
// goroutines (one per queue; they end when Close closes the queues), the
// publishers (batch.go; each owns its publish connection, pubconn.go, and
// closes it when it stops), and the pub/sub readers: one per shard without
// Cluster (shard.read), one per master connection with Cluster
// (nodeConn.run, started when a partition is first homed on that master,
// ended by Close or when its last partition moves away). Lock order:
// Broker.nodesMu, then nodeConn.mu, then shard.mu; no lock is held while
// calling the Handler or waiting on a queue.
package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/redis/go-redis/v9"
)

// MaxPartitions bounds Options.Partitions: one partition per Cluster
// slot. Past it no tag hashes into a slot range of its own (partitionTags
// would never end).
const MaxPartitions = clusterSlots

// Defaults for Options.
const (
	DefaultPrefix       = "herald:"
	DefaultPartitions   = 16
	DefaultPingInterval = 2 * time.Second
	DefaultDialTimeout  = time.Second
	DefaultIOTimeout    = time.Second // per read or write on a connection
)

// deliveryQueueLen bounds each delivery queue. A full queue stops the
// pub/sub reader, which is the back-pressure we want: Redis buffers for a
// while, then drops a pub/sub client that falls too far behind, and the
// reconnect is handled like any other.
const deliveryQueueLen = 1024

// Options configure the engine. The zero value of each field picks its
// default.
type Options struct {
	// URL is the Redis address, in one of the forms of the package doc.
	URL string
	// Prefix starts every key and pub/sub channel name, so that several
	// deployments (or tests) can share one Redis. It must not contain "{"
	// or "}". Default DefaultPrefix.
	Prefix string
	// Partitions is the number of hash-tag partitions of the channels used
	// with Redis Cluster; it spreads the channels over the cluster's
	// masters. A node holds one pub/sub connection per master whatever
	// the value, and resubscribes a master's channels in one command per
	// partition it owns. All nodes of a deployment must use the same
	// value. Ignored without Cluster. Default DefaultPartitions; at most
	// MaxPartitions.
	Partitions int
	// PingInterval is how long a pub/sub connection may be idle before it
	// is pinged; one that then stays silent for another interval plus the
	// read timeout is replaced. Default DefaultPingInterval.
	PingInterval time.Duration
	// Logger receives connection losses and recoveries; nil discards them.
	Logger *slog.Logger
}

// Broker is the Redis engine. It implements broker.Broker and
// broker.Readier.
type Broker struct {
	opts    Options
	client  redis.UniversalClient
	cluster *redis.ClusterClient // nil unless Redis Cluster
	sharded bool                 // SPUBLISH/SSUBSCRIBE (Cluster)
	// pongWait is how long a pub/sub connection may stay silent after a
	// ping before it is replaced.
	pongWait time.Duration
	// ioTimeout bounds a read or write on a connection (the URL's
	// read_timeout).
	ioTimeout time.Duration
	prefix    string
	handler   broker.Handler
	log       *slog.Logger

	shards  []*shard
	queues  []chan *broker.Message
	genKeys []string // generation hash per partition (one without Cluster)
	tags    []string // hash tag per Cluster partition (slots.go)

	// With Cluster, the pub/sub connections, one per master
	// (nodeconn.go). nodesMu guards nodes; it is taken before
	// nodeConn.mu and shard.mu.
	nodesMu  sync.Mutex
	nodes    map[string]*nodeConn // by master address
	tagPart  map[string]int       // hash tag -> partition
	slotPart map[int]int          // slot of a partition's tag -> partition

	// jobs carries publishes to the publisher goroutines (batch.go).
	jobs       chan *pubJob
	publishing sync.WaitGroup

	closed  atomic.Bool
	done    chan struct{}
	readers sync.WaitGroup
	workers sync.WaitGroup
}

var (
	_ broker.Broker         = (*Broker)(nil)
	_ broker.Readier        = (*Broker)(nil)
	_ broker.BatchPublisher = (*Broker)(nil)
)

// New connects to Redis and returns an engine that delivers to h. It fails
// (with an error wrapping broker.ErrUnavailable) when Redis cannot be
// reached within ctx: a node that starts without its broker is more likely
// misconfigured than unlucky.
func New(ctx context.Context, opts Options, h broker.Handler) (*Broker, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redisbroker: prefix %q must not contain { or }", opts.Prefix)
	}
	if opts.Partitions <= 0 {
		opts.Partitions = DefaultPartitions
	}
	if opts.Partitions > MaxPartitions {
		return nil, fmt.Errorf("redisbroker: %d partitions, at most %d (one per Cluster slot)", opts.Partitions, MaxPartitions)
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Broker{}
	client, readTimeout, err := newClient(opts.URL, b.onConnect)
	if err != nil {
		return nil, err
	}
	if readTimeout <= 0 {
		// Disabled in the URL; a ping still needs a bound.
		readTimeout = DefaultIOTimeout
	}
	*b = Broker{
		opts:    opts,
		client:  client,
		prefix:  opts.Prefix,
		handler: h,
		log:     opts.Logger,
		done:    make(chan struct{}),
		jobs:    make(chan *pubJob, maxPipeline),
		// A ping is a command like any other: its reply may take up to
		// the read timeout. Allowing only a ping interval would replace
		// healthy connections of a busy Redis (or a busy node: a GC
		// pause, a loaded test machine) and report reconnects that
		// never were.
		pongWait:  opts.PingInterval + readTimeout,
		ioTimeout: readTimeout,
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		b.cluster, b.sharded = cc, true
	}
	parts := 1
	if b.sharded {
		parts = opts.Partitions
	}
	if b.sharded {
		b.tags = partitionTags(parts)
	}
	b.genKeys = make([]string, parts)
	for i := range b.genKeys {
		b.genKeys[i] = b.genKey(i)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, b.fail("connect", "", err)
	}
	pipes := make([]scriptPipe, publishers)
	for i := range pipes {
		pipes[i] = clientPipe{b}
		if b.sharded {
			continue
		}
		// Dialed now, so that a node finds out at start, and its first
		// publishes do not wait for a dial.
		pc := newPubConn(b)
		if err := pc.connect(); err != nil {
			for _, p := range pipes[:i] {
				p.(*pubConn).close()
			}
			_ = client.Close()
			return nil, b.fail("connect", "", err)
		}
		pipes[i] = pc
	}

	b.queues = make([]chan *broker.Message, runtime.GOMAXPROCS(0))
	for i := range b.queues {
		q := make(chan *broker.Message, deliveryQueueLen)
		b.queues[i] = q
		b.workers.Go(func() {
			for m := range q {
				b.handler.HandleMessage(m)
			}
		})
	}
	for _, pipe := range pipes {
		b.publishing.Go(func() { b.publisher(pipe) })
	}
	b.shards = make([]*shard, parts)
	for i := range b.shards {
		b.shards[i] = newShard(b, i)
	}
	// Start every connection now, so that a node that cannot subscribe
	// finds out at start rather than at its first client.
	var errs []error
	if b.sharded {
		errs = append(errs, b.startNodes(ctx))
	} else {
		for _, s := range b.shards {
			errs = append(errs, s.start(ctx))
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = b.Close(context.Background())
		return nil, err
	}
	return b, nil
}

// queue returns the delivery queue of channel: one channel always uses the
// same queue, which keeps its messages in order.
func (b *Broker) queue(channel string) chan *broker.Message {
	h := fnv.New32a()
	h.Write([]byte(channel))
	return b.queues[h.Sum32()%uint32(len(b.queues))]
}

// Ready implements broker.Readier: Redis answers PING and every pub/sub
// connection is up.
func (b *Broker) Ready(ctx context.Context) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if err := b.client.Ping(ctx).Err(); err != nil {
		return b.fail("ping", "", err)
	}
	for _, s := range b.shards {
		if s.isDown() {
			return fmt.Errorf("redisbroker: pub/sub connection %d is down: %w", s.index, broker.ErrUnavailable)
		}
	}
	return nil
}

// Close implements broker.Broker. Messages not yet handed to the Handler
// are dropped.
func (b *Broker) Close(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(b.done)
	for _, s := range b.shards {
		if s != nil {
			s.close()
		}
	}
	b.closeNodes()
	stopped := make(chan struct{})
	go func() {
		// Readers stop first: they are the only senders on the queues.
		b.readers.Wait()
		for _, q := range b.queues {
			close(q)
		}
		b.workers.Wait()
		// Publishers finish the pipeline in flight, bounded by the I/O
		// timeouts, before the client closes under them.
		b.publishing.Wait()
		close(stopped)
	}()
	var err error
	select {
	case <-stopped:
	case <-ctx.Done():
		err = fmt.Errorf("redisbroker: close: %w", ctx.Err())
	}
	if cerr := b.client.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("redisbroker: close: %w", cerr)
	}
	return err
}

// fail wraps err from operation op on channel. Errors that say Redis
// cannot serve now (network, timeouts, a server loading its data or
// failing over) wrap broker.ErrUnavailable; other replies (a bug, a wrong
// key type) do not.
func (b *Broker) fail(op, channel string, err error) error {
	if b.closed.Load() {
		return fmt.Errorf("redisbroker: %s: %w", op, broker.ErrClosed)
	}
	what := op
	if channel != "" {
		what = fmt.Sprintf("%s %q", op, channel)
	}
	if unavailable(err) {
		return fmt.Errorf("redisbroker: %s: %w: %w", what, broker.ErrUnavailable, err)
	}
	return fmt.Errorf("redisbroker: %s: %w", what, err)
}

func unavailable(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true // network, timeout, context, pool: Redis was not reached
	}
	for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "BUSY", "NOREPLICAS", "MOVED", "ASK", "OOM", "NOSCRIPT"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// SetLibraryLogger sends go-redis's own log lines (failed dials, cluster
// state changes) to l, at level Warn. go-redis has one logger per
// process: this affects every go-redis client in it.
func SetLibraryLogger(l *slog.Logger) {
	redis.SetLogger(libraryLogger{l})
}

type libraryLogger struct{ l *slog.Logger }

func (g libraryLogger) Printf(ctx context.Context, format string, v ...any) {
	g.l.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), "source", "go-redis")
}
