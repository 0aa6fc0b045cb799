package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldpush/herald/broker"
)

// maxErrors is how many rejected frames a session may send between two
// heartbeats before it is closed as a flood.
const maxErrors = 100

// maxHistoryLimit caps one history read.
const maxHistoryLimit = 1000

func (s *Session) touch() { s.lastSeen.Store(time.Now().UnixNano()) }

// welcome is the first frame of a WebSocket session.
func (s *Session) welcome(batch bool) []byte {
	h := s.hub
	s.mu.Lock()
	user := s.user
	s.mu.Unlock()
	return encode(welcomeFrame{
		User:        user,
		Type:        "welcome",
		Client:      fmt.Sprintf("%s-%d", h.opts.Node, s.id),
		Node:        h.opts.Node,
		HeartbeatMS: h.opts.Heartbeat.Milliseconds(),
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
			s.hub.reject(ReasonFlood)
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
		s.subscribe(c.ID, c.Channel, c.Since)
	case "unsubscribe":
		s.unsubscribe(c.ID, c.Channel)
	case "publish":
		s.publish(c.ID, c.Channel, c.Data)
	case "history":
		s.history(c.ID, c.Channel, c.Since, c.Limit)
	case "auth":
		if c.Key != "" {
			s.authAdmin(c.ID, c.Key)
		} else {
			s.auth(c.ID, c.Token)
		}
	case "presence":
		s.presence(c.ID, c.Channel)
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
		s.hub.reject(ReasonForbidden)
		s.reject(id, CodeForbidden, `the "herald" namespace is reserved for the server`, channel)
		return nil
	}
	ns, err := s.hub.opts.Namespaces.Lookup(channel)
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

func (s *Session) brokerCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.hub.opts.BrokerTimeout)
}

