package push

import (
	"encoding/json"
	"time"

	"github.com/heraldpush/herald/broker"
)

// presenceLoop keeps this node's presence entries alive and reaps what
// expired. Each tick (about a second) it reaps the online set, so that an
// offline comes OfflineDelay after the last connection left, give or take
// the tick; each heartbeat it refreshes the node's own entries and reaps
// its channels (connections of nodes that died); each presenceTTL it
// reaps the sets nobody refreshes any more. Every node does all of this:
// the engine decides each transition once, so the reaps of several nodes
// make one event. Owned by the Node: started by Start, ended by Close.
func (n *Node) presenceLoop() {
	defer n.wg.Done()
	tick := min(time.Second, max(n.opts.OfflineDelay/4, 50*time.Millisecond), n.opts.Heartbeat)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastRefresh, lastStale := time.Now(), time.Now()
	for {
		select {
		case <-n.done:
			return
		case now := <-t.C:
			if n.tracksUsers() {
				n.reapSet(usersSet)
			}
			if now.Sub(lastRefresh) >= n.opts.Heartbeat {
				lastRefresh = now
				n.refreshPresence()
			}
			if now.Sub(lastStale) >= n.presenceTTL() {
				lastStale = now
				n.reapStale()
			}
		}
	}
}

// refreshPresence renews this node's entries in the store, joins again
// those the store lost (a join that failed, a Redis that restarted empty)
// and reaps the channels it refreshed.
func (n *Node) refreshPresence() {
	channels := make(map[string][]*subscription)
	var online []*Session
	n.sessions.each(func(s *Session) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for name, sub := range s.subs {
			if sub.presence != nil {
				channels[name] = append(channels[name], sub)
			}
		}
		if s.online != nil {
			online = append(online, s)
		}
	})
	for name, subs := range channels {
		set := presenceSet(name)
		byConn := make(map[string]*subscription, len(subs))
		for _, sub := range subs {
			byConn[sub.s.presenceConn()] = sub
		}
		for _, sub := range refreshSet(n, set, byConn, func(sub *subscription) *subPresence { return sub.presence }) {
			n.join(sub)
		}
		n.reapSet(set)
	}
	if len(online) > 0 {
		byConn := make(map[string]*Session, len(online))
		for _, s := range online {
			byConn[s.presenceConn()] = s
		}
		for _, s := range refreshSet(n, usersSet, byConn, func(s *Session) *subPresence { return s.online }) {
			s.mu.Lock()
			user := s.user
			s.mu.Unlock()
			n.joinUser(s, s.online, user)
		}
	}
}

// refreshSet renews the joined connections of byConn in set and returns
// those to join (again).
func refreshSet[T any](n *Node, set string, byConn map[string]T, state func(T) *subPresence) []T {
	var conns []string
	var again []T
	for id, x := range byConn {
		p := state(x)
		p.mu.Lock()
		switch {
		case p.left:
		case p.joined:
			conns = append(conns, id)
		default:
			again = append(again, x)
		}
		p.mu.Unlock()
	}
	ctx, cancel := n.recoveryCtx()
	defer cancel()
	var missing []string
	err := n.timed("presence", func() (err error) {
		missing, err = n.pstore.PresenceRefresh(ctx, set, conns, n.presenceTTL())
		return err
	})
	if err != nil {
		n.log.Warn("presence refresh failed", "set", set, "err", err)
		return again
	}
	for _, id := range missing {
		x := byConn[id]
		p := state(x)
		p.mu.Lock()
		lost := p.joined && !p.left
		p.joined = p.joined && !lost
		p.mu.Unlock()
		if lost {
			again = append(again, x)
		}
	}
	return again
}

// reapSet removes what expired in set and tells the leaves it finds.
func (n *Node) reapSet(set string) {
	ctx, cancel := n.recoveryCtx()
	defer cancel()
	var gone []broker.PresenceEntry
	var err error
	channel, isChannel := channelOfSet(set)
	switch {
	case isChannel:
		err = n.timed("presence", func() (err error) {
			gone, err = n.pstore.PresenceReap(ctx, set, 0, n.event(EventLeave, channel))
			return err
		})
	case set == usersSet:
		err = n.timed("presence", func() (err error) {
			_, err = n.pstore.PresenceReap(ctx, set, n.opts.OfflineDelay, n.event(EventOffline, ""))
			return err
		})
	default:
		return
	}
	if err != nil {
		n.log.Warn("presence reap failed", "set", set, "err", err)
		return
	}
	if len(gone) == 0 {
		return
	}
	if ns, err := n.opts.Namespaces.Lookup(channel); err != nil || ns.Presence != PresenceMembers {
		return
	}
	for _, e := range gone {
		var m Member
		if json.Unmarshal(e.Value, &m) != nil {
			m = Member{User: broker.KeyUser(e.Key)}
		}
		n.tellPresence(ctx, EventLeave, channel, m)
	}
}

// reapStale reaps the sets whose every node stopped refreshing them.
func (n *Node) reapStale() {
	ctx, cancel := n.recoveryCtx()
	defer cancel()
	sets, err := n.pstore.PresenceStale(ctx, 1000)
	if err != nil {
		n.log.Warn("presence sweep failed", "err", err)
		return
	}
	for _, set := range sets {
		n.reapSet(set)
	}
}
