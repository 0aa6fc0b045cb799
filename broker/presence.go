package broker

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseLost is QueueTrim's answer to a sender that no longer holds the
// queue's lease: another node sends now.
var ErrLeaseLost = errors.New("broker: queue lease lost")

// Presence is an optional engine capability: connections counted per key
// (a user) in sets shared by every node, so that a key's transitions (its
// first connection in, its last one out) are decided once across the
// cluster, each in one atomic step of the engine. A channel's presence is
// one set; the cluster's online users are another, whose keys linger
// after their last connection (offline_delay) so that a reload does not
// flap.
//
// A transition may also record an event: when the operation carries an
// Event, the engine appends it to every queue named there in the same
// atomic step as the transition (the webhook queues), so that an event is
// queued exactly once, and a key's events are queued in the order of its
// transitions. Queues are lists of JSON events read by a sender that holds
// the queue's lease (QueueLease).
//
// Keys of the form "u:USER" stand for user USER; events are recorded only
// for those (other keys, anonymous connections, count but make no events).
type Presence interface {
	// PresenceJoin adds op.Conn under op.Key in op.Set for op.TTL and
	// reports whether this made the key a member: its first connection,
	// and the key was not lingering.
	PresenceJoin(ctx context.Context, op PresenceOp) (first bool, err error)
	// PresenceLeave removes op.Conn and reports whether its key left the
	// set (its last connection, and op.Linger is 0; with a linger the key
	// stays until PresenceReap finds it lingered that long).
	PresenceLeave(ctx context.Context, op PresenceOp) (last bool, err error)
	// PresenceApply runs joins and leaves (op.Leave) in order, as one
	// atomic step, and reports each one's transition as PresenceJoin and
	// PresenceLeave would: a node coalesces the joins and leaves of its
	// connections into one round trip (a room of 20,000 arriving or a
	// node closing all its connections).
	PresenceApply(ctx context.Context, ops []PresenceOp) ([]bool, error)
	// PresenceRefresh renews the connections of set that are still there
	// for ttl, and returns those that are not (reaped, or never joined):
	// it adds nothing, so a refresh racing a leave cannot bring a
	// connection back.
	PresenceRefresh(ctx context.Context, set string, conns []string, ttl time.Duration) (missing []string, err error)
	// PresenceReap removes connections past their TTL (their node died)
	// and keys lingering longer than linger, and returns the keys that
	// left the set. ev, when not nil, is recorded for each that is a user.
	PresenceReap(ctx context.Context, set string, linger time.Duration, ev *Event) ([]PresenceEntry, error)
	// PresenceCount returns the number of keys in set.
	PresenceCount(ctx context.Context, set string) (int, error)
	// PresencePage returns up to limit keys of set after cursor (""
	// starts), in byte order, with their values, and whether more follow.
	PresencePage(ctx context.Context, set, cursor string, limit int) (entries []PresenceEntry, more bool, err error)
	// PresenceStale returns the sets nobody joined or refreshed within
	// their TTL (every node holding their connections died): what a
	// sweeper reaps.
	PresenceStale(ctx context.Context, limit int) ([]string, error)

	// QueueLease takes or renews the lease of queue for owner, for ttl,
	// and reports whether owner holds it.
	QueueLease(ctx context.Context, queue, owner string, ttl time.Duration) (bool, error)
	// QueuePeek returns the first n events of queue without removing them.
	QueuePeek(ctx context.Context, queue string, n int) ([][]byte, error)
	// QueueTrim removes the first n events of queue if owner holds its
	// lease (so a sender that lost it cannot drop what another sends).
	QueueTrim(ctx context.Context, queue, owner string, n int) error
	// QueueStats returns the events waiting in queue and the number the
	// bound dropped since the queue was created, cluster-wide.
	QueueStats(ctx context.Context, queue string) (QueueStats, error)
}

// QueueStats are a queue's figures.
type QueueStats struct {
	Len     int64
	Dropped int64
}

// PresenceOp is one connection joining or leaving a set.
type PresenceOp struct {
	Leave bool // for PresenceApply: a leave, else a join
	Set   string
	Key  string // the user ("u:USER") or an anonymous connection's own key
	Conn string // the connection, unique in the cluster
	// Value is shown by PresencePage for the key; kept from the key's
	// first connection. Empty keeps none (presence: counts).
	Value []byte
	// TTL is how long the connection counts without a refresh (join).
	TTL time.Duration
	// Linger keeps a key whose last connection left (leave).
	Linger time.Duration
	// Event, when not nil, is recorded if the operation makes a
	// transition and Key is a user.
	Event *Event
}

// Event is what a transition records in queues.
type Event struct {
	Type    string // online, offline, join, leave
	Channel string // join and leave
	// IDPrefix makes the events' ids: IDPrefix-1, IDPrefix-2, ... for the
	// events of one call. Random per call.
	IDPrefix string
	Time     time.Time
	// Queues receive the event; a queue holding MaxLen events drops it
	// (counted in its QueueStats.Dropped).
	Queues []string
	MaxLen int
}

// PresenceEntry is a key of a set with its value.
type PresenceEntry struct {
	Key   string
	Value []byte
}

// UserKey is the presence key of user.
func UserKey(user string) string { return "u:" + user }

// KeyUser returns the user of a presence key, or "" for keys that are not
// users.
func KeyUser(key string) string {
	if len(key) > 2 && key[:2] == "u:" {
		return key[2:]
	}
	return ""
}

// EventJSON is the wire form of one recorded event.
type EventJSON struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	User    string `json:"user"`
	Channel string `json:"channel,omitempty"`
	Time    string `json:"time"`
}

// EventTime formats an event's time (RFC 3339, milliseconds, UTC).
func EventTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }
