package broker

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"sync"
	"time"
)

var _ Presence = (*Memory)(nil)

// memPresence is the memory engine's Presence: the same sets and queues
// as the Redis engine's, under one lock (one process, so every step is
// atomic by holding it). Its zero value is ready.
type memPresence struct {
	mu     sync.Mutex
	sets   map[string]*memSet
	queues map[string]*memQueue
}

type memSet struct {
	conns   map[string]memConn   // connection -> its key and expiry
	counts  map[string]int       // key -> live connections
	values  map[string][]byte    // key -> value
	linger  map[string]time.Time // key -> when its last connection left
	expires time.Time            // latest join or refresh + TTL
}

type memConn struct {
	key     string
	expires time.Time
}

type memQueue struct {
	events  [][]byte
	dropped int64
	owner   string
	until   time.Time
}

func (p *memPresence) set(name string, create bool) *memSet {
	if p.sets == nil {
		p.sets = make(map[string]*memSet)
	}
	s := p.sets[name]
	if s == nil && create {
		s = &memSet{conns: map[string]memConn{}, counts: map[string]int{}, values: map[string][]byte{}, linger: map[string]time.Time{}}
		p.sets[name] = s
	}
	return s
}

func (p *memPresence) queue(name string) *memQueue {
	if p.queues == nil {
		p.queues = make(map[string]*memQueue)
	}
	q := p.queues[name]
	if q == nil {
		q = &memQueue{}
		p.queues[name] = q
	}
	return q
}

// recordLocked appends the n-th event of ev for key's user. Must hold p.mu.
func (p *memPresence) recordLocked(ev *Event, key string, n int) {
	user := KeyUser(key)
	if ev == nil || user == "" {
		return
	}
	body, _ := json.Marshal(EventJSON{
		ID: ev.IDPrefix + "-" + strconv.Itoa(n), Type: ev.Type, User: user,
		Channel: ev.Channel, Time: EventTime(ev.Time),
	})
	for _, name := range ev.Queues {
		q := p.queue(name)
		if ev.MaxLen > 0 && len(q.events) >= ev.MaxLen {
			q.dropped++
			continue
		}
		q.events = append(q.events, body)
	}
}

// departLocked removes key from s. Must hold p.mu.
func (s *memSet) departLocked(key string) PresenceEntry {
	e := PresenceEntry{Key: key, Value: s.values[key]}
	delete(s.values, key)
	delete(s.linger, key)
	return e
}

// PresenceJoin implements Presence.
func (m *Memory) PresenceJoin(ctx context.Context, op PresenceOp) (bool, error) {
	m.pres.mu.Lock()
	defer m.pres.mu.Unlock()
	return m.joinLocked(op), nil
}

// PresenceLeave implements Presence.
func (m *Memory) PresenceLeave(ctx context.Context, op PresenceOp) (bool, error) {
	m.pres.mu.Lock()
	defer m.pres.mu.Unlock()
	return m.leaveLocked(op), nil
}

// PresenceApply implements Presence.
func (m *Memory) PresenceApply(ctx context.Context, ops []PresenceOp) ([]bool, error) {
	m.pres.mu.Lock()
	defer m.pres.mu.Unlock()
	out := make([]bool, len(ops))
	for i, op := range ops {
		if op.Leave {
			out[i] = m.leaveLocked(op)
		} else {
			out[i] = m.joinLocked(op)
		}
	}
	return out, nil
}

// joinLocked is PresenceJoin. Must hold m.pres.mu.
func (m *Memory) joinLocked(op PresenceOp) bool {
	p := &m.pres
	now := m.now()
	s := p.set(op.Set, true)
	s.expires = maxTime(s.expires, now.Add(op.TTL))
	if c, ok := s.conns[op.Conn]; ok {
		c.expires = now.Add(op.TTL)
		s.conns[op.Conn] = c
		return false
	}
	s.conns[op.Conn] = memConn{key: op.Key, expires: now.Add(op.TTL)}
	s.counts[op.Key]++
	if s.counts[op.Key] > 1 {
		return false
	}
	if _, lingering := s.linger[op.Key]; lingering {
		delete(s.linger, op.Key)
		return false
	}
	if len(op.Value) > 0 {
		s.values[op.Key] = append([]byte(nil), op.Value...)
	}
	p.recordLocked(op.Event, op.Key, 1)
	return true
}

// leaveLocked is PresenceLeave. Must hold m.pres.mu.
func (m *Memory) leaveLocked(op PresenceOp) bool {
	p := &m.pres
	s := p.set(op.Set, false)
	if s == nil {
		return false
	}
	c, ok := s.conns[op.Conn]
	if !ok {
		return false
	}
	delete(s.conns, op.Conn)
	if !s.dropConnLocked(c.key) {
		return false
	}
	if op.Linger > 0 {
		s.linger[c.key] = m.now()
		return false
	}
	s.departLocked(c.key)
	p.recordLocked(op.Event, c.key, 1)
	p.dropEmptyLocked(op.Set, s)
	return true
}

// dropConnLocked counts one connection of key out and reports whether it
// was its last. Must hold the engine's presence lock.
func (s *memSet) dropConnLocked(key string) bool {
	s.counts[key]--
	if s.counts[key] > 0 {
		return false
	}
	delete(s.counts, key)
	return true
}

