package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/redis/go-redis/v9"
)

// shard is the channels this node wants on one pub/sub connection (one
// Redis server or Sentinel) or of one partition (Redis Cluster), and the
// state of their subscription.
//
// Without Cluster a shard has its own go-redis PubSub: one goroutine
// (read) receives from it; Subscribe and Unsubscribe write to it. With
// Cluster, a shard is a partition homed on the node's one connection to
// the master of its slot (nodeconn.go), whose reader delivers to it.
//
// go-redis redials and resubscribes a broken connection by itself, inside
// whichever call finds it broken: the reader's Receive, but also a Ping or
// a Subscribe made between two reads. So the reader learns of reconnects
// in two ways: an error from Receive, or Redis confirming again a
// subscription it already confirmed on this connection. Every connection
// is subscribed to the shard's control channel, so a resubscription
// always produces at least one such confirmation.
type shard struct {
	b       *Broker
	index   int
	control string

	mu      sync.Mutex
	ps      *redis.PubSub              // without Cluster
	node    *nodeConn                  // with Cluster: the connection it is homed on
	want    map[string]string          // pub/sub name -> Herald channel
	waiters map[string][]chan struct{} // subscriptions awaiting Redis's confirmation
	live    map[string]bool            // confirmed on the current connection
	unsubs  map[string]int             // our unsubscribes whose confirmation is due
	down    bool                       // the reader lost the connection and has not got it back
	lost    bool                       // Cluster: down after a loss (not at start), so a resync is due
	closed  bool
}

func newShard(b *Broker, i int) *shard {
	return &shard{
		b:       b,
		index:   i,
		control: b.controlChannel(i),
		want:    make(map[string]string),
		waiters: make(map[string][]chan struct{}),
		live:    make(map[string]bool),
		unsubs:  make(map[string]int),
	}
}

// newPubSub returns a connection-less PubSub; it connects on its first
// subscribe.
func (s *shard) newPubSub() *redis.PubSub {
	return s.b.client.Subscribe(context.Background())
}

// confirmWait bounds how long Subscribe waits for Redis's confirmation:
// one round trip normally, or a redial and resubscription when the
// connection broke meanwhile (the reader replaces a connection silent for
// a ping interval and then pongWait).
func (b *Broker) confirmWait() time.Duration {
	return b.opts.PingInterval + b.pongWait + time.Second
}

// start connects, subscribed to the control channel, and starts the
// reader (without Cluster; startNodes does it with Cluster).
func (s *shard) start(ctx context.Context) error {
	w := make(chan struct{})
	s.mu.Lock()
	s.ps = s.newPubSub()
	s.waiters[s.control] = []chan struct{}{w}
	ps := s.ps
	s.mu.Unlock()
	if err := ps.Subscribe(ctx, s.control); err != nil {
		return s.b.fail("subscribe", "", err)
	}
	s.b.readers.Go(s.read)
	if err := s.wait(ctx, []chan struct{}{w}); err != nil {
		return s.b.fail("subscribe", "", err)
	}
	return nil
}

// current returns the shard's PubSub, nil once closed.
func (s *shard) current() *redis.PubSub {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	return s.ps
}

func (s *shard) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

func (s *shard) close() {
	s.mu.Lock()
	s.closed = true
	ps := s.ps
	s.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// subscribe subscribes the pub/sub names (name -> channel) and waits until
// Redis confirmed them.
func (s *shard) subscribe(ctx context.Context, chans map[string]string) error {
	s.mu.Lock()
	if s.down {
		s.mu.Unlock()
		return errors.New("pub/sub connection is down")
	}
	var fresh []string
	var waits []chan struct{}
	for name, ch := range chans {
		_, wanted := s.want[name]
		if wanted && len(s.waiters[name]) == 0 {
			continue // already confirmed
		}
		w := make(chan struct{})
		s.waiters[name] = append(s.waiters[name], w)
		waits = append(waits, w)
		if !wanted {
			s.want[name] = ch
			fresh = append(fresh, name)
		}
	}
	ps, node := s.ps, s.node
	s.mu.Unlock()
	var err error
	switch {
	case len(fresh) == 0:
	case node != nil:
		// Should the connection fail before Redis confirms, the reader
		// resubscribes everything in want on the next one.
		err = node.command(append([]string{"SSUBSCRIBE"}, fresh...)...)
	default:
		err = ps.Subscribe(ctx, fresh...)
		if err != nil && s.current() != ps {
			// The reader replaced the connection meanwhile; the new one
			// subscribed everything in want, fresh included.
			err = nil
		}
	}
	if err == nil {
		err = s.wait(ctx, waits)
	}
	if err != nil {
		s.unsubscribe(fresh)
	}
	return err
}

// wait waits until every channel of waits is closed.
func (s *shard) wait(ctx context.Context, waits []chan struct{}) error {
	if len(waits) == 0 {
		return nil
	}
	t := time.NewTimer(s.b.confirmWait())
	defer t.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return fmt.Errorf("waiting for Redis to confirm the subscription: %w", ctx.Err())
		case <-t.C:
			return errors.New("Redis did not confirm the subscription in time")
		case <-s.b.done:
			return broker.ErrClosed
		}
	}
	return nil
}

