package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"runtime"
	"sync"
	"time"
)

// Memory is the in-process engine: one node, no persistence. It keeps
// offsets, epochs and history exactly like the Redis engine, so that
// everything above it behaves the same on one node.
type Memory struct {
	handler Handler
	now     func() time.Time

	mu       sync.Mutex
	channels map[string]*memChannel
	closed   bool

	store memStore
	pres  memPresence // presence sets and event queues (memory_presence.go)

	// Deliveries go through a few ordered queues, one per channel hash, so
	// that publishers never call into the hub while holding engine locks
	// and a channel's messages keep their order.
	queues []chan *Message
	done   chan struct{}
	wg     sync.WaitGroup
}

var (
	_ Broker         = (*Memory)(nil)
	_ BatchPublisher = (*Memory)(nil)
)

type memChannel struct {
	mu          sync.Mutex
	epoch       string
	offset      uint64
	history     []Message // oldest first, at most Retention.Size
	expires     time.Time
	subscribed  bool
	lastPublish time.Time
	// keys remembers the idempotency keys published within their window
	// (memory_idem.go); they outlive an epoch restart, as the first
	// publish's answer does.
	keys map[string]idemEntry
}

// restartLocked starts the channel over in a new epoch after its state
// expired. It resets the fields one by one: assigning a whole memChannel
// would also overwrite the mutex the caller holds. ch.mu is held.
func (ch *memChannel) restartLocked(now time.Time) {
	ch.epoch = NewEpoch()
	ch.offset = 0
	ch.history = nil
	ch.expires = now.Add(DefaultTTL)
	ch.lastPublish = time.Time{}
}

// memoryQueueLen bounds each delivery queue; a full queue makes publishers
// wait, which is the back-pressure we want from an in-process engine.
const memoryQueueLen = 4096

// NewMemory returns a memory engine that delivers to h.
func NewMemory(h Handler) *Memory {
	m := &Memory{
		handler:  h,
		now:      time.Now,
		channels: make(map[string]*memChannel),
		done:     make(chan struct{}),
	}
	m.store.init()
	n := runtime.GOMAXPROCS(0)
	m.queues = make([]chan *Message, n)
	for i := range m.queues {
		q := make(chan *Message, memoryQueueLen)
		m.queues[i] = q
		m.wg.Add(1)
		go m.deliver(q)
	}
	m.wg.Add(1)
	go m.sweep()
	return m
}

func (m *Memory) deliver(q chan *Message) {
	defer m.wg.Done()
	for msg := range q {
		m.handler.HandleMessage(msg)
	}
}

// sweep drops channels whose state expired, as Redis would expire their
// keys; a later publish starts a new epoch.
func (m *Memory) sweep() {
	defer m.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
		}
		now := m.now()
		m.mu.Lock()
		for name, ch := range m.channels {
			ch.mu.Lock()
			ch.expireKeysLocked(now)
			if !ch.subscribed && now.After(ch.expires) && len(ch.keys) == 0 {
				delete(m.channels, name)
			}
			ch.mu.Unlock()
		}
		m.mu.Unlock()
		m.store.expire(now)
	}
}

func (m *Memory) channel(name string) (*memChannel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	ch := m.channels[name]
	if ch == nil {
		ch = &memChannel{epoch: NewEpoch(), expires: m.now().Add(DefaultTTL)}
		m.channels[name] = ch
	}
	return ch, nil
}

func (m *Memory) queue(channel string) chan *Message {
	h := fnv.New32a()
	h.Write([]byte(channel))
	return m.queues[h.Sum32()%uint32(len(m.queues))]
}

// Publish implements Broker.
func (m *Memory) Publish(ctx context.Context, channel string, data json.RawMessage, r Retention) (Position, error) {
	res := m.publish(ctx, Publication{Channel: channel, Data: data, Retention: r})
	return res.Position, res.Err
}

