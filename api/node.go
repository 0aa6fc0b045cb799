package api

import (
	"context"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
)

// Node is what the HTTP API needs of Herald's core, declared here, on the
// consumer's side: *push.Node implements it. The API never talks to the
// broker itself, so that every publish, history read and token check goes
// through the one validation, cap and metric of the node.
type Node interface {
	// Name names the node in /healthz and /readyz.
	Name() string
	// Ready reports whether the node can serve (its broker is reachable).
	Ready(ctx context.Context) error
	// Namespaces resolves channel names to their rules.
	Namespaces() *push.Namespaces
	// CheckAPIKey and HasAPIKeys guard the publisher API.
	CheckAPIKey(key string) bool
	HasAPIKeys() bool

	Publish(ctx context.Context, p push.Publication) (push.Published, error)
	PublishBatch(ctx context.Context, pubs []push.Publication) ([]push.Published, error)
	History(ctx context.Context, channel string, since broker.Position, limit int) (broker.History, error)
	Presence(ctx context.Context, channel, cursor string, limit int) (push.PresencePage, error)
	ChannelCounts(prefix string) (counts map[string]int, truncated bool)
	Cluster() []push.NodeReport
	Disconnect(ctx context.Context, user, reason string, ban time.Duration) error
}

var _ Node = (*push.Node)(nil)
