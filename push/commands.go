package push

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldpush/herald/broker"
)

// maxErrors is how many rejected frames a session may send between two
// heartbeats before it is closed as a flood.
const maxErrors = 100

func (s *Session) touch() { s.lastSeen.Store(time.Now().UnixNano()) }

// welcome is the first frame of a WebSocket session.
func (s *Session) welcome(batch bool) *Frame {
	n := s.node
	s.mu.Lock()
	user := s.user
	s.mu.Unlock()
	return encode(welcomeFrame{
		User:        user,
		Type:        "welcome",
		Client:      fmt.Sprintf("%s-%d", n.opts.Node, s.id),
		Node:        n.opts.Node,
		HeartbeatMS: n.opts.Heartbeat.Milliseconds(),
		Batch:       batch,
	})
}

// reject answers a command with an error frame and counts it against the
// flood limit.
func (s *Session) reject(id json.Number, code, msg, channel string) {
	s.mu.Lock()
	s.errors++
	flood := s.errors > maxErrors
	s.mu.Unlock()
	if flood {
		if s.closeAsync(CloseFlood, "flood: too many rejected frames") {
			s.node.countRejection(ReasonFlood)
		}
		return
	}
	s.send(errFrame(id, code, msg, channel))
}

// handle decodes and runs one client frame.
func (s *Session) handle(raw []byte) {
	var c command
	if err := json.Unmarshal(raw, &c); err != nil {
		s.reject("", CodeBadRequest, "malformed JSON frame: "+err.Error(), "")
		return
	}
	switch c.Type {
	case "pong":
	case "subscribe":
		s.node.SubscribeWith(s, c.ID, c.Channel, SubscribeOptions{Since: c.Since, MaxRate: c.MaxRate})
	case "unsubscribe":
		s.node.Unsubscribe(s, c.ID, c.Channel)
	case "publish":
		s.publish(c.ID, c.Channel, c.Data, c.IdempotencyKey)
	case "history":
		s.history(c.ID, c.Channel, c.Since, c.Limit)
	case "auth":
		if c.Key != "" {
			s.authAdmin(c.ID, c.Key)
		} else {
			s.auth(c.ID, c.Token)
		}
	case "presence":
		s.presence(c.ID, c.Channel, c.Cursor, c.Limit)
	case "":
		s.reject(c.ID, CodeBadRequest, `missing "type"`, "")
	default:
		s.reject(c.ID, CodeUnknownType, fmt.Sprintf("unknown type %q", truncate(c.Type, 32)), "")
	}
}

// lookup resolves a command's channel, answering the error itself.
func (s *Session) lookup(id json.Number, channel string) *Namespace {
	if channel == "" {
		s.reject(id, CodeBadRequest, `missing "channel"`, "")
		return nil
	}
	if NamespaceOf(channel) == SystemNamespace {
		s.mu.Lock()
		admin := s.admin
		s.mu.Unlock()
		if channel == StatsChannel && admin {
			return systemNamespace
		}
		s.node.countRejection(ReasonForbidden)
		s.reject(id, CodeForbidden, `the "herald" namespace is reserved for the server`, channel)
		return nil
	}
	ns, err := s.node.opts.Namespaces.Lookup(channel)
	switch {
	case errors.Is(err, ErrInvalidChannel):
		s.reject(id, CodeInvalidChannel, err.Error(), "")
		return nil
	case errors.Is(err, ErrUnknownNamespace):
		s.reject(id, CodeUnknownNS, err.Error(), channel)
		return nil
	}
	return ns
}

// SubscribeOptions are what a subscribe may ask besides its channel.
type SubscribeOptions struct {
	// Since recovers the messages after this position.
	Since *broker.Position
	// MaxRate caps the live messages at this many per second, the newest
	// winning at each tick (throttle.go); 0: every message. Recovery is
	// not capped.
	MaxRate float64
}

// Subscribe subscribes s to channel, for any transport: the namespace's
// rules and the token's grants are checked, the broker subscribed when s
// is the channel's first local subscriber, and the reply, then recovered
// history (since) or the snapshot, then live messages are queued to s in
// order. Refusals are answered to s as error frames with id.
func (n *Node) Subscribe(s *Session, id json.Number, channel string, since *broker.Position) {
	n.subscribe(s, subRequest{id: id, channel: channel, since: since})
}

// SubscribeWith is Subscribe with options (max_rate).
func (n *Node) SubscribeWith(s *Session, id json.Number, channel string, o SubscribeOptions) {
	n.subscribe(s, subRequest{id: id, channel: channel, since: o.Since, maxRate: o.MaxRate})
}

// subRequest is one subscribe of a session: its own (a subscribe frame,
// the query of /ws, /sse, /api/poll) or the server's (serversub.go).
type subRequest struct {
	id      json.Number
	channel string
	since   *broker.Position
	// server: asked by the application's backend (POST /api/subscribe,
	// the token's subs claim), which decides who reads what: the
	// namespace's access rules are not checked, an existing subscription
	// is left as it is, and the replies carry "server": true.
	server bool
	// maxRate caps the subscription's live messages (SubscribeOptions).
	maxRate float64
}

// refuse answers a failed subscribe. The server's own requests do not
// count against the connection's flood limit: the client sent nothing.
func (r subRequest) refuse(s *Session, code, msg, channel string) {
	if r.server {
		s.send(errFrame("", code, msg, channel))
		return
	}
	s.reject(r.id, code, msg, channel)
}

func (n *Node) subscribe(s *Session, r subRequest) {
	id, channel, since := r.id, r.channel, r.since
	if err := CheckMaxRate(r.maxRate); err != nil {
		r.refuse(s, CodeBadRequest, err.Error(), channel)
		return
	}
	ns := s.lookup(id, channel)
	if ns == nil {
		return
	}
	if !r.server && !s.authorize(id, ns, channel) {
		return
	}
	// The channel is reserved (pending) until the subscription is made,
	// so that a server subscribe and the client's own, on two goroutines,
	// never both attach.
	s.mu.Lock()
	_, dup := s.subs[channel]
	_, busy := s.pending[channel]
	count := len(s.subs) + len(s.pending)
	if !dup && !busy && count < n.opts.MaxChannels {
		if s.pending == nil {
			s.pending = make(map[string]struct{}, 1)
		}
		s.pending[channel] = struct{}{}
	}
	s.mu.Unlock()
	switch {
	case (dup || busy) && r.server:
		return // already subscribed: nothing to do
	case dup || busy:
		s.reject(id, CodeAlreadySub, "already subscribed", channel)
		return
	case count >= n.opts.MaxChannels:
		n.countRejection(ReasonChannelLimit)
		r.refuse(s, CodeLimit, fmt.Sprintf("at most %d channels per connection", n.opts.MaxChannels), channel)
		return
	}
	defer func() {
		s.mu.Lock()
		// Dropped when empty: a map kept for the connection's lifetime
		// costs every connection ~180 bytes for the moments it subscribes.
		if delete(s.pending, channel); len(s.pending) == 0 {
			s.pending = nil
		}
		s.mu.Unlock()
	}()
	ctx, cancel := n.brokerCtx()
	defer cancel()
	sub := &subscription{s: s, mode: ns.Presence, th: newThrottle(r.maxRate, ns.Conflate)}
	if ns.Presence.Tracked() {
		sub.presence = new(subPresence)
	}
	if err := n.hub.attach(ctx, channel, sub); err != nil {
		r.refuse(s, CodeUnavailable, "broker unavailable, retry later: "+err.Error(), channel)
		return
	}
	q := broker.HistoryQuery{}
	switch {
	case since != nil:
		q.Since = *since
		q.Limit = min(max(ns.HistorySize, 0), DefaultRecoveryMessages)
	case ns.Snapshot:
		q.Limit, q.Reverse = 1, true
	}
	hist, err := n.history(ctx, channel, q)
	if err != nil {
		n.hub.detach(sub)
		r.refuse(s, CodeUnavailable, "broker unavailable, retry later: "+err.Error(), channel)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		n.hub.detach(sub)
		return
	}
	if s.subs == nil {
		s.subs = make(map[string]*subscription, 1)
	}
	s.subs[channel] = sub
	s.mu.Unlock()
	n.recovery.activate(sub, id, since, hist, ns.Snapshot, r.server)
	if sub.presence != nil {
		n.join(sub)
	}
}