// publish is one publication, its idempotency check included, under the
// channel's lock.
func (m *Memory) publish(ctx context.Context, p Publication) PublishResult {
	ch, err := m.channel(p.Channel)
	if err != nil {
		return PublishResult{Err: err}
	}
	now := m.now()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if p.IdempotencyKey != "" {
		if pos, ok := ch.seenLocked(p.IdempotencyKey, now); ok {
			return PublishResult{Position: pos, Duplicate: true}
		}
	}
	if now.After(ch.expires) {
		// The channel's state expired: start over in a new epoch.
		ch.restartLocked(now)
	}
	ch.offset++
	r := p.Retention
	msg := Message{Channel: p.Channel, Offset: ch.offset, Epoch: ch.epoch, Data: p.Data, Time: now.UnixMilli()}
	ttl := r.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	ch.expires = now.Add(ttl)
	ch.lastPublish = now
	if r.Size > 0 {
		if len(ch.history) >= r.Size {
			n := copy(ch.history, ch.history[len(ch.history)-r.Size+1:])
			ch.history = ch.history[:n]
		}
		ch.history = append(ch.history, msg)
	} else {
		ch.history = nil
	}
	pos := Position{Epoch: ch.epoch, Offset: ch.offset}
	if p.IdempotencyKey != "" {
		ch.rememberLocked(p.IdempotencyKey, pos, now.Add(IdempotencyWindowOf(p)))
	}
	// Enqueue under the channel lock so that queue order is offset order.
	// The queued copy is made here, so that a publish nobody listens to
	// allocates no Message.
	if ch.subscribed {
		out := new(Message)
		*out = msg
		select {
		case m.queue(p.Channel) <- out:
		case <-ctx.Done():
			// The message is published (it has an offset and is in
			// history); only its live delivery could not be queued. Wait
			// for room instead of losing it.
			m.queue(p.Channel) <- out
		}
	}
	return PublishResult{Position: pos}
}

// PublishBatch implements BatchPublisher. In process a batch costs what
// its publishes cost, so it is a loop; an engine closed midway fails the
// rest with ErrClosed.
func (m *Memory) PublishBatch(ctx context.Context, pubs []Publication) []PublishResult {
	out := make([]PublishResult, len(pubs))
	for i, p := range pubs {
		out[i] = m.publish(ctx, p)
	}
	return out
}

// Subscribe implements Broker. It marks the channels holding the engine
// lock, as the sweep does when it drops expired channels, so that a
// channel cannot be swept between being found and being marked.
func (m *Memory) Subscribe(ctx context.Context, channels ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	for _, name := range channels {
		ch := m.channels[name]
		if ch == nil {
			ch = &memChannel{epoch: NewEpoch(), expires: m.now().Add(DefaultTTL)}
			m.channels[name] = ch
		}
		ch.mu.Lock()
		ch.subscribed = true
		ch.mu.Unlock()
	}
	return nil
}

// Unsubscribe implements Broker.
func (m *Memory) Unsubscribe(ctx context.Context, channels ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range channels {
		if ch := m.channels[name]; ch != nil {
			ch.mu.Lock()
			ch.subscribed = false
			ch.mu.Unlock()
		}
	}
	return nil
}

// History implements Broker.
func (m *Memory) History(ctx context.Context, channel string, q HistoryQuery) (History, error) {
	ch, err := m.channel(channel)
	if err != nil {
		return History{}, err
	}
	now := m.now()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if now.After(ch.expires) {
		ch.restartLocked(now)
	}
	return historyOf(ch.history, Position{Epoch: ch.epoch, Offset: ch.offset}, q), nil
}

// historyOf answers q from hist, the retained messages (oldest first) of a
// channel at position pos. Engines share it so they agree on the edge cases.
func historyOf(hist []Message, pos Position, q HistoryQuery) History {
	h := History{Position: pos}
	since := q.Since.Offset
	sameEpoch := q.Since.Epoch == "" || q.Since.Epoch == pos.Epoch
	if !sameEpoch {
		since = 0
	}
	// Complete: every message after since is still retained.
	oldest := pos.Offset + 1
	if len(hist) > 0 {
		oldest = hist[0].Offset
	}
	h.Complete = sameEpoch && q.Since.Epoch != "" && since <= pos.Offset && since+1 >= oldest
	if q.Limit <= 0 {
		return h
	}
	var sel []Message
	for i := range hist {
		if hist[i].Offset > since {
			sel = hist[i:]
			break
		}
	}
	if q.Reverse {
		out := make([]Message, 0, min(q.Limit, len(sel)))
		for i := len(sel) - 1; i >= 0 && len(out) < q.Limit; i-- {
			out = append(out, sel[i])
		}
		h.Messages = out
		return h
	}
	if q.Since.Epoch == "" && q.Since.Offset == 0 && len(sel) > q.Limit {
		// No since: the newest Limit messages, oldest first.
		sel = sel[len(sel)-q.Limit:]
	}
	if len(sel) > q.Limit {
		sel = sel[:q.Limit]
		h.Complete = false
	}
	h.Messages = append([]Message(nil), sel...)
	return h
}

// Close implements Broker.
func (m *Memory) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	close(m.done)
	// Publishers hold a channel lock while they enqueue; take each lock so
	// that none is mid-send when the queues close.
	m.mu.Lock()
	for _, ch := range m.channels {
		ch.mu.Lock()
		ch.subscribed = false
		ch.mu.Unlock()
	}
	m.mu.Unlock()
	for _, q := range m.queues {
		close(q)
	}
	m.wg.Wait()
	return nil
}

// NewEpoch returns a new random epoch id.
func NewEpoch() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
