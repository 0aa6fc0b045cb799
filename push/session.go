package push

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/broker"
)

// Transport carries a session's frames to its client: a WebSocket (gws),
// a Server-Sent Events stream or a long-poll response. The session runs
// at most one flush at a time, so a transport's writes never interleave.
type Transport interface {
	// Schedule arranges for flush to run soon. It must not block.
	Schedule(flush func())
	// Write sends frames, in order. It runs inside flush only.
	Write(frames []*Frame) error
	// Close ends the connection, telling the client code and reason where
	// the transport can. The session's writer calls it once, inside
	// flush; it may block up to a second.
	Close(code uint16, reason string)
}

// TryWriter is a transport that can write without waiting for a slow
// peer: the WebSocket transport, whose flushes run on a few shared writer
// goroutines. Blocking one of them on one full socket would stall every
// connection behind it, so what the socket does not take at once is kept
// and written by a goroutine of the session's own (Drain).
type TryWriter interface {
	// TryWrite writes frames as far as the socket takes them now and
	// keeps the rest; done reports that nothing was kept.
	TryWrite(frames []*Frame) (done bool, err error)
	// Drain writes what TryWrite kept, waiting up to the write timeout.
	// When the client did not take it all in that time it keeps the rest
	// and returns ErrNotReading: the session closes it as a slow consumer
	// (4001), and Close sends the rest first.
	Drain() error
	// Interrupt cuts a waiting Drain short: the session is closing.
	Interrupt()
	// Pace is asked before each write of queued frames, and may look at
	// the client first. When it says wait, the frames wait, and what
	// comes meanwhile joins them: ScheduleAfter runs the flush again
	// after d, behind the flushes of clients that keep up, and no
	// goroutine waits meanwhile. A client that has not read what it was
	// sent goes behind them (d 0); one that lags (its receive window
	// keeps shrinking) gets one write per d instead of one per message
	// (push/ws/lag.go).
	Pace() (d time.Duration, wait bool)
	ScheduleAfter(d time.Duration, flush func())
}

// Session is one client connection on any transport. Its memory is kept
// small: a node with 10,000 idle connections pays for 10,000 of these.
type Session struct {
	node *Node
	t    Transport
	id   uint64
	// oneWay transports (SSE, long-poll) cannot answer pings; they are not
	// closed for silence, a dead peer shows up as a write error instead.
	oneWay bool
	user   string // the token's sub; guarded by mu

	expires   atomic.Int64  // token expiry, unix nanoseconds; 0: none
	closeCode atomic.Uint32 // the close code the server sent, for metrics

	opened int64 // unix nanoseconds

	lastSeen atomic.Int64 // unix nanoseconds of the last frame received

	mu       sync.Mutex
	queue    []*Frame // frames waiting for the writer
	spare    []*Frame // the writer's previous queue, reused
	queued   int      // bytes waiting for the writer
	flushing bool     // a flush is scheduled or running: the writer owns the transport
	closed   bool     // nothing more is queued
	closing  bool     // the writer must send the close (closeCode, reason)
	stalled  bool     // the writer waits for the client's socket to take more
	behind   bool     // conflating: fell behind and has not drained since (conflate.go)
	listed   bool     // in the node's registry (Register)
	reason   string
	subs     map[string]*subscription
	pending  map[string]struct{} // channels being subscribed (commands.go)
	limiter  *bucket
	claims   *Claims      // nil: anonymous
	admin    bool         // authenticated with an API key
	warned   bool         // told the client its token expired
	errors   int          // rejected frames since the last heartbeat, for flood control
	online   *subPresence // the session in the cluster's online users; nil: not tracked

	flushFn func()    // s.flush, bound once so that scheduling it never allocates
	tw      TryWriter // s.t when it can write without waiting, else nil
}

// NewSession returns a session on t. Sessions of two-way transports are
// registered for heartbeats by Open; others call Close when done.
func (n *Node) NewSession(t Transport, oneWay bool) *Session {
	s := &Session{node: n, t: t, id: n.nextID.Add(1), oneWay: oneWay}
	s.flushFn = s.flush
	s.tw, _ = t.(TryWriter)
	now := time.Now().UnixNano()
	s.opened = now
	s.lastSeen.Store(now)
	return s
}

// ID is the session's client id, unique on this node.
func (s *Session) ID() uint64 { return s.id }

// burstQueueFactor: a session whose client keeps reading is closed only
// past this many times MaxQueueBytes.
const burstQueueFactor = 8

// send queues frame for the client without blocking. frame is shared and
// must not be modified.
//
// A session past the node's MaxQueueBytes is closed as a slow consumer, so
// that everyone else goes on, once its client has stopped taking data:
// its socket is full (stalled) and the bytes keep coming. A burst that
// outruns the writers, not the client (a batch of a thousand messages to a
// channel of ten thousand), may queue up to burstQueueFactor times the
// limit first: the queued frames are shared by every subscriber, what
// each queue holds of its own is a slice header per frame. Transports that
// cannot tell a full socket (SSE, long-poll) are closed at the limit.
func (s *Session) send(frame *Frame) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.node.stats.Dropped.Add(1)
		return
	}
	size := len(frame.Bytes)
	if limit := s.node.opts.MaxQueueBytes; s.queued+size > limit && s.queued > 0 &&
		(s.stalled || s.tw == nil || s.queued+size > burstQueueFactor*limit) {
		s.closeLocked(CloseSlowConsumer, SlowQueueReason)
		queued := s.queued
		s.mu.Unlock()
		s.closedSlow(queued)
		return
	}
	s.enqueueLocked(frame)
	s.mu.Unlock()
}

// enqueueLocked appends frame to the queue and makes sure a flush is
// coming. s.mu is held.
func (s *Session) enqueueLocked(frame *Frame) {
	s.queue = append(s.queue, frame)
	s.queued += len(frame.Bytes)
	if !s.flushing {
		s.flushing = true
		s.t.Schedule(s.flushFn)
	}
}

// flush writes every queued frame through the transport. Frames leave
// the queue's byte count when the writer takes them, not when the write
// returns: a client that keeps up must not look slow while a long run is
// being written, and a stuck one still overflows with what piles up
// behind the stuck write.
func (s *Session) flush() { s.writeOut(false) }

// writeOut is the session's writer: it runs until the queue is empty, the
// connection fails or the close is sent. Scheduled flushes run it with
// mayWait false; on a transport that writes without waiting it hands
// itself to a goroutine of its own (mayWait true) once the socket is full.
func (s *Session) writeOut(mayWait bool) {
	defer s.catchWriterPanic() // recover.go
	for {
		if mayWait {
			if err := s.tw.Drain(); err != nil {
				if errors.Is(err, ErrNotReading) {
					s.closeNotReading() // session_close.go
				}
				s.finish()
				return
			}
		}
		s.mu.Lock()
		q := s.queue
		if s.closed && (len(q) == 0 || !s.flushBeforeClose()) { // session_close.go
			s.mu.Unlock()
			s.finish()
			return
		}
		if len(q) == 0 {
			// Drained: conflated subscriptions may send again.
			s.flushing, s.stalled, s.behind = false, false, false
			s.mu.Unlock()
			return
		}
		if s.tw != nil && !s.closed {
			if d, wait := s.tw.Pace(); wait {
				// What is queued, and what comes meanwhile, goes out
				// in one write after d, behind the readers'. The writer
				// stays this session's (flushing) while it waits. The
				// queue limit stays at burstQueueFactor until its socket
				// is full: a reader found lagging by mistake (descheduled
				// for a moment) must not be closed for what the wait held.
				s.mu.Unlock()
				s.tw.ScheduleAfter(d, s.flushFn)
				return
			}
		}
		s.queue, s.spare = s.spare[:0], nil
		for _, f := range q {
			s.queued -= len(f.Bytes)
		}
		s.mu.Unlock()

		done, err := true, error(nil)
		if s.tw != nil {
			done, err = s.tw.TryWrite(q)
		} else {
			err = s.t.Write(q)
		}
		clear(q)
		s.mu.Lock()
		s.spare = q[:0]
		s.mu.Unlock()
		if err != nil {
			s.finish() // the transport is broken; its reader side cleans up
			return
		}
		if mayWait {
			// The client counts as stalled (the queue limit at 1x) only
			// while its socket refuses data: one that took everything
			// again is reading, whether or not more was queued meanwhile
			// (a steady feed seldom leaves the queue empty here).
			s.mu.Lock()
			s.stalled = !done
			s.mu.Unlock()
		} else if !done {
			s.mu.Lock()
			s.stalled = true
			s.mu.Unlock()
			go s.writeOut(true)
			return
		}
	}
}

