// Package push is Herald's core: the hub that maps channels to this node's
// subscribers, the WebSocket sessions (on gws) that speak the client
// protocol, namespaces and their rules, and recovery of missed messages.
//
// Lock order (never take an earlier lock while holding a later one):
//
//	Hub.stripes[i] -> hubShard.mu -> hubChannel.mu -> Session.mu
//
// Broker calls are made holding at most a stripe lock or (to fill a gap in
// order) a channel lock, never a shard or session lock.
package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/broker"
)

const (
	numShards  = 64  // channel map shards: a hot channel does not lock the world
	numStripes = 256 // serialise broker Subscribe/Unsubscribe per channel
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

	// fillTries bounds the history reads for one gap while the broker
	// answers "unavailable" (about a second in all).
	fillTries = 5
)

// Options configure a Hub. The zero value of each field picks its default.
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
	// AdminKeys are the API keys; a session that sends one in an auth
	// frame may subscribe to the node statistics (herald:stats).
	AdminKeys []string
	// StatsInterval is how often each node reports its figures over the
	// broker (default 2s).
	StatsInterval time.Duration
	// ObserveBroker, if set, is told the duration of every broker call the
	// hub makes (op is "subscribe", "unsubscribe", "history", "publish").
	ObserveBroker func(op string, d time.Duration, err error)
	// Logger receives connection-level logs; nil discards them.
	Logger *slog.Logger
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
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Node == "" {
		o.Node = "herald-" + broker.NewEpoch()[:6]
	}
}

// Hub maps channels to the sessions subscribed on this node and delivers
// the broker's messages to them. It implements broker.Handler.
type Hub struct {
	opts   Options
	broker broker.Broker
	log    *slog.Logger

	stripes  [numStripes]sync.Mutex
	shards   [numShards]hubShard
	sessions sessionSet

	nextID   atomic.Uint64
	stats    Stats
	rejected [numReasons]atomic.Uint64
	closes   [numCloses]atomic.Uint64
	nodes    nodeReports

	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	writers  *writers // run WebSocket flushes; started by Start
}

var _ broker.Handler = (*Hub)(nil)

type hubShard struct {
	mu       sync.RWMutex
	channels map[string]*hubChannel
}

// hubChannel is one channel with local subscribers.
type hubChannel struct {
	name string

	mu   sync.Mutex
	subs []*subscription
	// epoch and last are the position of the last message delivered here;
	// epoch is "" until the first position is known.
	epoch string
	last  uint64
}

// subscription is one session's membership in one channel.
type subscription struct {
	s   *Session
	ch  *hubChannel
	idx int // index in ch.subs; guarded by ch.mu
	// While buffering, live messages are kept in buf until the subscribe
	// reply and any recovered history have been queued. Guarded by ch.mu.
	buffering bool
	buf       []pending
	// skip drops live messages at or below this offset: they were already
	// sent from history. Guarded by ch.mu.
	skip uint64
	// presence: the channel's namespace tracks who is subscribed.
	presence bool
}

type pending struct {
	offset uint64
	frame  []byte
}

// Stats are this node's running totals, read with Hub.Snapshot.
type Stats struct {
	Published     atomic.Uint64 // messages received from the broker
	Delivered     atomic.Uint64 // frames queued to sessions
	Dropped       atomic.Uint64 // frames not queued: the session was closing
	ClientPubs    atomic.Uint64 // client publishes accepted
	SlowConsumers atomic.Uint64
	Gaps          atomic.Uint64 // gaps found and filled or reported
	Reconnects    atomic.Uint64 // broker reconnects
}

// NewHub returns a hub. Call Start with its broker before serving.
func NewHub(opts Options) *Hub {
	opts.setDefaults()
	h := &Hub{opts: opts, log: opts.Logger, done: make(chan struct{})}
	for i := range h.shards {
		h.shards[i].channels = make(map[string]*hubChannel)
	}
	h.sessions.init()
	return h
}

// Start attaches the broker, subscribes the system channels and starts
// the heartbeat and stats loops.
func (h *Hub) Start(ctx context.Context, b broker.Broker) {
	h.broker = b
	h.writers = startWriters(runtime.GOMAXPROCS(0))
	h.wg.Add(1)
	go h.heartbeat()
	h.startSystem(ctx)
}

// Options returns the hub's options with defaults filled in.
func (h *Hub) Options() Options { return h.opts }

// Broker returns the hub's broker.
func (h *Hub) Broker() broker.Broker { return h.broker }

// Namespaces returns the namespace rules.
func (h *Hub) Namespaces() *Namespaces { return h.opts.Namespaces }

// Node is this node's name.
func (h *Hub) Node() string { return h.opts.Node }

// Counts reports the sessions, channels and subscriptions on this node.
func (h *Hub) Counts() (sessions, channels, subscriptions int) {
	sessions = h.sessions.len()
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		channels += len(sh.channels)
		for _, ch := range sh.channels {
			ch.mu.Lock()
			subscriptions += len(ch.subs)
			ch.mu.Unlock()
		}
		sh.mu.RUnlock()
	}
	return
}

