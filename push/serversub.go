package push

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/heraldpush/herald/broker"
)

// Server-side subscriptions: the application's backend subscribes (or
// unsubscribes) every connection of a user, on every node, to a channel
// (POST /api/subscribe, /api/unsubscribe). The request travels on
// ControlChannel like a disconnect; each node queues it for its
// serverSubs worker, which subscribes the user's sessions one after the
// other: off the broker's delivery goroutine, since a subscribe makes
// broker calls, and in order, so that a subscribe and the unsubscribe
// after it end unsubscribed. The connection gets "subscribed" (or
// "unsubscribed") with "server": true, then the channel's messages, with
// the namespace's history, snapshot and presence rules as if it had
// asked; its access rules are not checked (the backend decides). Only
// connections open when the request arrives are subscribed; a token's
// subs claim subscribes a connection at connect (Session.Open).

// OneChannel is implemented by transports that answer one channel's
// reads (long-poll): server-side subscriptions leave their sessions out,
// as the answer to a poll of one channel must not carry another's.
type OneChannel interface{ OneChannel() }

// takesServerSubs reports whether s gets server-side subscriptions.
func (s *Session) takesServerSubs() bool {
	_, one := s.t.(OneChannel)
	return !one
}

// maxServerSubQueue bounds the requests waiting for a node's worker; past
// it a request is dropped and logged (it would take minutes to catch up).
const maxServerSubQueue = 10000

// serverSubOp is one request for the worker.
type serverSubOp struct {
	subscribe bool
	user      string
	channel   string
}

// serverSubs is a node's queue of server-side subscription requests.
// mu is a leaf lock.
type serverSubs struct {
	mu    sync.Mutex
	queue []serverSubOp
	wake  chan struct{} // capacity 1: there is work
}

// SubscribeUser subscribes every connection of user, on every node, to
// channel. It returns once the request is on the broker; each node then
// subscribes its connections of the user.
func (n *Node) SubscribeUser(ctx context.Context, user, channel string) error {
	return n.serverSub(ctx, "subscribe", user, channel)
}

// UnsubscribeUser ends every connection's subscription of channel for
// user, on every node, whoever made it.
func (n *Node) UnsubscribeUser(ctx context.Context, user, channel string) error {
	return n.serverSub(ctx, "unsubscribe", user, channel)
}

func (n *Node) serverSub(ctx context.Context, kind, user, channel string) error {
	if user == "" {
		return Errorf(CodeBadRequest, `missing "user"`)
	}
	if channel == "" {
		return Errorf(CodeBadRequest, `missing "channel"`)
	}
	if NamespaceOf(channel) == SystemNamespace {
		return Errorf(CodeForbidden, "the %q namespace is reserved for the server", SystemNamespace)
	}
	if _, err := n.opts.Namespaces.Lookup(channel); err != nil {
		return err
	}
	data, _ := json.Marshal(control{Kind: kind, User: user, Channel: channel})
	_, err := n.broker.Publish(ctx, ControlChannel, data, broker.Retention{})
	return err
}

// queueServerSub hands a request from ControlChannel to the worker.
func (n *Node) queueServerSub(op serverSubOp) {
	q := &n.serverSubs
	q.mu.Lock()
	full := len(q.queue) >= maxServerSubQueue
	if !full {
		q.queue = append(q.queue, op)
	}
	q.mu.Unlock()
	if full {
		n.log.Warn("server-side subscription dropped: too many waiting", "user", op.user, "channel", op.channel)
		return
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// serverSubLoop is the worker: one of the node's long-lived goroutines
// (concurrency.go), ended by Close.
func (n *Node) serverSubLoop() {
	defer n.wg.Done()
	q := &n.serverSubs
	for {
		select {
		case <-n.done:
			return
		case <-q.wake:
		}
		for {
			q.mu.Lock()
			if len(q.queue) == 0 {
				q.queue = nil
				q.mu.Unlock()
				break
			}
			op := q.queue[0]
			q.queue = q.queue[1:]
			q.mu.Unlock()
			n.runServerSub(op)
		}
	}
}

// runServerSub applies one request to this node's sessions of the user.
func (n *Node) runServerSub(op serverSubOp) {
	var sessions []*Session
	n.sessions.each(func(s *Session) {
		s.mu.Lock()
		match := s.user == op.user && !s.closed && s.takesServerSubs()
		s.mu.Unlock()
		if match {
			sessions = append(sessions, s)
		}
	})
	for _, s := range sessions {
		if op.subscribe {
			n.subscribe(s, subRequest{channel: op.channel, server: true})
		} else {
			n.unsubscribe(s, "", op.channel, true)
		}
	}
}
