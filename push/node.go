// Package push is Herald's core. A Node is the one entry point of every
// operation (publish, history, presence, subscribe and unsubscribe for a
// session, authenticate, disconnect): the HTTP API, the WebSocket, SSE
// and long-poll transports and the demo feeds all go through it, so that
// validation, limits and metrics are written once. It owns the broker, the
// Hub (the local registry of subscriptions and the fan-out), recovery of
// missed messages, presence, bans, API keys and the cluster reports.
//
// The lock order and the inventory of long-lived goroutines of the whole
// package are in concurrency.go.
package push

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/broker"
)

// Defaults for Options.
const (
	DefaultHeartbeat        = 25 * time.Second
	DefaultMaxQueueBytes    = 1 << 20
	DefaultMaxFrameBytes    = 64 << 10
	DefaultWriteTimeout     = 10 * time.Second
	DefaultBrokerTimeout    = 5 * time.Second
	DefaultMaxChannels      = 128
	DefaultRecoveryMessages = 10000
	DefaultTokenGrace       = 10 * time.Second
	DefaultOfflineDelay     = 10 * time.Second
	DefaultEventQueueLen    = 100000
)

// Options configure a Node. The zero value of each field picks its default.
type Options struct {
	// Node names this node in welcome frames and stats.
	Node string
	// Namespaces resolves channel rules; nil means only the default
	// namespace with default rules.
	Namespaces *Namespaces
	// Heartbeat is the interval between server pings.
	Heartbeat time.Duration
	// HeartbeatTimeout closes a session that sent nothing for this long;
	// default three heartbeats.
	HeartbeatTimeout time.Duration
	// MaxQueueBytes bounds each session's send queue. A session past it
	// whose client stopped reading is closed with CloseSlowConsumer (see
	// Session.send for bursts).
	MaxQueueBytes int
	// MaxFrameBytes caps an incoming frame; larger ones close with 1009.
	MaxFrameBytes int
	// WriteTimeout bounds one write to a client socket.
	WriteTimeout time.Duration
	// BrokerTimeout bounds each broker call made for a client.
	BrokerTimeout time.Duration
	// MaxChannels caps the channels one connection may subscribe to.
	MaxChannels int
	// Verifier checks connection tokens; nil refuses every token.
	Verifier *Verifier
	// TokenGrace is how long a connection may stay after its token
	// expired, to send a fresh one in an auth frame (default 10s).
	TokenGrace time.Duration
	// APIKeys are the publisher API keys. The HTTP API checks them
	// (CheckAPIKey); a session that sends one in an auth frame may
	// subscribe to the node statistics (herald:stats).
	APIKeys []string
	// StatsInterval is how often each node reports its figures over the
	// broker (default 2s).
	StatsInterval time.Duration
	// CanaryInterval is how often the node sends a probe through the
	// broker's pub/sub and expects it back (canary.go); three intervals
	// without one make Ready fail with CodePubSubStalled. Default
	// DefaultCanaryInterval.
	CanaryInterval time.Duration
	// ObserveBroker, if set, is told the duration of every broker call the
	// node makes (op is "subscribe", "unsubscribe", "history", "publish",
	// "presence").
	ObserveBroker func(op string, d time.Duration, err error)
	// Logger receives connection-level logs; nil discards them.
	Logger *slog.Logger

	// EventQueues are the queues presence transitions are recorded in
	// (one per webhook, read by internal/webhook), each with the event
	// types it wants: online, offline, join, leave.
	EventQueues []EventQueue
	// EventQueueLen bounds each queue (default DefaultEventQueueLen);
	// events past it are dropped and counted.
	EventQueueLen int
	// OfflineDelay is how long a user's last connection must have been
	// gone before the user is offline (default DefaultOfflineDelay), so
	// that a reload does not flap.
	OfflineDelay time.Duration
}

func (o *Options) setDefaults() {
	if o.Namespaces == nil {
		o.Namespaces = &Namespaces{}
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = 3 * o.Heartbeat
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.BrokerTimeout <= 0 {
		o.BrokerTimeout = DefaultBrokerTimeout
	}
	if o.MaxChannels <= 0 {
		o.MaxChannels = DefaultMaxChannels
	}
	if o.StatsInterval <= 0 {
		o.StatsInterval = 2 * time.Second
	}
	if o.TokenGrace <= 0 {
		o.TokenGrace = DefaultTokenGrace
	}
	if o.CanaryInterval <= 0 {
		o.CanaryInterval = DefaultCanaryInterval
	}
	if o.OfflineDelay <= 0 {
		o.OfflineDelay = DefaultOfflineDelay
	}
	if o.EventQueueLen <= 0 {
		o.EventQueueLen = DefaultEventQueueLen
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Node == "" {
		o.Node = "herald-" + broker.NewEpoch()[:6]
	}
	var keys []string
	for _, k := range o.APIKeys {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	o.APIKeys = keys
}

// Node is one Herald server's core. It implements broker.Handler: the
// broker hands it every message of the channels it subscribed.
type Node struct {
	opts   Options
	broker broker.Broker
	log    *slog.Logger

	hub      Hub      // local subscriptions and fan-out
	recovery recovery // gap fills and resyncs
	sessions sessionSet

	nextID   atomic.Uint64
	stats    Stats
	rejected [numReasons]atomic.Uint64
	closes   [numCloses]atomic.Uint64
	nodes    nodeReports
	canary   canary // the pub/sub probe (canary.go)

	serverSubs serverSubs // server-side subscription requests (serversub.go)

	pstore      broker.Presence     // the broker's, nil if it keeps none
	pbatch      presenceBatch       // joins and leaves coalesced into few store calls
	instance    string              // random per process: names connections in the presence store
	eventQueues map[string][]string // event type -> queues that want it

	// done is closed by Close; every long-lived goroutine of the node
	// (heartbeat, reportLoop, resync, fills) ends when it sees it, and wg
	// waits for them.
	done     chan struct{}
	life     context.Context // cancelled by Close: ends recovery's broker reads
	stopLife context.CancelFunc
	stopOnce sync.Once
	wg       sync.WaitGroup
	// afterClose run at the end of Close, once every session is gone
	// (AfterClose): the WebSocket writers, which send the close frames.
	afterClose []func()
}

var _ broker.Handler = (*Node)(nil)

// Stats are this node's running totals, read with Node.Snapshot.
type Stats struct {
	Received   atomic.Uint64 // messages received from the broker
	Delivered  atomic.Uint64 // frames queued to sessions
	Dropped    atomic.Uint64 // frames not queued: the session was closing
	Skipped    atomic.Uint64 // messages a throttled subscriber did not get (max_rate, conflation)
	Conflated  atomic.Uint64 // times a conflating session fell behind
	Lagging    atomic.Uint64 // times a client was found lagging (push/ws/lag.go)
	ClientPubs atomic.Uint64 // client publishes accepted
	Gaps       atomic.Uint64 // gaps found and filled or reported
	Reconnects atomic.Uint64 // broker reconnects
	// PresenceEvents counts the join and leave events this node told
	// (one per user transition, not per connection).
	PresenceEvents atomic.Uint64
}

// NewNode returns a node. Call Start with its broker before serving.
func NewNode(opts Options) *Node {
	opts.setDefaults()
	n := &Node{opts: opts, log: opts.Logger, done: make(chan struct{})}
	n.life, n.stopLife = context.WithCancel(context.Background())
	n.hub.init(&n.stats, n.timedBroker(), n.log, opts.BrokerTimeout)
	n.recovery.init(n)
	n.sessions.init()
	n.canary.init(n)
	n.serverSubs.wake = make(chan struct{}, 1)
	n.instance = broker.NewEpoch()
	n.eventQueues = make(map[string][]string)
	for _, q := range opts.EventQueues {
		for _, typ := range q.Events {
			n.eventQueues[typ] = append(n.eventQueues[typ], q.Name)
		}
	}
	return n
}

// Start attaches the broker, subscribes the system channels and starts
// the heartbeat and stats loops.
func (n *Node) Start(ctx context.Context, b broker.Broker) {
	n.broker = b
	n.wg.Add(2)
	go n.heartbeat()
	go func() {
		defer n.wg.Done()
		n.hub.wheel.run(n.done)
	}()
	n.startSystem(ctx)
	n.pstore, _ = b.(broker.Presence)
	if n.pstore != nil && n.keepsPresence() {
		n.wg.Add(1)
		go n.presenceLoop()
	}
}

// keepsPresence reports whether any namespace keeps presence or any
// webhook wants events: otherwise the presence loop does not run.
func (n *Node) keepsPresence() bool {
	if n.opts.Namespaces.Default.Presence.Tracked() || len(n.eventQueues) > 0 {
		return true
	}
	for _, ns := range n.opts.Namespaces.Named {
		if ns.Presence.Tracked() {
			return true
		}
	}
	return false
}

// Options returns the node's options with defaults filled in.
func (n *Node) Options() Options { return n.opts }

// Broker returns the node's broker, for wiring and tests: transports and
// the HTTP API go through the node's operations instead.
func (n *Node) Broker() broker.Broker { return n.broker }

// Namespaces returns the namespace rules.
func (n *Node) Namespaces() *Namespaces { return n.opts.Namespaces }

// Name is this node's name.
func (n *Node) Name() string { return n.opts.Node }

// Counts reports the sessions, channels and subscriptions on this node.
func (n *Node) Counts() (sessions, channels, subscriptions int) {
	channels, subscriptions = n.hub.counts()
	return n.sessions.len(), channels, subscriptions
}

// AfterClose has Close run f last, after every session is gone (or Close
// gave up waiting): a transport lets go there of what its sessions' closes
// need. Call it before serving.
func (n *Node) AfterClose(f func()) { n.afterClose = append(n.afterClose, f) }

// Close closes every session with code and reason, waits until they are
// gone (or ctx ends) and stops the node's goroutines.
func (n *Node) Close(ctx context.Context, code uint16, reason string) error {
	n.stopOnce.Do(func() {
		close(n.done)
		n.stopLife()
	})
	n.sessions.each(func(s *Session) { s.closeAsync(code, reason) })
	n.wg.Wait()
	// The transports' writers send the close frames: stop them last.
	defer func() {
		for _, f := range n.afterClose {
			f()
		}
	}()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for n.sessions.len() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("push: %d sessions still open: %w", n.sessions.len(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// HandleMessage implements broker.Handler: system channels are acted on,
// every other message goes to recovery, which fans it out in order (and
// fills any gap before it without holding up the broker's goroutine).
func (n *Node) HandleMessage(m *broker.Message) {
	if m.Channel == n.canary.channel {
		n.canary.back(m.Data)
		return
	}
	n.stats.Received.Add(1)
	if isSystem(m.Channel) {
		n.handleSystem(m)
	}
	if ch := n.hub.lookup(m.Channel); ch != nil {
		n.recovery.receive(ch, m)
	}
}

// HandleReconnect implements broker.Handler: after the broker connection
// came back, every local channel is checked for messages published in
// between. Reconnects in a burst share one resync.
func (n *Node) HandleReconnect() {
	n.stats.Reconnects.Add(1)
	n.recovery.requestResync()
}

// CheckAPIKey compares key with the API keys in constant time. It is the
// one check of API keys: the HTTP API's and the admin auth frame's.
func (n *Node) CheckAPIKey(key string) bool {
	match := 0
	for _, k := range n.opts.APIKeys {
		match |= subtle.ConstantTimeCompare([]byte(key), []byte(k))
	}
	return key != "" && match == 1
}

// HasAPIKeys reports whether any API key is configured (keyless mode
// otherwise: the HTTP API accepts only loopback publishers).
func (n *Node) HasAPIKeys() bool { return len(n.opts.APIKeys) > 0 }

// recoveryCtx bounds one broker call of recovery (a gap fill, a resync),
// cut short by Close so that shutdown does not wait on a broker that is
// down.
func (n *Node) recoveryCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(n.life, n.opts.BrokerTimeout)
}

// brokerCtx bounds one broker call made for a client.
func (n *Node) brokerCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), n.opts.BrokerTimeout)
}

// timed runs a broker call and reports its duration to ObserveBroker.
func (n *Node) timed(op string, f func() error) error {
	if n.opts.ObserveBroker == nil {
		return f()
	}
	start := time.Now()
	err := f()
	n.opts.ObserveBroker(op, time.Since(start), err)
	return err
}

// history reads from the broker, timed.
func (n *Node) history(ctx context.Context, channel string, q broker.HistoryQuery) (broker.History, error) {
	var hist broker.History
	err := n.timed("history", func() error {
		var err error
		hist, err = n.broker.History(ctx, channel, q)
		return err
	})
	return hist, err
}

// timedBroker is the hub's view of the broker: Subscribe and Unsubscribe,
// timed. The broker is attached by Start, after the hub exists.
func (n *Node) timedBroker() channelSubscriber { return nodeSubscriber{n} }

type nodeSubscriber struct{ n *Node }

func (s nodeSubscriber) Subscribe(ctx context.Context, channel string) error {
	return s.n.timed("subscribe", func() error { return s.n.broker.Subscribe(ctx, channel) })
}

func (s nodeSubscriber) Unsubscribe(ctx context.Context, channel string) error {
	return s.n.timed("unsubscribe", func() error { return s.n.broker.Unsubscribe(ctx, channel) })
}

// Ready reports whether the node can serve: its pub/sub canary comes
// back (CodePubSubStalled otherwise, with the broker's own error when it
// has one) and its broker, when the engine can tell (broker.Readier), is
// reachable.
func (n *Node) Ready(ctx context.Context) error {
	var berr error
	if r, ok := n.broker.(broker.Readier); ok {
		berr = r.Ready(ctx)
	}
	if err := n.checkCanary(); err != nil {
		if berr != nil {
			err.Message += "; broker: " + berr.Error()
		}
		return err
	}
	return berr
}