func (p *memPresence) dropEmptyLocked(name string, s *memSet) {
	if len(s.counts) == 0 && len(s.linger) == 0 {
		delete(p.sets, name)
	}
}

// PresenceRefresh implements Presence.
func (m *Memory) PresenceRefresh(ctx context.Context, set string, conns []string, ttl time.Duration) ([]string, error) {
	p := &m.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.set(set, false)
	if s == nil {
		return append([]string(nil), conns...), nil
	}
	exp := m.now().Add(ttl)
	s.expires = maxTime(s.expires, exp)
	var missing []string
	for _, id := range conns {
		c, ok := s.conns[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		c.expires = exp
		s.conns[id] = c
	}
	return missing, nil
}

// PresenceReap implements Presence.
func (m *Memory) PresenceReap(ctx context.Context, set string, linger time.Duration, ev *Event) ([]PresenceEntry, error) {
	p := &m.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.set(set, false)
	if s == nil {
		return nil, nil
	}
	now := m.now()
	var gone []PresenceEntry
	// Sorted so that the events of one reap come in a stable order.
	late := make([]string, 0)
	for id, c := range s.conns {
		if now.After(c.expires) {
			late = append(late, id)
		}
	}
	sort.Strings(late)
	for _, id := range late {
		c := s.conns[id]
		delete(s.conns, id)
		if !s.dropConnLocked(c.key) {
			continue
		}
		if linger > 0 {
			s.linger[c.key] = now
			continue
		}
		gone = append(gone, s.departLocked(c.key))
	}
	if linger > 0 {
		var due []string
		for key, at := range s.linger {
			if !now.Before(at.Add(linger)) {
				due = append(due, key)
			}
		}
		sort.Strings(due)
		for _, key := range due {
			gone = append(gone, s.departLocked(key))
		}
	}
	for i, e := range gone {
		p.recordLocked(ev, e.Key, i+1)
	}
	p.dropEmptyLocked(set, s)
	return gone, nil
}

// PresenceCount implements Presence.
func (m *Memory) PresenceCount(ctx context.Context, set string) (int, error) {
	m.pres.mu.Lock()
	defer m.pres.mu.Unlock()
	s := m.pres.set(set, false)
	if s == nil {
		return 0, nil
	}
	return len(s.counts) + len(s.linger), nil
}

// PresencePage implements Presence. It sorts the set's keys on each call:
// the memory engine serves one node, where a page of even 20,000 keys
// sorts in a few milliseconds.
func (m *Memory) PresencePage(ctx context.Context, set, cursor string, limit int) ([]PresenceEntry, bool, error) {
	m.pres.mu.Lock()
	defer m.pres.mu.Unlock()
	s := m.pres.set(set, false)
	if s == nil || limit <= 0 {
		return nil, false, nil
	}
	keys := make([]string, 0, len(s.counts)+len(s.linger))
	for k := range s.counts {
		if k > cursor {
			keys = append(keys, k)
		}
	}
	for k := range s.linger {
		if k > cursor {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	more := len(keys) > limit
	if more {
		keys = keys[:limit]
	}
	out := make([]PresenceEntry, len(keys))
	for i, k := range keys {
		out[i] = PresenceEntry{Key: k, Value: s.values[k]}
	}
	return out, more, nil
}

// PresenceStale implements Presence.
func (m *Memory) PresenceStale(ctx context.Context, limit int) ([]string, error) {
	m.pres.mu.Lock()
	defer m.pres.mu.Unlock()
	now := m.now()
	var out []string
	for name, s := range m.pres.sets {
		if now.After(s.expires) && len(out) < limit {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// QueueLease implements Presence.
func (m *Memory) QueueLease(ctx context.Context, queue, owner string, ttl time.Duration) (bool, error) {
	m.pres.mu.Lock()
	defer m.pres.mu.Unlock()
	q, now := m.pres.queue(queue), m.now()
	if q.owner != owner && now.Before(q.until) {
		return false, nil
	}
	q.owner, q.until = owner, now.Add(ttl)
	return true, nil
}

// QueuePeek implements Presence.
func (m *Memory) QueuePeek(ctx context.Context, queue string, n int) ([][]byte, error) {
	m.pres.mu.Lock()
	defer m.pres.mu.Unlock()
	q := m.pres.queue(queue)
	n = min(n, len(q.events))
	return append([][]byte(nil), q.events[:n]...), nil
}

// QueueTrim implements Presence.
func (m *Memory) QueueTrim(ctx context.Context, queue, owner string, n int) error {
	m.pres.mu.Lock()
	defer m.pres.mu.Unlock()
	q := m.pres.queue(queue)
	if q.owner != owner || m.now().After(q.until) {
		return ErrLeaseLost
	}
	n = min(n, len(q.events))
	q.events = append([][]byte(nil), q.events[n:]...)
	return nil
}

// QueueStats implements Presence.
func (m *Memory) QueueStats(ctx context.Context, queue string) (QueueStats, error) {
	m.pres.mu.Lock()
	defer m.pres.mu.Unlock()
	q := m.pres.queue(queue)
	return QueueStats{Len: int64(len(q.events)), Dropped: q.dropped}, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
