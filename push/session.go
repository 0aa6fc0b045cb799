package push

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// Session is one WebSocket connection. Its memory is kept small: a hub
// with 10,000 idle connections pays for 10,000 of these.
type Session struct {
	hub  *Hub
	conn *gws.Conn
	id   uint64
	// batch packs several pending messages into one frame, separated by
	// '\n' (the client asked for it with ?batch=1).
	batch bool
	user  string

	opened  int64    // unix nanoseconds
	initial []string // channels from the query string, subscribed on open

	lastSeen atomic.Int64 // unix nanoseconds of the last frame received

	mu       sync.Mutex
	queue    [][]byte // frames waiting for the writer
	spare    [][]byte // the writer's previous queue, reused
	queued   int      // bytes queued or being written
	flushing bool     // a flush is scheduled on the gws write queue
	closed   bool
	subs     map[string]*subscription
	limiter  *bucket
	errors   int // recent protocol errors, for flood control

	flushFn func() // s.flush, bound once so that scheduling it never allocates
}

func newSession(h *Hub, conn *gws.Conn, batch bool) *Session {
	s := &Session{hub: h, conn: conn, id: h.nextID.Add(1), batch: batch}
	s.flushFn = s.flush
	now := time.Now().UnixNano()
	s.opened = now
	s.lastSeen.Store(now)
	return s
}

// ID is the session's client id, unique on this node.
func (s *Session) ID() uint64 { return s.id }

// send queues frame for the client without blocking. A session whose
// queue is past the hub's MaxQueueBytes is closed as a slow consumer:
// everyone else goes on. frame is shared and must not be modified.
func (s *Session) send(frame []byte) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.queued+len(frame) > s.hub.opts.MaxQueueBytes && s.queued > 0 {
		s.closed = true
		s.mu.Unlock()
		s.hub.stats.SlowConsumers.Add(1)
		s.hub.log.Debug("slow consumer", "client", s.id, "queued", s.queued)
		go s.close(CloseSlowConsumer, "slow consumer: send queue full")
		return
	}
	s.queue = append(s.queue, frame)
	s.queued += len(frame)
	if !s.flushing {
		s.flushing = true
		s.conn.Async(s.flushFn)
	}
	s.mu.Unlock()
}

// flush writes every queued frame. It runs on the connection's gws write
// queue, so writes never interleave.
func (s *Session) flush() {
	var buf []byte
	for {
		s.mu.Lock()
		q := s.queue
		if len(q) == 0 || s.closed {
			s.flushing = false
			s.mu.Unlock()
			return
		}
		s.queue, s.spare = s.spare[:0], nil
		s.mu.Unlock()

		n := 0 // bytes written by a batch write, accounted after it
		var err error
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.hub.opts.WriteTimeout))
		if s.batch && len(q) > 1 {
			buf = buf[:0]
			for i, f := range q {
				if i > 0 {
					buf = append(buf, '\n')
				}
				buf = append(buf, f...)
				n += len(f)
			}
			err = s.conn.WriteMessage(gws.OpcodeText, buf)
		} else {
			for _, f := range q {
				if err = s.conn.WriteMessage(gws.OpcodeText, f); err != nil {
					break
				}
				// A frame leaves the count as soon as the socket has it:
				// a client that keeps up must not look slow while the
				// rest of a long run is still being written.
				s.mu.Lock()
				s.queued -= len(f)
				s.mu.Unlock()
			}
		}
		clear(q)
		s.mu.Lock()
		s.queued -= n
		s.spare = q[:0]
		if err != nil {
			// gws has closed the connection; OnClose cleans up.
			s.flushing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// close sends a close frame with code and reason, then closes the socket.
// It may block up to a write timeout, so callers on shared paths use
// closeAsync.
func (s *Session) close(code uint16, reason string) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	// A stuck writer holds the socket; a short deadline frees it.
	_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = s.conn.WriteClose(code, []byte(reason))
}

func (s *Session) closeAsync(code uint16, reason string) { go s.close(code, reason) }

// sessionSet is the hub's registry of live sessions, sharded to keep
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
		sh := &set.shards[i]
		sh.mu.RLock()
		for s := range sh.m {
			f(s)
		}
		sh.mu.RUnlock()
	}
}

// heartbeat pings every session each interval and closes those that have
// sent nothing for HeartbeatTimeout. One loop for the whole hub instead of
// a timer per connection.
func (h *Hub) heartbeat() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case now := <-t.C:
			deadline := now.Add(-h.opts.HeartbeatTimeout).UnixNano()
			h.sessions.each(func(s *Session) {
				if s.lastSeen.Load() < deadline {
					s.closeAsync(CloseNoPong, "heartbeat timeout: no pong")
					return
				}
				s.mu.Lock()
				s.errors = 0 // the flood limit counts per heartbeat interval
				s.mu.Unlock()
				s.send(pingFrame)
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