// Close closes every session with code and reason, waits until they are
// gone (or ctx ends) and stops the hub.
func (h *Hub) Close(ctx context.Context, code uint16, reason string) error {
	h.stopOnce.Do(func() { close(h.done) })
	h.sessions.each(func(s *Session) { s.closeAsync(code, reason) })
	h.wg.Wait()
	// The writers send the close frames: stop them last.
	if h.writers != nil {
		defer h.writers.stop()
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for h.sessions.len() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("push: %d sessions still open: %w", h.sessions.len(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func (h *Hub) shard(channel string) *hubShard {
	return &h.shards[fnv32(channel)%numShards]
}

func (h *Hub) lookup(channel string) *hubChannel {
	sh := h.shard(channel)
	sh.mu.RLock()
	ch := sh.channels[channel]
	sh.mu.RUnlock()
	return ch
}

// attach adds sub to channel, subscribing this node in the broker when it
// is the channel's first local subscriber. sub starts out buffering.
func (h *Hub) attach(ctx context.Context, channel string, sub *subscription) error {
	stripe := &h.stripes[fnv32(channel)%numStripes]
	stripe.Lock()
	defer stripe.Unlock()
	sh := h.shard(channel)
	sh.mu.RLock()
	ch := sh.channels[channel]
	sh.mu.RUnlock()
	if ch == nil {
		// The stripe lock keeps a concurrent detach of the same channel
		// from unsubscribing the broker after we subscribed it. System
		// channels are subscribed for the hub's whole life.
		if !isSystem(channel) {
			if err := h.timed("subscribe", func() error { return h.broker.Subscribe(ctx, channel) }); err != nil {
				return err
			}
		}
		ch = &hubChannel{name: channel}
		sh.mu.Lock()
		sh.channels[channel] = ch
		sh.mu.Unlock()
	}
	ch.mu.Lock()
	sub.ch = ch
	sub.idx = len(ch.subs)
	sub.buffering = true
	ch.subs = append(ch.subs, sub)
	ch.mu.Unlock()
	return nil
}

// detach removes sub from its channel, unsubscribing the broker when it
// was the last local subscriber.
func (h *Hub) detach(sub *subscription) {
	ch := sub.ch
	if ch == nil {
		return
	}
	stripe := &h.stripes[fnv32(ch.name)%numStripes]
	stripe.Lock()
	defer stripe.Unlock()
	ch.mu.Lock()
	if sub.idx < len(ch.subs) && ch.subs[sub.idx] == sub {
		last := len(ch.subs) - 1
		ch.subs[sub.idx] = ch.subs[last]
		ch.subs[sub.idx].idx = sub.idx
		ch.subs[last] = nil
		ch.subs = ch.subs[:last]
	}
	empty := len(ch.subs) == 0
	ch.mu.Unlock()
	if !empty {
		return
	}
	sh := h.shard(ch.name)
	sh.mu.Lock()
	if sh.channels[ch.name] == ch {
		delete(sh.channels, ch.name)
	}
	sh.mu.Unlock()
	if isSystem(ch.name) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.BrokerTimeout)
	defer cancel()
	if err := h.timed("unsubscribe", func() error { return h.broker.Unsubscribe(ctx, ch.name) }); err != nil {
		// The broker will deliver messages nobody here wants; the hub
		// drops them. Not worth failing anything for.
		h.log.Warn("broker unsubscribe failed", "channel", ch.name, "err", err)
	}
}

// HandleMessage implements broker.Handler: it fans m out to the channel's
// local subscribers, filling any gap before it from history.
func (h *Hub) HandleMessage(m *broker.Message) {
	h.stats.Published.Add(1)
	if isSystem(m.Channel) {
		h.handleSystem(m)
	}
	ch := h.lookup(m.Channel)
	if ch == nil {
		return
	}
	ch.mu.Lock()
	h.deliverLocked(ch, m, true)
	ch.mu.Unlock()
}

// deliverLocked delivers m in order. With fill set, a gap between the last
// delivered offset and m is first filled from history. ch.mu is held.
func (h *Hub) deliverLocked(ch *hubChannel, m *broker.Message, fill bool) {
	if ch.epoch != "" && m.Epoch != ch.epoch {
		// The channel's history was lost (new epoch): nobody can recover
		// across it. Tell subscribers, then go on in the new epoch.
		h.resetLocked(ch, m.Epoch, m.Offset-1)
	}
	if ch.epoch == m.Epoch && ch.last != 0 {
		if m.Offset <= ch.last {
			return // already delivered (from history after a gap)
		}
		if m.Offset > ch.last+1 && fill {
			h.fillLocked(ch, m.Offset-1)
		}
	}
	ch.epoch, ch.last = m.Epoch, m.Offset
	frame := AppendMessage(make([]byte, 0, messageCap(m)), m, false)
	var n uint64
	for _, sub := range ch.subs {
		if sub.buffering {
			sub.buf = append(sub.buf, pending{m.Offset, frame})
			continue
		}
		if m.Offset <= sub.skip {
			continue
		}
		sub.s.send(frame)
		n++
	}
	h.stats.Delivered.Add(n)
}

// fillLocked delivers the messages after ch.last up to offset upto from
// history, or tells subscribers the gap cannot be filled. ch.mu is held:
// new messages of this channel wait, which keeps them in order.
func (h *Hub) fillLocked(ch *hubChannel, upto uint64) {
	h.stats.Gaps.Add(1)
	want := upto - ch.last
	q := broker.HistoryQuery{
		Since: broker.Position{Epoch: ch.epoch, Offset: ch.last},
		Limit: int(min(want, DefaultRecoveryMessages)),
	}
	// A broker that just came back may still be loading its data: retry
	// a few times before telling subscribers the gap is lost.
	var hist broker.History
	var err error
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.BrokerTimeout)
		hist, err = h.history(ctx, ch.name, q)
		cancel()
		if err == nil || !errors.Is(err, broker.ErrUnavailable) || try == fillTries {
			break
		}
		time.Sleep(time.Duration(try) * 100 * time.Millisecond)
	}
	ok := err == nil && hist.Position.Epoch == ch.epoch && uint64(len(hist.Messages)) == want
	for i := 0; ok && i < len(hist.Messages); i++ {
		ok = hist.Messages[i].Offset == ch.last+1+uint64(i)
	}
	if !ok {
		h.log.Warn("gap not recoverable", "channel", ch.name, "from", ch.last+1, "to", upto, "err", err)
		epoch := ch.epoch
		if err == nil {
			epoch = hist.Position.Epoch
		}
		h.resetLocked(ch, epoch, upto)
		return
	}
	for i := range hist.Messages {
		h.deliverLocked(ch, &hist.Messages[i], false)
	}
}

// resetLocked tells every subscriber that messages were lost: each gets
// "unsubscribed" (reason "resubscribe") then "subscribed" with recovered
// false at the new position, and should reload its state.
func (h *Hub) resetLocked(ch *hubChannel, epoch string, offset uint64) {
	ch.epoch, ch.last = epoch, offset
	f := false
	unsub := encode(unsubscribedFrame{Type: "unsubscribed", Channel: ch.name, Reason: "resubscribe"})
	sub := encode(subscribedFrame{Type: "subscribed", Channel: ch.name, Epoch: epoch, Offset: offset, Recovered: &f})
	for _, s := range ch.subs {
		s.skip = 0
		if s.buffering {
			continue // its subscribe reply is not out yet and will carry the new state
		}
		s.s.send(unsub)
		s.s.send(sub)
	}
}

// HandleReconnect implements broker.Handler: after the broker connection
// came back, every local channel is checked for messages published in
// between and the gap is filled from history.
func (h *Hub) HandleReconnect() {
	h.stats.Reconnects.Add(1)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.resync()
	}()
}

