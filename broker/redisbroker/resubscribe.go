package redisbroker

import (
	"context"

	"github.com/heraldpush/herald/broker"
)

var _ broker.Resubscriber = (*Broker)(nil)

// Resubscribe implements broker.Resubscriber: every pub/sub connection is
// replaced by a new one subscribed to everything wanted. Each reader sees
// its old connection close, marks its shards (with Cluster, partitions)
// down, and calls HandleReconnect once Redis confirms the new
// subscriptions, as after any reconnect; the node then fills from history
// what the old connection did not deliver. With Cluster that is one
// SSUBSCRIBE per partition on one new connection per master.
func (b *Broker) Resubscribe(ctx context.Context) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if b.sharded {
		b.kickNodes()
		return nil
	}
	for _, s := range b.shards {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.replace()
	}
	return nil
}
