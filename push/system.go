package push

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/heraldpush/herald/broker"
)

// The reserved "herald" namespace carries what nodes tell each other over
// the broker's ordinary pub/sub. Every node subscribes to these channels
// for its whole life; clients cannot publish to them, and only admin
// sessions (authenticated with an API key) may subscribe to the stats.
const (
	SystemNamespace = "herald"
	ControlChannel  = "herald:control"  // disconnect a user everywhere
	PresenceChannel = "herald:presence" // join and leave events
	StatsChannel    = "herald:stats"    // each node's figures, every StatsInterval
)

var systemChannels = []string{ControlChannel, PresenceChannel, StatsChannel}

func isSystem(channel string) bool {
	return channel == ControlChannel || channel == PresenceChannel || channel == StatsChannel
}

// systemNamespace is the rule set for admin subscriptions to the stats;
// Session.lookup lets only admins reach it.
var systemNamespace = &Namespace{}

// control is a message on ControlChannel.
type control struct {
	Kind   string `json:"kind"` // "disconnect"
	User   string `json:"user"`
	Reason string `json:"reason,omitempty"`
}

// startSystem subscribes the system channels and starts the stats loop.
func (n *Node) startSystem(ctx context.Context) {
	if err := n.broker.Subscribe(ctx, append(systemChannels[:len(systemChannels):len(systemChannels)], n.canary.channel)...); err != nil {
		// The engine keeps the subscription wanted and makes it when the
		// broker is back (as for every channel).
		n.log.Warn("subscribing system channels failed; retried on reconnect", "err", err)
	}
	n.wg.Add(2)
	go n.reportLoop()
	go n.canary.loop()
}

// handleSystem acts on a message of a system channel.
func (n *Node) handleSystem(m *broker.Message) {
	switch m.Channel {
	case ControlChannel:
		var c control
		if json.Unmarshal(m.Data, &c) != nil || c.Kind != "disconnect" || c.User == "" {
			return
		}
		reason := "disconnected by the server"
		if c.Reason != "" {
			reason = truncate(c.Reason, 100)
		}
		n.sessions.each(func(s *Session) {
			s.mu.Lock()
			match := s.user == c.User
			s.mu.Unlock()
			if match {
				s.closeAsync(CloseKicked, reason)
			}
		})
	case PresenceChannel:
		n.fanPresence(m.Data)
	case StatsChannel:
		var r NodeReport
		if json.Unmarshal(m.Data, &r) == nil && r.Node != "" {
			n.nodes.put(r, time.Now())
		}
	}
}

// Disconnect closes every connection of user on every node (close code
// 4004), through the broker.
func (n *Node) Disconnect(ctx context.Context, user, reason string, ban time.Duration) error {
	if ban > 0 {
		st, ok := n.broker.(broker.Store)
		if !ok {
			return ErrNoStore
		}
		if err := st.SetKey(ctx, banKey(user), []byte(reason), ban); err != nil {
			return err
		}
	}
	data, _ := json.Marshal(control{Kind: "disconnect", User: user, Reason: reason})
	_, err := n.broker.Publish(ctx, ControlChannel, data, broker.Retention{})
	return err
}

func banKey(user string) string { return "ban:" + user }

// banned reports whether user is banned. When the store cannot be read it
// lets the user in: a Redis outage should not lock everyone out.
func (n *Node) banned(user string) bool {
	st, ok := n.broker.(broker.Store)
	if !ok || user == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.BrokerTimeout)
	defer cancel()
	v, err := st.GetKey(ctx, banKey(user))
	if err != nil {
		n.log.Warn("ban check failed, letting the user in", "user", user, "err", err)
		return false
	}
	return v != nil
}

// NodeReport is what each node publishes on StatsChannel.
type NodeReport struct {
	Snapshot
	At              time.Time      `json:"at"`
	ReceivedPerSec  float64        `json:"messages_received_per_sec"`
	DeliveredPerSec float64        `json:"messages_delivered_per_sec"`
	Channels        map[string]int `json:"channels_subscribers,omitempty"`
	Truncated       bool           `json:"channels_truncated,omitempty"`
}

// maxReportChannels caps the channel list one node reports.
const maxReportChannels = 10000

// nodeReports keeps the latest report of every node.
type nodeReports struct {
	mu   sync.Mutex
	m    map[string]NodeReport
	seen map[string]time.Time
}

func (n *nodeReports) put(r NodeReport, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m, n.seen = make(map[string]NodeReport), make(map[string]time.Time)
	}
	n.m[r.Node], n.seen[r.Node] = r, now
}

// Cluster returns the latest report of every node heard from within three
// stats intervals (a dead node drops out), this node's own fresh.
func (n *Node) Cluster() []NodeReport {
	self := n.report(nil, 0)
	out := []NodeReport{self}
	cutoff := time.Now().Add(-3 * n.opts.StatsInterval)
	n.nodes.mu.Lock()
	defer n.nodes.mu.Unlock()
	for name, r := range n.nodes.m {
		if name == self.Node {
			continue
		}
		if n.nodes.seen[name].Before(cutoff) {
			delete(n.nodes.m, name)
			delete(n.nodes.seen, name)
			continue
		}
		out = append(out, r)
	}
	return out
}

// report builds this node's report; prev and dt give the rates.
func (n *Node) report(prev *NodeReport, dt time.Duration) NodeReport {
	r := NodeReport{Snapshot: n.Snapshot(), At: time.Now(), Channels: make(map[string]int)}
	n.hub.eachChannel(func(ch *hubChannel) bool {
		if len(r.Channels) >= maxReportChannels {
			r.Truncated = true
			return false
		}
		ch.mu.Lock()
		r.Channels[ch.name] = len(ch.subs)
		ch.mu.Unlock()
		return true
	})
	if prev != nil && dt > 0 {
		r.ReceivedPerSec = float64(r.Received-prev.Received) / dt.Seconds()
		r.DeliveredPerSec = float64(r.Delivered-prev.Delivered) / dt.Seconds()
	}
	return r
}

// reportLoop publishes this node's report every StatsInterval.
func (n *Node) reportLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.opts.StatsInterval)
	defer t.Stop()
	var prev *NodeReport
	last := time.Now()
	for {
		select {
		case <-n.done:
			return
		case now := <-t.C:
			r := n.report(prev, now.Sub(last))
			prev, last = &r, now
			data, err := json.Marshal(r)
			if err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), n.opts.BrokerTimeout)
			if _, err := n.broker.Publish(ctx, StatsChannel, data, broker.Retention{}); err != nil {
				n.log.Debug("stats report not published", "err", err)
			}
			cancel()
		}
	}
}

// ChannelCounts merges every node's channels with prefix into subscriber
// counts across the cluster.
func (n *Node) ChannelCounts(prefix string) (counts map[string]int, truncated bool) {
	counts = make(map[string]int)
	for _, r := range n.Cluster() {
		truncated = truncated || r.Truncated
		for name, n := range r.Channels {
			if strings.HasPrefix(name, prefix) && !isSystem(name) {
				counts[name] += n
			}
		}
	}
	return counts, truncated
}