func (h *Hub) resync() {
	pending := h.resyncOnce(nil)
	// Channels whose position could not be read yet (the broker is still
	// loading, or flapping) are tried again for a while.
	for wait := 100 * time.Millisecond; len(pending) > 0 && wait < 30*time.Second; wait *= 2 {
		select {
		case <-h.done:
			return
		case <-time.After(wait):
		}
		pending = h.resyncOnce(pending)
	}
	for _, ch := range pending {
		h.log.Warn("resync gave up: channel position unreadable", "channel", ch.name)
	}
}

// resyncOnce fills the gaps of chans (all channels when nil) and returns
// those it could not check.
func (h *Hub) resyncOnce(chans []*hubChannel) (failed []*hubChannel) {
	if chans == nil {
		for i := range h.shards {
			sh := &h.shards[i]
			sh.mu.RLock()
			for _, ch := range sh.channels {
				chans = append(chans, ch)
			}
			sh.mu.RUnlock()
		}
	}
	for _, ch := range chans {
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.BrokerTimeout)
		hist, err := h.history(ctx, ch.name, broker.HistoryQuery{})
		cancel()
		if err != nil {
			h.log.Debug("resync: position read failed", "channel", ch.name, "err", err)
			failed = append(failed, ch)
			continue
		}
		ch.mu.Lock()
		switch {
		case ch.epoch == "":
		case hist.Position.Epoch != ch.epoch:
			h.resetLocked(ch, hist.Position.Epoch, hist.Position.Offset)
		case hist.Position.Offset > ch.last:
			h.fillLocked(ch, hist.Position.Offset)
		case hist.Position.Offset < ch.last:
			// The broker lost messages it had accepted (a restart without
			// durable persistence): say so rather than drop the reused
			// offsets as duplicates.
			h.resetLocked(ch, hist.Position.Epoch, hist.Position.Offset)
		}
		ch.mu.Unlock()
	}
	return failed
}

// history reads from the broker, timed.
func (h *Hub) history(ctx context.Context, channel string, q broker.HistoryQuery) (broker.History, error) {
	var hist broker.History
	err := h.timed("history", func() error {
		var err error
		hist, err = h.broker.History(ctx, channel, q)
		return err
	})
	return hist, err
}
