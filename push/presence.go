package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldpush/herald/broker"
)

// ErrNoStore means the engine cannot keep presence or bans.
var ErrNoStore = errors.New("push: the broker keeps no shared state (presence, bans)")

// Member is one subscriber of a presence channel.
type Member struct {
	Client string          `json:"client"`
	User   string          `json:"user,omitempty"`
	Info   json.RawMessage `json:"info,omitempty"`
}

// presenceEvent travels on PresenceChannel to every node.
type presenceEvent struct {
	Kind    string `json:"kind"` // join or leave
	Channel string `json:"channel"`
	Member
}

type presenceFrame struct {
	Type    string      `json:"type"`
	ID      json.Number `json:"id,omitempty"`
	Channel string      `json:"channel"`
	Members []Member    `json:"members"`
}

type joinLeaveFrame struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
	Member
}

func presenceSet(channel string) string { return "presence:" + channel }

// presenceTTL is how long a member lives in the store without a refresh
// from its node: a node that dies takes its members with it this late.
func (n *Node) presenceTTL() time.Duration { return 2*n.opts.Heartbeat + 5*time.Second }

func (s *Session) clientID() string { return fmt.Sprintf("%s-%d", s.node.opts.Node, s.id) }

func (s *Session) member() Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := Member{Client: s.clientID(), User: s.user}
	if s.claims != nil {
		m.Info = s.claims.Info
	}
	return m
}

// join records sub's session in its channel's presence and tells every
// node's subscribers.
func (n *Node) join(sub *subscription) {
	n.presenceEvent("join", sub.ch.name, sub.s.member())
}

// leave removes sub's session from its channel's presence.
func (n *Node) leave(sub *subscription) {
	n.presenceEvent("leave", sub.ch.name, sub.s.member())
}

func (n *Node) presenceEvent(kind, channel string, m Member) {
	st, ok := n.broker.(broker.Store)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.BrokerTimeout)
	defer cancel()
	var err error
	if kind == "join" {
		v, _ := json.Marshal(m)
		err = st.AddMembers(ctx, presenceSet(channel), map[string][]byte{m.Client: v}, n.presenceTTL())
	} else {
		err = st.RemoveMember(ctx, presenceSet(channel), m.Client)
	}
	if err != nil {
		n.log.Warn("presence update failed", "kind", kind, "channel", channel, "err", err)
		return
	}
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

// Presence returns the members of channel across all nodes.
func (n *Node) Presence(ctx context.Context, channel string) ([]Member, error) {
	st, ok := n.broker.(broker.Store)
	if !ok {
		return nil, ErrNoStore
	}
	var raw map[string][]byte
	err := n.timed("presence", func() error {
		var err error
		raw, err = st.Members(ctx, presenceSet(channel))
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(raw))
	for client, v := range raw {
		var m Member
		if json.Unmarshal(v, &m) != nil {
			m = Member{Client: client}
		}
		out = append(out, m)
	}
	return out, nil
}

// refreshPresence renews the store entries of this node's presence
// members; called every heartbeat so that they outlive presenceTTL only
// while this node lives.
func (n *Node) refreshPresence() {
	st, ok := n.broker.(broker.Store)
	if !ok {
		return
	}
	sets := make(map[string]map[string][]byte)
	n.sessions.each(func(s *Session) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for name, sub := range s.subs {
			if !sub.presence {
				continue
			}
			m := Member{Client: s.clientID(), User: s.user}
			if s.claims != nil {
				m.Info = s.claims.Info
			}
			v, _ := json.Marshal(m)
			if sets[name] == nil {
				sets[name] = make(map[string][]byte)
			}
			sets[name][m.Client] = v
		}
	})
	for name, members := range sets {
		ctx, cancel := context.WithTimeout(context.Background(), n.opts.BrokerTimeout)
		if err := st.AddMembers(ctx, presenceSet(name), members, n.presenceTTL()); err != nil {
			n.log.Warn("presence refresh failed", "channel", name, "err", err)
		}
		cancel()
	}
}

// presence answers a presence frame.
func (s *Session) presence(id json.Number, channel string) {
	ns := s.lookup(id, channel)
	if ns == nil || !s.authorize(id, ns, channel) {
		return
	}
	if !ns.Presence {
		s.reject(id, CodeBadRequest, "presence is off in this namespace (presence: true enables it)", channel)
		return
	}
	ctx, cancel := s.node.brokerCtx()
	defer cancel()
	members, err := s.node.Presence(ctx, channel)
	if err != nil {
		s.reject(id, CodeUnavailable, "presence unavailable, retry later: "+err.Error(), channel)
		return
	}
	s.send(encode(presenceFrame{Type: "presence", ID: id, Channel: channel, Members: members}))
}
