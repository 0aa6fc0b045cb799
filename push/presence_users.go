package push

import (
	"time"

	"github.com/heraldpush/herald/broker"
)

// The cluster's online users are one presence set, usersSet, whose keys
// linger OfflineDelay after their last connection: a user is online at
// its first connection anywhere and offline once its last one has been
// gone that long (a reload in between is no transition). The set is kept
// only when a webhook wants online or offline events; the engine decides
// each transition once and queues its event in the same step.

const usersSet = "users"

// EventQueue is one queue of presence events (one per webhook) and the
// event types it wants.
type EventQueue struct {
	Name   string
	Events []string
}

// Event types.
const (
	EventOnline  = "online"
	EventOffline = "offline"
	EventJoin    = "join"
	EventLeave   = "leave"
)

// event is what a transition of type typ records, or nil when no queue
// wants it.
func (n *Node) event(typ, channel string) *broker.Event {
	qs := n.eventQueues[typ]
	if len(qs) == 0 {
		return nil
	}
	return &broker.Event{
		Type: typ, Channel: channel, IDPrefix: broker.NewEpoch() + broker.NewEpoch(),
		Time: time.Now(), Queues: qs, MaxLen: n.opts.EventQueueLen,
	}
}

// tracksUsers reports whether the online set is kept.
func (n *Node) tracksUsers() bool {
	return n.pstore != nil && (len(n.eventQueues[EventOnline]) > 0 || len(n.eventQueues[EventOffline]) > 0)
}

// connectUser counts s in the online users once it has a user (at open,
// or at an auth frame of an anonymous connection).
func (n *Node) connectUser(s *Session) {
	if !n.tracksUsers() {
		return
	}
	s.mu.Lock()
	if s.user == "" || s.online != nil || s.closed {
		s.mu.Unlock()
		return
	}
	p := new(subPresence)
	s.online = p
	user := s.user
	s.mu.Unlock()
	n.joinUser(s, p, user)
}

// joinUser puts s's connection in the online set. A failed store call is
// retried by the next refresh.
func (n *Node) joinUser(s *Session, p *subPresence, user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left || p.joined {
		return
	}
	ctx, cancel := n.brokerCtx()
	defer cancel()
	op := broker.PresenceOp{Set: usersSet, Key: broker.UserKey(user), Conn: s.presenceConn(), TTL: n.presenceTTL(), Event: n.event(EventOnline, "")}
	if _, err := n.applyPresence(ctx, op); err != nil {
		n.log.Warn("online update failed; retried at the next refresh", "user", user, "err", err)
		return
	}
	p.joined = true
}

// disconnectUser takes s out of the online set: the user lingers there
// for OfflineDelay, then the sweep (of whichever node comes first) makes
// it offline.
func (n *Node) disconnectUser(s *Session) {
	s.mu.Lock()
	p := s.online
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.left = true
	if !p.joined {
		return
	}
	ctx, cancel := n.brokerCtx()
	defer cancel()
	op := broker.PresenceOp{Leave: true, Set: usersSet, Conn: s.presenceConn(), Linger: n.opts.OfflineDelay, Event: n.event(EventOffline, "")}
	if _, err := n.applyPresence(ctx, op); err != nil {
		n.log.Warn("online update failed; the entry expires", "err", err)
	}
}
