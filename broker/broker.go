// Package broker defines the contract between Herald's hub and the engines
// that carry messages between nodes: the in-process memory engine (the
// embedded default) and Redis (package redisbroker).
//
// An engine assigns every published message its channel's next offset and
// the channel's epoch, keeps the channel's recent history when asked to, and
// hands every message of a channel this node subscribed to back to the
// node's Handler, in offset order.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Errors returned by engines. The api package maps them to HTTP statuses.
var (
	// ErrUnavailable means the engine cannot reach its backing store now;
	// the caller may retry later. Nothing was published: an engine returns
	// it for a publish only when it knows the request never left the node
	// (no connection could be had, or the store refused it unexecuted).
	ErrUnavailable = errors.New("broker: unavailable")
	// ErrUncertain means a publish may have reached the backing store but
	// its answer never came (a timeout, EOF or reset after the request was
	// written, the caller's deadline mid-call): it may or may not have been
	// published, so a retry may duplicate it.
	ErrUncertain = errors.New("broker: outcome unknown")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("broker: closed")
)

// Position is a place in a channel's stream: the last offset assigned in
// the epoch. Offsets start at 1; Offset 0 means nothing was published yet.
type Position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// Message is one publication on a channel.
type Message struct {
	Channel string          `json:"channel"`
	Offset  uint64          `json:"offset"`
	Epoch   string          `json:"epoch"`
	Data    json.RawMessage `json:"data"`
	// Time is the publish time in Unix milliseconds, set by the engine.
	Time int64 `json:"ts,omitempty"`
}

// Retention says how much history a channel keeps. It comes from the
// channel's namespace and travels with every publish, so engines need no
// configuration of their own.
type Retention struct {
	// Size is the number of messages kept; 0 keeps none.
	Size int
	// TTL is how long the history (and the channel's position) lives after
	// the last publish; 0 means the engine's default (see DefaultTTL).
	TTL time.Duration
}

// DefaultTTL is how long a channel's position survives its last publish
// when its namespace keeps no history. After it, the channel starts a new
// epoch.
const DefaultTTL = 24 * time.Hour

// HistoryQuery selects messages from a channel's history.
type HistoryQuery struct {
	// Since returns messages with offsets greater than Since.Offset.
	// A zero Since returns the newest Limit messages.
	Since Position
	// Limit caps the number of messages returned; 0 returns only the
	// current position.
	Limit int
	// Reverse returns the newest messages first (used for snapshots).
	Reverse bool
}

// History is the answer to a HistoryQuery.
type History struct {
	Messages []Message
	// Position is the channel's current position.
	Position Position
	// Complete reports whether Messages holds every message after
	// Since.Offset (in Since.Epoch) up to Position, with nothing trimmed
	// away. It is false when the epoch differs or history was trimmed.
	Complete bool
}

// Handler receives what the engine delivers to this node.
type Handler interface {
	// HandleMessage is called for every message of a subscribed channel,
	// in offset order per channel. It must not block for long: engines call
	// it from their delivery goroutine.
	HandleMessage(m *Message)
	// HandleReconnect is called after the engine regained its connection
	// to the backing store. Messages published in between may not have been
	// delivered; the handler fills the gap from History.
	HandleReconnect()
}

// Broker is the engine contract. All methods are safe for concurrent use.
type Broker interface {
	// Publish appends data to channel and delivers it to every node
	// subscribed to the channel. It returns the message's position.
	Publish(ctx context.Context, channel string, data json.RawMessage, r Retention) (Position, error)
	// Subscribe makes the engine deliver channel's messages to the Handler.
	// The hub calls it when the first local subscriber arrives.
	Subscribe(ctx context.Context, channels ...string) error
	// Unsubscribe stops delivering channel's messages to this node.
	Unsubscribe(ctx context.Context, channels ...string) error
	// History reads from a channel's history.
	History(ctx context.Context, channel string, q HistoryQuery) (History, error)
	// Close releases the engine's resources.
	Close(ctx context.Context) error
}

// Publication is one message of a batch: what Broker.Publish takes, and
// optionally an idempotency key.
type Publication struct {
	Channel   string
	Data      json.RawMessage
	Retention Retention
	// IdempotencyKey, when set (1-MaxIdempotencyKey bytes), makes the
	// publish happen at most once per channel and key within
	// IdempotencyWindow: a later publication with the same channel and key
	// publishes nothing and answers the first one's position with
	// PublishResult.Duplicate set. The check and the publish are one
	// atomic step in the engine, so nodes racing with the same key
	// publish once.
	IdempotencyKey string
	// IdempotencyWindow is how long the key is remembered after the first
	// publish; 0 means DefaultIdempotencyWindow.
	IdempotencyWindow time.Duration
}

// DefaultIdempotencyWindow is how long an idempotency key is remembered
// when the namespace does not say.
const DefaultIdempotencyWindow = 5 * time.Minute

// MaxIdempotencyKey is the longest idempotency key, in bytes.
const MaxIdempotencyKey = 128

// PublishResult is the outcome of one Publication: its position, or an
// error with the meaning Broker.Publish gives it (ErrUnavailable: not
// published; ErrUncertain: maybe published).
type PublishResult struct {
	Position Position
	// Duplicate reports that the publication's idempotency key was seen
	// on its channel within the window: nothing was published, and
	// Position is the first publication's.
	Duplicate bool
	Err       error
}

// IdempotencyWindowOf returns the window a publication's key is kept for.
func IdempotencyWindowOf(p Publication) time.Duration {
	if p.IdempotencyWindow <= 0 {
		return DefaultIdempotencyWindow
	}
	return p.IdempotencyWindow
}

// BatchPublisher is implemented by engines that publish many messages for
// the price of one: the Redis engine sends a batch in one pipelined round
// trip. Callers with several messages at once (POST /api/batch, a publish
// to many channels) should prefer it to a loop of Publish.
type BatchPublisher interface {
	// PublishBatch publishes pubs in their order: messages of one channel
	// get increasing offsets in the order given, and are delivered in it.
	// It returns one result per publication, results[i] for pubs[i]. Each
	// outcome stands alone: after a failure, later entries may have
	// succeeded, failed or be uncertain, each as its result says.
	PublishBatch(ctx context.Context, pubs []Publication) []PublishResult
}

// Readier is implemented by engines that can report whether they can serve
// now (the backing store is reachable). /readyz uses it.
type Readier interface {
	Ready(ctx context.Context) error
}

// Resubscriber is implemented by engines whose pub/sub runs over
// connections of their own (Redis). Resubscribe drops them and subscribes
// every wanted channel afresh on new ones; the Handler is told
// (HandleReconnect) once they are back. The node calls it when its pub/sub
// canary stops coming back: a connection can look alive and deliver
// nothing.
type Resubscriber interface {
	Resubscribe(ctx context.Context) error
}