// Unsubscribe ends s's subscription of channel, unsubscribing the broker
// when it was the channel's last local subscriber, and answers s.
func (n *Node) Unsubscribe(s *Session, id json.Number, channel string) {
	if channel == "" {
		s.reject(id, CodeBadRequest, `missing "channel"`, "")
		return
	}
	if !n.unsubscribe(s, id, channel, false) {
		s.reject(id, CodeNotSubscribed, "not subscribed", channel)
	}
}

// unsubscribe ends s's subscription of channel and answers s; it reports
// false when there was none.
func (n *Node) unsubscribe(s *Session, id json.Number, channel string, server bool) bool {
	s.mu.Lock()
	sub := s.subs[channel]
	delete(s.subs, channel)
	s.mu.Unlock()
	if sub == nil {
		return false
	}
	n.hub.detach(sub)
	if sub.presence != nil {
		n.leave(sub)
	}
	s.send(encode(unsubscribedFrame{Type: "unsubscribed", ID: id, Channel: channel, Server: server}))
	return true
}

func (s *Session) publish(id json.Number, channel string, data json.RawMessage, key string) {
	ns := s.lookup(id, channel)
	if ns == nil {
		return
	}
	if !s.authorize(id, ns, channel) {
		return
	}
	if !ns.ClientPublish {
		s.node.countRejection(ReasonForbidden)
		s.reject(id, CodeForbidden, "clients may not publish in this namespace (client_publish is off)", channel)
		return
	}
	if ns.PublishRate.N > 0 {
		s.mu.Lock()
		if s.limiter == nil {
			s.limiter = new(bucket)
		}
		ok := s.limiter.allow(ns.PublishRate, time.Now())
		s.mu.Unlock()
		if !ok {
			s.node.countRejection(ReasonRateLimited)
			s.reject(id, CodeRateLimited, "publish rate exceeded: "+ns.PublishRate.String(), channel)
			return
		}
	}
	ctx, cancel := s.node.brokerCtx()
	defer cancel()
	// json.Unmarshal copied data out of gws's read buffer: it may be kept.
	pos, err := s.node.Publish(ctx, Publication{Channel: channel, Data: data, IdempotencyKey: key})
	if err != nil {
		e := AsError(err)
		s.reject(id, e.Code, e.Message, channel)
		return
	}
	if !pos.Duplicate {
		s.node.stats.ClientPubs.Add(1)
	}
	s.send(encode(ackFrame{Type: "ack", ID: id, Channel: channel, Epoch: pos.Epoch, Offset: pos.Offset, Duplicate: pos.Duplicate}))
}

func (s *Session) history(id json.Number, channel string, since *broker.Position, limit int) {
	ns := s.lookup(id, channel)
	if ns == nil || !s.authorize(id, ns, channel) {
		return
	}
	if limit <= 0 {
		limit = -1 // as many as the node allows
	}
	var from broker.Position
	if since != nil {
		from = *since
	}
	ctx, cancel := s.node.brokerCtx()
	defer cancel()
	hist, err := s.node.History(ctx, channel, from, limit)
	if err != nil {
		e := AsError(err)
		s.reject(id, e.Code, e.Message, channel)
		return
	}
	s.send(encode(historyFrame{
		Type: "history", ID: id, Channel: channel,
		Epoch: hist.Position.Epoch, Offset: hist.Position.Offset,
		Complete: hist.Complete, Messages: messageObjects(hist.Messages),
	}))
}
