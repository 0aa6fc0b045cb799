package push

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/heraldpush/herald/broker"
)

// Presence is counted per user across the cluster: a channel's presence
// is a broker.Presence set whose keys are users (an anonymous connection
// is a key of its own), each counted once however many connections or
// tabs it has. The engine decides a user's first join and last leave
// atomically, so that they are told once, whichever node sees them: in
// presence: true namespaces as join and leave frames to the channel's
// subscribers on every node; in presence: counts namespaces not at all
// (only the number is kept). Webhook events are queued in the same step
// (presence_users.go, internal/webhook).

// ErrNoStore means the engine cannot keep presence or bans.
var ErrNoStore = errors.New("push: the broker keeps no shared state (presence, bans)")

// Presence pages: DefaultPresenceLimit members when the request names no
// limit, at most MaxPresenceLimit.
const (
	DefaultPresenceLimit = 100
	MaxPresenceLimit     = 1000
)

// Member is one user (or anonymous connection) in a presence channel:
// Client is the connection that brought it in, Info its token's info.
type Member struct {
	Client string          `json:"client"`
	User   string          `json:"user,omitempty"`
	Info   json.RawMessage `json:"info,omitempty"`
}

// PresencePage is the answer to a presence request: the number of
// distinct users and, in presence: true namespaces, a page of them.
type PresencePage struct {
	Channel    string   `json:"channel"`
	Count      int      `json:"count"`
	Members    []Member `json:"members,omitempty"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// presenceEvent travels on PresenceChannel to every node.
type presenceEvent struct {
	Kind    string `json:"kind"` // join or leave
	Channel string `json:"channel"`
	Member
}

type presenceFrame struct {
	Type       string      `json:"type"`
	ID         json.Number `json:"id,omitempty"`
	Channel    string      `json:"channel"`
	Count      int         `json:"count"`
	Members    []Member    `json:"members,omitempty"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

type joinLeaveFrame struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
	Member
}

// subPresence is a subscription's (or a session's, for the online set)
// place in a presence set. mu is held across the store call of a join or
// a leave, so that the two of one connection are never reordered; it is
// a leaf, taken with no other lock held (concurrency.go).
type subPresence struct {
	mu     sync.Mutex
	joined bool // the store counts this connection
	left   bool // the connection is gone: never join again
}

func presenceSet(channel string) string { return "ch:" + channel }

func channelOfSet(set string) (string, bool) {
	if len(set) > 3 && set[:3] == "ch:" {
		return set[3:], true
	}
	return "", false
}

// presenceTTL is how long a connection lives in the store without a
// refresh from its node: a node that dies takes its members with it this
// late.
func (n *Node) presenceTTL() time.Duration { return 2*n.opts.Heartbeat + 5*time.Second }

func (s *Session) clientID() string { return fmt.Sprintf("%s-%d", s.node.opts.Node, s.id) }

// presenceConn names s in the presence store: unique in the cluster even
// when two nodes share a name (the host name, for processes on one
// machine), which the client id shown to others is not.
func (s *Session) presenceConn() string { return s.node.instance + "-" + strconv.FormatUint(s.id, 10) }

// presenceKey is the key s counts under: its user, or its own connection
// when anonymous. Must hold s.mu.
func (s *Session) presenceKeyLocked() string {
	if s.user != "" {
		return broker.UserKey(s.user)
	}
	return "c:" + s.presenceConn()
}

func (s *Session) member() (Member, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := Member{Client: s.clientID(), User: s.user}
	if s.claims != nil {
		m.Info = s.claims.Info
	}
	return m, s.presenceKeyLocked()
}

// join counts sub's session in its channel's presence; a user's first
// join is told to the channel's subscribers (presence: true) and queued
// for webhooks. A failed store call is retried by the next refresh.
func (n *Node) join(sub *subscription) {
	p := sub.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left || p.joined || n.pstore == nil {
		return
	}
	m, key := sub.s.member()
	op := broker.PresenceOp{Set: presenceSet(sub.ch.name), Key: key, Conn: sub.s.presenceConn(), TTL: n.presenceTTL(), Event: n.event("join", sub.ch.name)}
	if sub.mode == PresenceMembers {
		op.Value, _ = json.Marshal(m)
	}
	ctx, cancel := n.brokerCtx()
	defer cancel()
	first, err := n.applyPresence(ctx, op)
	if err != nil {
		n.log.Warn("presence join failed; retried at the next refresh", "channel", sub.ch.name, "err", err)
		return
	}
	p.joined = true
	if first && sub.mode == PresenceMembers {
		n.tellPresence(ctx, "join", sub.ch.name, m)
	}
}