// unsubscribe forgets the pub/sub names and tells Redis. Errors do not
// matter: go-redis forgets the channels before sending, and a Cluster
// connection resubscribes only what is in want, so a connection that broke
// will not resubscribe them; the reader drops whatever still arrives for
// channels not in want.
func (s *shard) unsubscribe(names []string) {
	s.mu.Lock()
	ps, node, down := s.ps, s.node, s.down || s.closed
	var gone []string
	for _, name := range names {
		if _, ok := s.want[name]; !ok {
			continue
		}
		delete(s.want, name)
		delete(s.waiters, name)
		if node == nil || !down {
			// A down Cluster partition sends nothing, so expects no
			// confirmation.
			s.unsubs[name]++
		}
		gone = append(gone, name)
	}
	s.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	if node != nil {
		if !down {
			_ = node.command(append([]string{"SUNSUBSCRIBE"}, gone...)...)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.b.confirmWait())
	if down {
		// No connection: only make go-redis forget them, without the
		// redial an unsubscribe on a closed connection would start.
		cancel()
	}
	defer cancel()
	_ = ps.Unsubscribe(ctx, gone...)
}

// read receives from the connection until the engine closes, delivering
// messages, noticing reconnects and keeping an idle connection checked.
func (s *shard) read() {
	ctx := context.Background()
	var (
		lost     bool // HandleReconnect is due once the connection is back
		pinged   bool // a ping is out since the last thing received
		failures int
	)
	for {
		ps := s.current()
		if ps == nil {
			return
		}
		wait := s.b.opts.PingInterval
		if pinged {
			wait = s.b.pongWait
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if s.b.closed.Load() {
			return
		}
		if err != nil {
			if idle(err) && !pinged {
				// Quiet for an interval: ask for a sign of life.
				pinged = true
				pctx, cancel := context.WithTimeout(ctx, s.b.opts.PingInterval)
				_ = ps.Ping(pctx)
				cancel()
				continue
			}
			var rerr redis.Error
			switch {
			case idle(err):
				// Silent past a ping: dead, even if TCP has not noticed.
				s.replace()
			case errors.As(err, &rerr):
				// Redis refused a (re)subscription (loading, ACL):
				// which channels are subscribed is no longer known.
				s.replace()
			default:
				// go-redis dropped the connection; the next Receive
				// redials and resubscribes.
			}
			pinged = false
			if !lost {
				lost = true
				s.setDown(true)
				s.b.log.Warn("redis pub/sub connection lost", "conn", s.index, "err", err)
			}
			failures++
			if !s.b.backoff(failures) {
				return
			}
			continue
		}
		pinged, failures = false, 0
		if lost {
			lost = false
			s.setDown(false)
			s.b.log.Info("redis pub/sub connection restored", "conn", s.index)
			s.b.handler.HandleReconnect()
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			reconnected, dropped := s.confirm(m.Kind, m.Channel)
			if dropped {
				// Redis ended a subscription we want (a server does
				// on CLIENT KILL of its subscriptions, or RESET).
				s.b.log.Warn("redis dropped a subscription, reconnecting", "conn", s.index, "channel", m.Channel)
				s.replace()
				lost = true
				s.setDown(true)
			}
			if reconnected {
				s.b.log.Info("redis pub/sub connection restored", "conn", s.index)
				s.b.handler.HandleReconnect()
			}
		case *redis.Message:
			s.deliver(m.Channel, m.Payload)
		}
	}
}

// idle reports whether err is a read deadline passing on a connection, as
// opposed to one that failed.
func idle(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) && ne.Timeout() && !(errors.As(err, &oe) && oe.Op == "dial")
}

func (s *shard) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	if down {
		// The next connection confirms everything afresh.
		clear(s.live)
		clear(s.unsubs)
	}
	s.mu.Unlock()
}

// lose marks a Cluster partition down after its connection was lost or
// while it moves: it is resynced once its next subscription is confirmed.
// The caller holds s.mu.
func (s *shard) lose() {
	s.down, s.lost = true, true
	clear(s.live)
	clear(s.unsubs)
}

// backoff waits before a reader retries a failed connection; it returns
// false when the engine closes.
func (b *Broker) backoff(failures int) bool {
	t := time.NewTimer(min(25*time.Millisecond<<min(failures, 6), time.Second))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.done:
		return false
	}
}

