package push

// Snapshot is a point-in-time view of this node, for /api/stats and
// /metrics. Taking it walks the channels and sessions: it is for scrapes,
// not for hot paths.
type Snapshot struct {
	Node          string            `json:"node"`
	Connections   int               `json:"connections"`
	Channels      int               `json:"channels"`
	Subscriptions int               `json:"subscriptions"`
	Received      uint64            `json:"messages_received"`  // from the broker
	Delivered     uint64            `json:"messages_delivered"` // frames queued to clients
	Dropped       uint64            `json:"messages_dropped"`
	Skipped       uint64            `json:"messages_skipped"`   // not sent to throttled subscribers (max_rate, conflate)
	Conflated     uint64            `json:"conflated_sessions"` // times a session fell behind in a conflating namespace
	Lagging       uint64            `json:"lagging_clients"`    // times a WebSocket client was found not reading as fast as the feed (its writes held back and gathered)
	ClientPubs    uint64            `json:"client_publishes"`
	Gaps          uint64            `json:"gaps"`
	Reconnects    uint64            `json:"broker_reconnects"`
	QueuedBytes   int               `json:"queued_bytes"`
	MaxQueued     int               `json:"max_queued_bytes"`
	Rejections    map[string]uint64 `json:"rejections"`
	Closes        map[string]uint64 `json:"closes"`
	PubSubLag     float64           `json:"pubsub_lag_seconds"` // the broker pub/sub's delay, measured by the canary
}

// Snapshot returns the node's current figures.
func (n *Node) Snapshot() Snapshot {
	sessions, channels, subs := n.Counts()
	s := Snapshot{
		Node: n.opts.Node, Connections: sessions, Channels: channels, Subscriptions: subs,
		Received:   n.stats.Received.Load(),
		Delivered:  n.stats.Delivered.Load(),
		Dropped:    n.stats.Dropped.Load(),
		Skipped:    n.stats.Skipped.Load(),
		Conflated:  n.stats.Conflated.Load(),
		Lagging:    n.stats.Lagging.Load(),
		ClientPubs: n.stats.ClientPubs.Load(),
		Gaps:       n.stats.Gaps.Load(),
		Reconnects: n.stats.Reconnects.Load(),
		Rejections: n.Rejections(),
		Closes:     make(map[string]uint64, len(closeNames)),
		PubSubLag:  n.canary.lag().Seconds(),
	}
	n.sessions.each(func(ss *Session) {
		ss.mu.Lock()
		q := ss.queued
		ss.mu.Unlock()
		s.QueuedBytes += q
		s.MaxQueued = max(s.MaxQueued, q)
	})
	for code, name := range closeNames {
		s.Closes[name] = n.closes[code].Load()
	}
	return s
}

// CountLagging counts a client found lagging: its receive window kept
// shrinking, and its writes are held back and gathered (push/ws/lag.go).
func (n *Node) CountLagging() { n.stats.Lagging.Add(1) }

// Delivered counts the frames queued to clients since the node started:
// one counter read, cheap to poll every second (Snapshot walks every
// session). The GC tuner paces the collector by it (internal/server).
func (n *Node) Delivered() uint64 { return n.stats.Delivered.Load() }

// Close kinds counted per connection, by the code that ended it.
const (
	closeNormal = iota
	closeGoingAway
	closePolicy
	closeTooBig
	closeSlow
	closeNoPong
	closeExpired
	closeKicked
	closeFlood
	closeAbnormal // the connection broke without a close frame
	closeOther
	closeProtocol // 1002: the client broke the framing rules (push/ws/wsguard.go)
	closeInternal // 1011: a panic was recovered (recover.go)
	numCloses
)

var closeNames = [numCloses]string{
	"normal", "going_away", "policy", "too_big", "slow_consumer", "no_pong",
	"token_expired", "kicked", "flood", "abnormal", "other",
	"protocol_error", "internal_error",
}

func closeKind(code uint16) int {
	switch code {
	case CloseNormal:
		return closeNormal
	case CloseGoingAway:
		return closeGoingAway
	case ClosePolicy:
		return closePolicy
	case CloseTooBig:
		return closeTooBig
	case CloseSlowConsumer:
		return closeSlow
	case CloseNoPong:
		return closeNoPong
	case CloseTokenExpired:
		return closeExpired
	case CloseKicked:
		return closeKicked
	case CloseFlood:
		return closeFlood
	case CloseProtocol:
		return closeProtocol
	case CloseInternal:
		return closeInternal
	}
	return closeOther
}

// CountClose records why a WebSocket ended: the code the server sent, or
// else the client's close code (clientCode), or abnormal when there was no
// close frame (0).
func (n *Node) CountClose(s *Session, clientCode uint16) {
	code := s.closeCode.Load()
	if code == 0 {
		code = uint32(clientCode)
	}
	kind := closeAbnormal
	if code != 0 {
		kind = closeKind(uint16(code))
	}
	n.closes[kind].Add(1)
}