// leave takes sub's session out of its channel's presence. A failed
// store call leaves the connection to expire (presenceTTL), and the reap
// that finds it tells the leave.
func (n *Node) leave(sub *subscription) {
	p := sub.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	p.left = true
	if !p.joined || n.pstore == nil {
		return
	}
	m, _ := sub.s.member()
	ctx, cancel := n.brokerCtx()
	defer cancel()
	last, err := n.applyPresence(ctx, broker.PresenceOp{Leave: true, Set: presenceSet(sub.ch.name), Conn: sub.s.presenceConn(), Event: n.event("leave", sub.ch.name)})
	if err != nil {
		n.log.Warn("presence leave failed; the entry expires", "channel", sub.ch.name, "err", err)
		return
	}
	if last && sub.mode == PresenceMembers {
		n.tellPresence(ctx, "leave", sub.ch.name, m)
	}
}

// tellPresence publishes a join or leave to every node, whose subscribers
// of channel get it as one frame encoded once (fanPresence).
func (n *Node) tellPresence(ctx context.Context, kind, channel string, m Member) {
	n.stats.PresenceEvents.Add(1)
	data, _ := json.Marshal(presenceEvent{Kind: kind, Channel: channel, Member: m})
	if _, err := n.broker.Publish(ctx, PresenceChannel, data, broker.Retention{}); err != nil {
		n.log.Warn("presence event not published", "kind", kind, "channel", channel, "err", err)
	}
}

// fanPresence sends a join or leave event to the channel's local
// subscribers.
func (n *Node) fanPresence(data []byte) {
	var ev presenceEvent
	if json.Unmarshal(data, &ev) != nil || (ev.Kind != "join" && ev.Kind != "leave") {
		return
	}
	n.hub.sendAll(ev.Channel, encode(joinLeaveFrame{Type: ev.Kind, Channel: ev.Channel, Member: ev.Member}))
}

// Presence returns the number of distinct users in channel across all
// nodes and, in presence: true namespaces, a page of them: up to limit
// (0: DefaultPresenceLimit) after cursor (the previous page's
// NextCursor; "" starts).
func (n *Node) Presence(ctx context.Context, channel, cursor string, limit int) (PresencePage, error) {
	ns, err := n.opts.Namespaces.Lookup(channel)
	if err != nil {
		return PresencePage{}, err
	}
	if !ns.Presence.Tracked() {
		return PresencePage{}, &Error{Code: CodeNotFound, Message: "presence is off in this channel's namespace (presence: true or counts enables it)"}
	}
	if n.pstore == nil {
		return PresencePage{}, ErrNoStore
	}
	switch {
	case limit < 0 || limit > MaxPresenceLimit:
		return PresencePage{}, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("limit must be 1-%d", MaxPresenceLimit)}
	case limit == 0:
		limit = DefaultPresenceLimit
	}
	after, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return PresencePage{}, &Error{Code: CodeBadRequest, Message: "bad cursor: pass the next_cursor of the previous page"}
	}
	out := PresencePage{Channel: channel}
	set := presenceSet(channel)
	err = n.timed("presence", func() (err error) {
		out.Count, err = n.pstore.PresenceCount(ctx, set)
		if err != nil || ns.Presence != PresenceMembers {
			return err
		}
		entries, more, err := n.pstore.PresencePage(ctx, set, string(after), limit)
		if err != nil {
			return err
		}
		out.Members = make([]Member, 0, len(entries))
		for _, e := range entries {
			var m Member
			if json.Unmarshal(e.Value, &m) != nil {
				m = Member{User: broker.KeyUser(e.Key)}
			}
			out.Members = append(out.Members, m)
		}
		if more {
			out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(entries[len(entries)-1].Key))
		}
		return nil
	})
	if err != nil {
		return PresencePage{}, &Error{Code: CodeUnavailable, Message: "presence unavailable, retry later: " + err.Error(), Err: err}
	}
	return out, nil
}

// presence answers a presence frame.
func (s *Session) presence(id json.Number, channel, cursor string, limit int) {
	ns := s.lookup(id, channel)
	if ns == nil || !s.authorize(id, ns, channel) {
		return
	}
	if !ns.Presence.Tracked() {
		s.reject(id, CodeBadRequest, "presence is off in this namespace (presence: true or counts enables it)", channel)
		return
	}
	ctx, cancel := s.node.brokerCtx()
	defer cancel()
	page, err := s.node.Presence(ctx, channel, cursor, limit)
	if err != nil {
		e := AsError(err)
		s.reject(id, e.Code, e.Message, channel)
		return
	}
	s.send(encode(presenceFrame{Type: "presence", ID: id, Channel: channel, Count: page.Count, Members: page.Members, NextCursor: page.NextCursor}))
}