// finish ends the writer for good (flushing stays set: nothing is written
// after it): the session is closed, and the transport sends the close when
// one was asked for.
func (s *Session) finish() {
	s.mu.Lock()
	s.closed = true
	closing, reason := s.closing, s.reason
	s.closing = false
	s.mu.Unlock()
	if closing {
		s.t.Close(uint16(s.closeCode.Load()), reason)
	}
}

// closeAsync has the session's writer send the close and end the
// connection, after what it is writing now; it does not wait. It reports
// whether this call closed the session (the first close wins), so that a
// close is counted once however often its cause shows up again.
func (s *Session) closeAsync(code uint16, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeLocked(code, reason)
}

// isClosed reports whether the session is closed or closing: frames from
// its client are ignored (the close is on its way), none are sent.
func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// closeLocked asks for the close; s.mu is held.
func (s *Session) closeLocked(code uint16, reason string) bool {
	if s.closed {
		return false
	}
	s.closed, s.closing, s.reason = true, true, reason
	s.closeCode.CompareAndSwap(0, uint32(code))
	if !s.flushing {
		s.flushing = true
		s.t.Schedule(s.flushFn)
	} else if s.tw != nil {
		s.tw.Interrupt()
	}
	return true
}

// Register adds the session to the node's registry (heartbeats, counts,
// shutdown, disconnects and server-side subscriptions of its user), once.
// A transport that greets its client before Open (the WebSocket welcome)
// calls it first, so that a disconnect sent after the client saw its
// welcome finds the session; Open registers a session not registered yet.
func (s *Session) Register() {
	s.mu.Lock()
	done := s.listed
	s.listed = true
	s.mu.Unlock()
	if !done {
		s.node.sessions.add(s)
	}
}

// Open registers the session with the node (for heartbeats, counts and
// shutdown) and subscribes channels, each answered like a subscribe frame,
// then the channels of its token's subs claim (server-side subscriptions;
// those channels already asked for keep their since).
func (s *Session) Open(channels []string, since []*broker.Position) {
	s.OpenWith(channels, since, "")
}

// OpenWith is Open with maxRate, the max_rate query parameter of /ws and
// /sse as given, for every one of channels. A maxRate that does not parse
// refuses each channel's subscribe with its error, as a subscribe frame
// carrying it would be.
func (s *Session) OpenWith(channels []string, since []*broker.Position, maxRate string) {
	s.Register()
	s.node.connectUser(s) // online before the joins, in the webhook queues too
	rate, err := ParseMaxRate(maxRate)
	for i, ch := range channels {
		if err != nil {
			s.reject("", CodeBadRequest, err.Error(), ch)
			continue
		}
		var p *broker.Position
		if i < len(since) {
			p = since[i]
		}
		s.node.SubscribeWith(s, "", ch, SubscribeOptions{Since: p, MaxRate: rate})
	}
	s.mu.Lock()
	c := s.claims
	s.mu.Unlock()
	if c != nil && s.takesServerSubs() {
		for _, ch := range c.Subs {
			s.node.subscribe(s, subRequest{channel: ch, server: true})
		}
	}
}

