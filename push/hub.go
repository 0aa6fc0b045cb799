package push

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/broker"
)

const (
	numShards  = 64  // channel map shards: a hot channel does not lock the world
	numStripes = 256 // serialise broker Subscribe/Unsubscribe per channel
)

// channelSubscriber is what the hub needs of the broker: to start and
// stop this node's subscription of a channel.
type channelSubscriber interface {
	Subscribe(ctx context.Context, channel string) error
	Unsubscribe(ctx context.Context, channel string) error
}

// Hub is the node's local registry: channel -> the subscriptions of this
// node's sessions, sharded, and the fan-out of a message to them, encoded
// once. Nothing else: ordering and gap fills are recovery's, everything
// a client asks for is the Node's.
type Hub struct {
	broker  channelSubscriber
	stats   *Stats
	log     *slog.Logger
	timeout time.Duration // for the Unsubscribe detach makes on its own

	stripes [numStripes]sync.Mutex
	shards  [numShards]hubShard

	// wheel holds throttled subscriptions back (ratewheel.go);
	// skipFrames is its goroutine's scratch list of shared frames.
	wheel      rateWheel
	skipFrames []skippedFrame
	nextID     atomic.Uint64 // hubChannel ids
}

type hubShard struct {
	mu       sync.RWMutex
	channels map[string]*hubChannel
}

// hubChannel is one channel with local subscribers.
type hubChannel struct {
	name string
	id   uint64 // orders channels in the rate wheel

	mu   sync.Mutex
	subs []*subscription
	// stream is the channel's place in the broker's stream and the state
	// of its recovery (recovery.go). Guarded by mu.
	stream stream
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
	// presence is the subscription's place in the channel's presence
	// (nil: the namespace keeps none), mode the namespace's rule.
	presence *subPresence
	mode     PresenceMode
	// th is set for a subscription with max_rate or in a conflating
	// namespace (throttle.go); nil for every other.
	th *throttle
}

type pending struct {
	offset uint64
	frame  *Frame
}

func (h *Hub) init(stats *Stats, b channelSubscriber, log *slog.Logger, timeout time.Duration) {
	h.stats, h.broker, h.log, h.timeout = stats, b, log, timeout
	h.wheel.init(h.fire)
	for i := range h.shards {
		h.shards[i].channels = make(map[string]*hubChannel)
	}
}

// counts reports the channels and subscriptions on this node.
func (h *Hub) counts() (channels, subscriptions int) {
	h.eachChannel(func(ch *hubChannel) bool {
		channels++
		ch.mu.Lock()
		subscriptions += len(ch.subs)
		ch.mu.Unlock()
		return true
	})
	return
}

// eachChannel calls f for every channel, holding its shard's read lock,
// until f returns false. f may take the channel's lock.
func (h *Hub) eachChannel(f func(*hubChannel) bool) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, ch := range sh.channels {
			if !f(ch) {
				sh.mu.RUnlock()
				return
			}
		}
		sh.mu.RUnlock()
	}
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
// Takes the channel's stripe lock, then the shard and channel locks.
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
			if err := h.broker.Subscribe(ctx, channel); err != nil {
				return err
			}
		}
		ch = &hubChannel{name: channel, id: h.nextID.Add(1)}
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
// was the last local subscriber. Takes the stripe lock, then the channel
// and shard locks, one at a time.
func (h *Hub) detach(sub *subscription) {
	ch := sub.ch
	if ch == nil {
		return
	}
	stripe := &h.stripes[fnv32(ch.name)%numStripes]
	stripe.Lock()
	defer stripe.Unlock()
	ch.mu.Lock()
	if sub.th != nil {
		sub.th.drop() // its wheel entry, if any, is dropped when due
	}
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
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	if err := h.broker.Unsubscribe(ctx, ch.name); err != nil {
		// The broker will deliver messages nobody here wants; the hub
		// drops them. Not worth failing anything for.
		h.log.Warn("broker unsubscribe failed", "channel", ch.name, "err", err)
	}
}

// fanOutLocked sends m's frame, encoded once, to every live subscriber
// that has not had it from history, and keeps it for those still
// buffering. A throttled subscriber (max_rate, conflation) may hold it
// instead, for the rate wheel. Must hold ch.mu.
func (h *Hub) fanOutLocked(ch *hubChannel, m *broker.Message) {
	frame := messageFrame(m, false)
	var n, skipped uint64
	var now int64
	for _, sub := range ch.subs {
		if sub.buffering {
			sub.buf = append(sub.buf, pending{m.Offset, frame})
			continue
		}
		if m.Offset <= sub.skip {
			continue
		}
		if sub.th != nil {
			if now == 0 {
				now = nowTick()
			}
			if h.offerLocked(sub, frame, m.Offset, now, true, &skipped) {
				n++
			}
			continue
		}
		sub.s.send(frame)
		n++
	}
	h.stats.Delivered.Add(n)
	if skipped > 0 {
		h.stats.Skipped.Add(skipped)
	}
}

// bufferLocked keeps m's frame for the subscribers still buffering their
// subscribe, and sends it to nobody else: the others had it from history.
// Must hold ch.mu.
func (h *Hub) bufferLocked(ch *hubChannel, m *broker.Message) {
	var frame *Frame
	for _, sub := range ch.subs {
		if sub.buffering {
			if frame == nil {
				frame = messageFrame(m, false)
			}
			sub.buf = append(sub.buf, pending{m.Offset, frame})
		}
	}
}

// resetLocked tells every subscriber that messages were lost: each gets
// "unsubscribed" (reason "resubscribe") then "subscribed" with recovered
// false at the new position, and should reload its state. Must hold ch.mu.
func (h *Hub) resetLocked(ch *hubChannel, epoch string, offset uint64) {
	f := false
	unsub := encode(unsubscribedFrame{Type: "unsubscribed", Channel: ch.name, Reason: "resubscribe"})
	sub := encode(subscribedFrame{Type: "subscribed", Channel: ch.name, Epoch: epoch, Offset: offset, Recovered: &f})
	for _, s := range ch.subs {
		s.skip = 0
		if s.th != nil {
			s.th.drop() // of the old stream: it must not follow the reset
		}
		if s.buffering {
			continue // its subscribe reply is not out yet and will carry the new state
		}
		s.s.send(unsub)
		s.s.send(sub)
	}
}

// sendAll sends frame to every live subscriber of channel (presence
// events). Takes the channel's lock.
func (h *Hub) sendAll(channel string, frame *Frame) {
	ch := h.lookup(channel)
	if ch == nil {
		return
	}
	ch.mu.Lock()
	for _, sub := range ch.subs {
		if !sub.buffering {
			sub.s.send(frame)
		}
	}
	ch.mu.Unlock()
}
