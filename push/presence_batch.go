package push

import (
	"context"
	"sync"

	"github.com/heraldpush/herald/broker"
)

// maxPresenceBatch bounds the ops of one store call (one Redis script:
// it blocks Redis for its length).
const maxPresenceBatch = 512

// presenceBatch coalesces the presence joins and leaves of this node's
// connections into few store calls (group commit): each caller queues
// its op and waits for the call that carries it, and while one call runs
// the next ones queue up behind it. A room of 20,000 arriving, or a node
// closing all its connections, costs tens of round trips instead of
// 20,000, and no caller waits on a connection pool.
//
// mu guards pending and running; it is a leaf. The flushing goroutine
// (flushPresence) is started by the caller that finds none running and
// ends when nothing is pending; its callers wait for it, so it outlives
// none of them by more than one store call (BrokerTimeout).
type presenceBatch struct {
	mu      sync.Mutex
	pending []*presenceCall
	running bool
}

type presenceCall struct {
	op   broker.PresenceOp
	done chan struct{}
	ok   bool
	err  error
}

// applyPresence runs op in the next batch and returns its transition.
func (n *Node) applyPresence(ctx context.Context, op broker.PresenceOp) (bool, error) {
	c := &presenceCall{op: op, done: make(chan struct{})}
	b := &n.pbatch
	b.mu.Lock()
	b.pending = append(b.pending, c)
	start := !b.running
	b.running = true
	b.mu.Unlock()
	if start {
		go n.flushPresence()
	}
	select {
	case <-c.done:
		return c.ok, c.err
	case <-ctx.Done():
		// The op may still be applied; callers treat it as failed, and
		// the refresh mends either way (a join again is no transition).
		return false, ctx.Err()
	}
}

// flushPresence sends the pending ops, a batch at a time, until none is
// left.
func (n *Node) flushPresence() {
	b := &n.pbatch
	for {
		b.mu.Lock()
		calls := b.pending
		if len(calls) > maxPresenceBatch {
			calls = calls[:maxPresenceBatch:maxPresenceBatch]
			b.pending = append([]*presenceCall(nil), b.pending[maxPresenceBatch:]...)
		} else {
			b.pending = nil
		}
		if len(calls) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ops := make([]broker.PresenceOp, len(calls))
		for i, c := range calls {
			ops[i] = c.op
		}
		ctx, cancel := n.brokerCtx()
		var res []bool
		err := n.timed("presence", func() (err error) {
			res, err = n.pstore.PresenceApply(ctx, ops)
			return err
		})
		cancel()
		for i, c := range calls {
			c.err = err
			c.ok = err == nil && i < len(res) && res[i]
			close(c.done)
		}
	}
}
