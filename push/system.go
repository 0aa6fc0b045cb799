package push

import (
	"context"
	"crypto/subtle"
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
func (h *Hub) startSystem(ctx context.Context) {
	if err := h.broker.Subscribe(ctx, systemChannels...); err != nil {
		// The engine keeps the subscription wanted and makes it when the
		// broker is back (as for every channel).
		h.log.Warn("subscribing system channels failed; retried on reconnect", "err", err)
	}
	h.wg.Add(1)
	go h.reportLoop()
}

// handleSystem acts on a message of a system channel.
func (h *Hub) handleSystem(m *broker.Message) {
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
		h.sessions.each(func(s *Session) {
			s.mu.Lock()
			match := s.user == c.User
			s.mu.Unlock()
			if match {
				s.closeAsync(CloseKicked, reason)
			}
		})
	case PresenceChannel:
		h.fanPresence(m.Data)
	case StatsChannel:
		var r NodeReport
		if json.Unmarshal(m.Data, &r) == nil && r.Node != "" {
			h.nodes.put(r, time.Now())
		}
	}
}

// Disconnect closes every connection of user on every node (close code
// 4004), through the broker.
func (h *Hub) Disconnect(ctx context.Context, user, reason string, ban time.Duration) error {
	if ban > 0 {
		st, ok := h.broker.(broker.Store)
		if !ok {
			return ErrNoStore
		}
		if err := st.SetKey(ctx, banKey(user), []byte(reason), ban); err != nil {
			return err
		}
	}
	data, _ := json.Marshal(control{Kind: "disconnect", User: user, Reason: reason})
	_, err := h.broker.Publish(ctx, ControlChannel, data, broker.Retention{})
	return err
}

func banKey(user string) string { return "ban:" + user }

// banned reports whether user is banned. When the store cannot be read it
// lets the user in: a Redis outage should not lock everyone out.
func (h *Hub) banned(user string) bool {
	st, ok := h.broker.(broker.Store)
	if !ok || user == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.BrokerTimeout)
	defer cancel()
	v, err := st.GetKey(ctx, banKey(user))
	if err != nil {
		h.log.Warn("ban check failed, letting the user in", "user", user, "err", err)
		return false
	}
	return v != nil
}

// isAdminKey compares key with the admin (API) keys in constant time.
func (h *Hub) isAdminKey(key string) bool {
	match := 0
	for _, k := range h.opts.AdminKeys {
		match |= subtle.ConstantTimeCompare([]byte(key), []byte(k))
	}
	return key != "" && match == 1
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
func (h *Hub) Cluster() []NodeReport {
	self := h.report(nil, 0)
	out := []NodeReport{self}
	cutoff := time.Now().Add(-3 * h.opts.StatsInterval)
	h.nodes.mu.Lock()
	defer h.nodes.mu.Unlock()
	for name, r := range h.nodes.m {
		if name == self.Node {
			continue
		}
		if h.nodes.seen[name].Before(cutoff) {
			delete(h.nodes.m, name)
			delete(h.nodes.seen, name)
			continue
		}
		out = append(out, r)
	}
	return out
}

// report builds this node's report; prev and dt give the rates.
func (h *Hub) report(prev *NodeReport, dt time.Duration) NodeReport {
	r := NodeReport{Snapshot: h.Snapshot(), At: time.Now(), Channels: make(map[string]int)}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for name, ch := range sh.channels {
			if len(r.Channels) >= maxReportChannels {
				r.Truncated = true
				break
			}
			ch.mu.Lock()
			r.Channels[name] = len(ch.subs)
			ch.mu.Unlock()
		}
		sh.mu.RUnlock()
	}
	if prev != nil && dt > 0 {
		r.ReceivedPerSec = float64(r.Received-prev.Received) / dt.Seconds()
		r.DeliveredPerSec = float64(r.Delivered-prev.Delivered) / dt.Seconds()
	}
	return r
}

// reportLoop publishes this node's report every StatsInterval.
func (h *Hub) reportLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.StatsInterval)
	defer t.Stop()
	var prev *NodeReport
	last := time.Now()
	for {
		select {
		case <-h.done:
			return
		case now := <-t.C:
			r := h.report(prev, now.Sub(last))
			prev, last = &r, now
			data, err := json.Marshal(r)
			if err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), h.opts.BrokerTimeout)
			if _, err := h.broker.Publish(ctx, StatsChannel, data, broker.Retention{}); err != nil {
				h.log.Debug("stats report not published", "err", err)
			}
			cancel()
		}
	}
}

// ChannelCounts merges every node's channels with prefix into subscriber
// counts across the cluster.
func (h *Hub) ChannelCounts(prefix string) (counts map[string]int, truncated bool) {
	counts = make(map[string]int)
	for _, r := range h.Cluster() {
		truncated = truncated || r.Truncated
		for name, n := range r.Channels {
			if strings.HasPrefix(name, prefix) && !isSystem(name) {
				counts[name] += n
			}
		}
	}
	return counts, truncated
}