// Release unsubscribes everything and unregisters the session: the
// cleanup after the connection is gone, which the transport's reader
// calls. It sends nothing (closeAsync is how the server closes a
// connection).
func (s *Session) Release() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.leaveChannels()
	s.node.disconnectUser(s)
	s.node.sessions.remove(s)
}

// leaveChannels ends every subscription of a closed session; whichever
// call takes s.subs first does it (a subscribe finishing after the close
// does not add to s.subs: commands.go).
func (s *Session) leaveChannels() {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		s.node.hub.detach(sub)
		if sub.presence != nil {
			s.node.leave(sub)
		}
	}
}

// sessionSet is the node's registry of live sessions, sharded to keep
// connects and disconnects from contending.
type sessionSet struct {
	shards [16]struct {
		mu sync.RWMutex
		m  map[*Session]struct{}
	}
	n atomic.Int64
}

func (set *sessionSet) init() {
	for i := range set.shards {
		set.shards[i].m = make(map[*Session]struct{})
	}
}

func (set *sessionSet) add(s *Session) {
	sh := &set.shards[s.id%uint64(len(set.shards))]
	sh.mu.Lock()
	sh.m[s] = struct{}{}
	sh.mu.Unlock()
	set.n.Add(1)
}

func (set *sessionSet) remove(s *Session) {
	sh := &set.shards[s.id%uint64(len(set.shards))]
	sh.mu.Lock()
	if _, ok := sh.m[s]; ok {
		delete(sh.m, s)
		set.n.Add(-1)
	}
	sh.mu.Unlock()
}

func (set *sessionSet) len() int { return int(set.n.Load()) }

// each calls f for every session; f must not block.
func (set *sessionSet) each(f func(*Session)) {
	for i := range set.shards {
		set.eachIn(i, f)
	}
}

// eachIn calls f for every session of shard i; f must not block.
func (set *sessionSet) eachIn(i int, f func(*Session)) {
	sh := &set.shards[i]
	sh.mu.RLock()
	for s := range sh.m {
		f(s)
	}
	sh.mu.RUnlock()
}

// heartbeat pings every session each interval and closes those that have
// sent nothing for HeartbeatTimeout. One loop for the whole node instead of
// a timer per connection. It takes one shard of the sessions per tick,
// the shards in turn, so each session is still pinged once an interval
// but the node's pings are spread over it: all at once, the pings of
// 10,000 connections and their 20,000 answers held every delivery up by
// 200-550 ms once an interval under load (issue 14 item 3).
func (n *Node) heartbeat() {
	defer n.wg.Done()
	shards := len(n.sessions.shards)
	t := time.NewTicker(n.opts.Heartbeat / time.Duration(shards))
	defer t.Stop()
	for k := 0; ; k = (k + 1) % shards {
		select {
		case <-n.done:
			return
		case now := <-t.C:
			deadline := now.Add(-n.opts.HeartbeatTimeout).UnixNano()
			n.sessions.eachIn(k, func(s *Session) {
				if s.isClosed() {
					return // waiting for its client's close answer
				}
				if !s.oneWay && s.lastSeen.Load() < deadline {
					if s.closeAsync(CloseNoPong, "heartbeat timeout: no pong") {
						n.countRejection(ReasonNoPong)
					}
					return
				}
				if !s.checkToken(now) {
					return
				}
				s.mu.Lock()
				s.errors = 0 // the flood limit counts per heartbeat interval
				s.mu.Unlock()
				s.send(pingFrame)
				if p, ok := s.t.(Pinger); ok {
					// Browsers answer WebSocket pings by themselves, so a
					// client that never sends a frame of its own (the
					// three-line snippet in the README) stays alive; the
					// JSON ping lets clients watch the server in turn.
					s.send(p.PingFrame())
				}
			})
		}
	}
}

// bucket is a token bucket for client publishes.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) allow(r Rate, now time.Time) bool {
	capacity := float64(r.N)
	if b.last.IsZero() {
		b.tokens = capacity
	} else {
		b.tokens += now.Sub(b.last).Seconds() * capacity / r.Per.Seconds()
		if b.tokens > capacity {
			b.tokens = capacity
		}
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