// confirm records a confirmation from Redis of kind (subscribe,
// unsubscribe, or their s- forms) for channel. reconnected reports that
// the Handler is due a HandleReconnect: without Cluster, for a reconnect
// made behind the reader's back (a second confirmation of a subscription
// on what the reader took for one connection); with Cluster, for a
// partition whose resubscription after a loss is confirmed (its control
// channel comes last in its one SSUBSCRIBE). dropped reports a
// subscription Redis ended without being asked (with Cluster only while
// the partition is up: the rest of a slot's drop is not news).
func (s *shard) confirm(kind, channel string) (reconnected, dropped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch kind {
	case "subscribe", "ssubscribe":
		if ws, ok := s.waiters[channel]; ok {
			for _, w := range ws {
				close(w)
			}
			delete(s.waiters, channel)
		} else if s.live[channel] && s.node == nil {
			// The rest of this resubscription is not news.
			clear(s.live)
			clear(s.unsubs)
			reconnected = true
		}
		s.live[channel] = true
		if s.node != nil && channel == s.control && s.down {
			s.down = false
			reconnected, s.lost = s.lost, false
		}
	case "unsubscribe", "sunsubscribe":
		delete(s.live, channel)
		if n := s.unsubs[channel]; n > 0 {
			if n == 1 {
				delete(s.unsubs, channel)
			} else {
				s.unsubs[channel] = n - 1
			}
			return false, false
		}
		_, wanted := s.want[channel]
		dropped = (wanted || channel == s.control) && !(s.node != nil && s.down)
	}
	return reconnected, dropped
}

// replace closes the connection and opens a new one subscribed to the
// control channel and every wanted channel. The reader calls it when it
// cannot trust the connection's state (without Cluster).
func (s *shard) replace() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	old := s.ps
	s.ps = s.newPubSub()
	ps := s.ps
	names := make([]string, 0, 1+len(s.want))
	names = append(names, s.control)
	for name := range s.want {
		names = append(names, name)
	}
	clear(s.live)
	clear(s.unsubs)
	s.mu.Unlock()
	_ = old.Close()
	ctx, cancel := context.WithTimeout(context.Background(), s.b.confirmWait())
	defer cancel()
	// On failure go-redis keeps the names and subscribes them when the
	// next Receive redials.
	_ = ps.Subscribe(ctx, names...)
}

// deliver queues the messages of payload, received on pub/sub channel
// name, for the Handler if this node still wants its channel.
func (s *shard) deliver(name, payload string) {
	s.mu.Lock()
	channel, ok := s.want[name]
	s.mu.Unlock()
	if !ok {
		return // unsubscribed meanwhile, or the control channel
	}
	msgs, err := decodePayload(payload)
	if err != nil {
		// The hub sees the gap at the next message and fills it from
		// history, where the data is kept as published.
		s.b.log.Warn("redis: undecodable message dropped", "channel", channel, "err", err)
		return
	}
	q := s.b.queue(channel)
	for _, msg := range msgs {
		msg.Channel = channel
		select {
		case q <- msg:
		case <-s.b.done:
			return
		}
	}
}

// Subscribe implements broker.Broker. It returns once Redis confirmed the
// subscriptions: every message published after it returns is delivered.
func (b *Broker) Subscribe(ctx context.Context, channels ...string) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	done := make(map[int][]string)
	for i, chans := range b.group(channels) {
		if err := b.shards[i].subscribe(ctx, chans); err != nil {
			// All or nothing: the hub treats an error as "not subscribed".
			for j, names := range done {
				b.shards[j].unsubscribe(names)
			}
			what := channels[0]
			if len(channels) > 1 {
				what = fmt.Sprintf("%s (and %d more)", channels[0], len(channels)-1)
			}
			return b.fail("subscribe", what, err)
		}
		for name := range chans {
			done[i] = append(done[i], name)
		}
	}
	return nil
}

// Unsubscribe implements broker.Broker. Messages already received for the
// channels may still reach the Handler after it returns.
func (b *Broker) Unsubscribe(ctx context.Context, channels ...string) error {
	if b.closed.Load() {
		return nil
	}
	for i, chans := range b.group(channels) {
		names := make([]string, 0, len(chans))
		for name := range chans {
			names = append(names, name)
		}
		b.shards[i].unsubscribe(names)
	}
	return nil
}

// group sorts channels by shard: shard -> pub/sub name -> channel.
func (b *Broker) group(channels []string) map[int]map[string]string {
	out := make(map[int]map[string]string, 1)
	for _, ch := range channels {
		n := b.names(ch)
		if out[n.shard] == nil {
			out[n.shard] = make(map[string]string, len(channels))
		}
		out[n.shard][n.pubsub] = ch
	}
	return out
}