func (s *Session) subscribe(id json.Number, channel string, since *broker.Position) {
	ns := s.lookup(id, channel)
	if ns == nil {
		return
	}
	s.mu.Lock()
	_, dup := s.subs[channel]
	n := len(s.subs)
	s.mu.Unlock()
	if dup {
		s.reject(id, CodeAlreadySub, "already subscribed", channel)
		return
	}
	if !s.authorize(id, ns, channel) {
		return
	}
	if n >= s.hub.opts.MaxChannels {
		s.hub.reject(ReasonChannelLimit)
		s.reject(id, CodeLimit, fmt.Sprintf("at most %d channels per connection", s.hub.opts.MaxChannels), channel)
		return
	}
	ctx, cancel := s.brokerCtx()
	defer cancel()
	sub := &subscription{s: s, presence: ns.Presence}
	if err := s.hub.attach(ctx, channel, sub); err != nil {
		s.reject(id, CodeUnavailable, "broker unavailable, retry later: "+err.Error(), channel)
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
	hist, err := s.hub.history(ctx, channel, q)
	if err != nil {
		s.hub.detach(sub)
		s.reject(id, CodeUnavailable, "broker unavailable, retry later: "+err.Error(), channel)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.hub.detach(sub)
		return
	}
	if s.subs == nil {
		s.subs = make(map[string]*subscription, 1)
	}
	s.subs[channel] = sub
	s.mu.Unlock()
	s.hub.activate(sub, id, since, hist, ns.Snapshot)
	if sub.presence {
		s.hub.join(sub)
	}
}

// activate queues the subscribe reply, then recovered history or the
// snapshot, then whatever arrived live meanwhile, and switches sub to live
// delivery. Holding the channel lock orders it against live messages.
func (h *Hub) activate(sub *subscription, id json.Number, since *broker.Position, hist broker.History, snapshot bool) {
	ch := sub.ch
	pos := hist.Position
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.epoch == "" {
		ch.epoch, ch.last = pos.Epoch, pos.Offset
	}
	s := sub.s
	reply := subscribedFrame{Type: "subscribed", ID: id, Channel: ch.name, Epoch: pos.Epoch, Offset: pos.Offset}
	sub.skip = pos.Offset
	switch {
	case since != nil:
		recovered := hist.Complete
		reply.Recovered = &recovered
		s.send(encode(reply))
		if recovered {
			for i := range hist.Messages {
				if m := &hist.Messages[i]; m.Offset > since.Offset {
					s.send(AppendMessage(nil, m, false))
				}
			}
		}
	case snapshot && len(hist.Messages) > 0:
		s.send(encode(reply))
		s.send(AppendMessage(nil, &hist.Messages[0], true))
	default:
		s.send(encode(reply))
	}
	for _, p := range sub.buf {
		if p.offset > sub.skip {
			s.send(p.frame)
		}
	}
	sub.buf = nil
	sub.buffering = false
}

func (s *Session) unsubscribe(id json.Number, channel string) {
	if channel == "" {
		s.reject(id, CodeBadRequest, `missing "channel"`, "")
		return
	}
	s.mu.Lock()
	sub := s.subs[channel]
	delete(s.subs, channel)
	s.mu.Unlock()
	if sub == nil {
		s.reject(id, CodeNotSubscribed, "not subscribed", channel)
		return
	}
	s.hub.detach(sub)
	if sub.presence {
		s.hub.leave(sub)
	}
	s.send(encode(unsubscribedFrame{Type: "unsubscribed", ID: id, Channel: channel}))
}

func (s *Session) publish(id json.Number, channel string, data json.RawMessage) {
	ns := s.lookup(id, channel)
	if ns == nil {
		return
	}
	if !s.authorize(id, ns, channel) {
		return
	}
	if !ns.ClientPublish {
		s.hub.reject(ReasonForbidden)
		s.reject(id, CodeForbidden, "clients may not publish in this namespace (client_publish is off)", channel)
		return
	}
	if len(data) == 0 {
		s.reject(id, CodeBadRequest, `missing "data"`, channel)
		return
	}
	data, err := CompactData(data)
	if err != nil {
		s.reject(id, CodeBadRequest, "data is not JSON: "+err.Error(), channel)
		return
	}
	if len(data) > ns.MessageLimit() {
		s.reject(id, CodeTooLarge, fmt.Sprintf("data is %d bytes, the namespace allows %d", len(data), ns.MessageLimit()), channel)
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
			s.hub.reject(ReasonRateLimited)
			s.reject(id, CodeRateLimited, "publish rate exceeded: "+ns.PublishRate.String(), channel)
			return
		}
	}
	ctx, cancel := s.brokerCtx()
	defer cancel()
	// json.Unmarshal copied data out of gws's read buffer: it may be kept.
	var pos broker.Position
	err = s.hub.timed("publish", func() error {
		var err error
		pos, err = s.hub.broker.Publish(ctx, channel, data, ns.Retention())
		return err
	})
	if err != nil {
		if errors.Is(err, broker.ErrUncertain) {
			s.reject(id, CodeUncertain, "the broker did not answer in time: the message may or may not be published", channel)
			return
		}
		s.reject(id, CodeUnavailable, "publish failed, retry later: "+err.Error(), channel)
		return
	}
	s.hub.stats.ClientPubs.Add(1)
	s.send(encode(ackFrame{Type: "ack", ID: id, Channel: channel, Epoch: pos.Epoch, Offset: pos.Offset}))
}

func (s *Session) history(id json.Number, channel string, since *broker.Position, limit int) {
	ns := s.lookup(id, channel)
	if ns == nil || !s.authorize(id, ns, channel) {
		return
	}
	if limit <= 0 || limit > maxHistoryLimit {
		limit = maxHistoryLimit
	}
	q := broker.HistoryQuery{Limit: min(limit, max(ns.HistorySize, 0))}
	if since != nil {
		q.Since = *since
	}
	ctx, cancel := s.brokerCtx()
	defer cancel()
	hist, err := s.hub.history(ctx, channel, q)
	if err != nil {
		s.reject(id, CodeUnavailable, "broker unavailable, retry later: "+err.Error(), channel)
		return
	}
	s.send(encode(historyFrame{
		Type: "history", ID: id, Channel: channel,
		Epoch: hist.Position.Epoch, Offset: hist.Position.Offset,
		Complete: hist.Complete, Messages: messageObjects(hist.Messages),
	}))
}
