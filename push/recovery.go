package push

import (
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/heraldpush/herald/broker"
)

// Recovery keeps every local channel's messages in order, without gaps
// and without duplicates, across what the broker does: it orders live
// messages against the history a subscribe recovers, fills gaps from
// history, resyncs every channel after a broker reconnect and tells
// subscribers (recovered: false) when messages cannot be recovered.
//
// Each channel is a small state machine (stream), guarded by its
// hubChannel.mu:
//
//	unknown --first live message--> live
//	live --message in order--> live (fanned out)
//	live --offset <= last, > live--> live (a duplicate of history: dropped)
//	live --offset < live, or new epoch--> live after a reset (recovered: false)
//	live --offset > last+1, or resync finds the broker ahead--> filling
//	filling --live messages--> filling (held, in order)
//	filling --history read (no lock held)--> live (filled, or reset) then the held messages
//
// A position that goes backwards in an epoch (the broker reissued offsets:
// Redis restored an older snapshot) is treated like a new epoch: the
// subscribers are told recovered: false, never left with a silent gap.
//
// History is never read holding a lock, nor on the broker's delivery
// goroutine: a fill runs on a goroutine of its own, one per channel at a
// time, while the channel's new live messages wait in its held list. So
// a gapped channel neither stalls the channels sharing its delivery
// queue, nor deadlocks an engine whose publisher holds a channel lock
// while it waits for room in that queue (the memory engine does).
type recovery struct {
	n *Node

	mu      sync.Mutex // guards wanted and running; taken alone
	wanted  bool       // a resync was asked for since the last pass began
	running bool       // the resync goroutine runs
}

// stream is one channel's place in the broker's stream. Guarded by
// hubChannel.mu.
type stream struct {
	// epoch and last are the position of the last message fanned out
	// (live or from history); epoch is "" until the first live message
	// or resync.
	epoch string
	last  uint64
	// live is the offset of the last message that came live from the
	// broker in this epoch (0: none since the epoch started): a live
	// message at or below it means the broker went backwards.
	live uint64
	// base is the lowest position a subscriber started from while the
	// epoch was still unknown: the first live message or a resync starts
	// the stream there.
	base broker.Position
	// filling: a fill goroutine reads history up to fillTo; live
	// messages wait in held, in arrival order.
	filling bool
	fillTo  uint64
	held    []*broker.Message
}

// fillTries bounds the history reads for one gap while the broker answers
// "unavailable" (about a second in all).
const fillTries = 5

// maxHeld bounds the live messages a channel keeps while its gap is being
// filled. Past it they are dropped and read from history with the gap.
const maxHeld = DefaultRecoveryMessages

func (r *recovery) init(n *Node) { r.n = n }

// receive takes a live message from the broker. It never waits for the
// broker: at worst it starts a fill. Takes ch.mu.
func (r *recovery) receive(ch *hubChannel, m *broker.Message) {
	ch.mu.Lock()
	r.acceptLocked(ch, m)
	ch.mu.Unlock()
}

// acceptLocked applies the state machine to one live message. Must hold
// ch.mu.
func (r *recovery) acceptLocked(ch *hubChannel, m *broker.Message) {
	st := &ch.stream
	if st.filling {
		if m.Epoch == st.epoch && len(st.held) >= maxHeld {
			// Read it from history with the gap instead of keeping it.
			st.held = nil
			st.fillTo = max(st.fillTo, m.Offset)
			return
		}
		st.held = append(st.held, m)
		return
	}
	switch {
	case st.epoch == "":
		st.epoch, st.last = m.Epoch, m.Offset-1
		if st.base.Epoch == m.Epoch && st.base.Offset < st.last {
			// Messages after the first subscriber's start went missing
			// before the first live one: fill them.
			st.last = st.base.Offset
		}
	case m.Epoch != st.epoch:
		// The channel's history was lost (new epoch): nobody can recover
		// across it. Tell subscribers, then go on in the new epoch.
		r.resetLocked(ch, m.Epoch, m.Offset-1)
	case st.live != 0 && m.Offset < st.live:
		// The broker went backwards in the epoch: it reissues offsets it
		// had given other messages. Those are lost; say so.
		r.n.log.Warn("channel position went backwards", "channel", ch.name, "offset", m.Offset, "last", st.live)
		r.resetLocked(ch, m.Epoch, m.Offset-1)
	case m.Offset <= st.last:
		// Already fanned out from history (or redelivered). Subscribers
		// still buffering their subscribe may need it: their buffers are
		// cut at their own start when they go live.
		r.n.hub.bufferLocked(ch, m)
		st.live = max(st.live, m.Offset)
		return
	}
	if m.Offset > st.last+1 {
		st.filling, st.fillTo = true, m.Offset-1
		st.held = append(st.held[:0], m)
		r.startFillLocked(ch)
		return
	}
	st.last, st.live = m.Offset, m.Offset
	r.n.hub.fanOutLocked(ch, m)
}

// resetLocked starts the channel over at (epoch, offset) and tells its
// subscribers. Must hold ch.mu.
func (r *recovery) resetLocked(ch *hubChannel, epoch string, offset uint64) {
	st := &ch.stream
	st.epoch, st.last, st.live = epoch, offset, 0
	r.n.hub.resetLocked(ch, epoch, offset)
}

// startFillLocked starts the channel's fill goroutine. Must hold ch.mu,
// with st.filling just set.
func (r *recovery) startFillLocked(ch *hubChannel) {
	r.n.stats.Gaps.Add(1)
	r.n.wg.Add(1)
	go func() {
		defer r.n.wg.Done()
		r.fill(ch)
	}()
}

// fill reads the channel's gap from history, holding no lock while it
// reads, then fans out what it read and the held live messages. It runs
// until the channel is live again (a held message may open a new gap).
func (r *recovery) fill(ch *hubChannel) {
	for {
		ch.mu.Lock()
		st := &ch.stream
		if st.fillTo <= st.last {
			held := st.held
			st.held, st.filling = nil, false
			for i, m := range held {
				r.acceptLocked(ch, m)
				if st.filling {
					// A new gap: its fill goroutine takes the rest.
					st.held = append(st.held, held[i+1:]...)
					break
				}
			}
			ch.mu.Unlock()
			return
		}
		epoch, from, to := st.epoch, st.last, st.fillTo
		ch.mu.Unlock()

		hist, err := r.readGap(ch.name, epoch, from, to)

		ch.mu.Lock()
		r.applyFillLocked(ch, epoch, from, to, hist, err)
		ch.mu.Unlock()
	}
}

// readGap reads the messages after from up to to, retrying a little while
// the broker answers "unavailable" (it may still be loading its data).
// It holds no lock.
func (r *recovery) readGap(channel, epoch string, from, to uint64) (broker.History, error) {
	q := broker.HistoryQuery{
		Since: broker.Position{Epoch: epoch, Offset: from},
		Limit: int(min(to-from, DefaultRecoveryMessages)),
	}
	for try := 1; ; try++ {
		ctx, cancel := r.n.recoveryCtx()
		hist, err := r.n.history(ctx, channel, q)
		cancel()
		if err == nil || !errors.Is(err, broker.ErrUnavailable) || try == fillTries {
			return hist, err
		}
		select {
		case <-r.n.done:
			return hist, err
		case <-time.After(time.Duration(try) * 100 * time.Millisecond):
		}
	}
}

// applyFillLocked fans out a gap's messages read from history, or resets
// the channel when they are not all there. Only the fill goroutine moves
// the stream while it is filling, so (epoch, from) still holds. Must hold
// ch.mu.
func (r *recovery) applyFillLocked(ch *hubChannel, epoch string, from, to uint64, hist broker.History, err error) {
	want := to - from
	ok := err == nil && hist.Position.Epoch == epoch && uint64(len(hist.Messages)) == want
	for i := 0; ok && i < len(hist.Messages); i++ {
		ok = hist.Messages[i].Offset == from+1+uint64(i)
	}
	if !ok {
		r.n.log.Warn("gap not recoverable", "channel", ch.name, "from", from+1, "to", to, "err", err)
		if err == nil && hist.Position.Epoch != epoch {
			r.resetLocked(ch, hist.Position.Epoch, hist.Position.Offset)
			// Held messages of the old epoch are gone with it; those of the
			// new one go on from here.
			st := &ch.stream
			kept := st.held[:0]
			for _, m := range st.held {
				if m.Epoch != epoch {
					kept = append(kept, m)
				}
			}
			st.held, st.fillTo = kept, 0
			return
		}
		r.resetLocked(ch, epoch, to)
		return
	}
	st := &ch.stream
	for i := range hist.Messages {
		m := &hist.Messages[i]
		st.last = m.Offset
		r.n.hub.fanOutLocked(ch, m)
	}
}

// activate queues the subscribe reply, then recovered history or the
// snapshot, then whatever arrived live meanwhile, and switches sub to live
// delivery: the history merge of a subscribe. Takes ch.mu, which orders it
// against live messages.
func (r *recovery) activate(sub *subscription, id json.Number, since *broker.Position, hist broker.History, snapshot, server bool) {
	ch := sub.ch
	pos := hist.Position
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if st := &ch.stream; st.epoch == "" {
		if st.base.Epoch != pos.Epoch || pos.Offset < st.base.Offset {
			st.base = pos
		}
	}
	s := sub.s
	reply := subscribedFrame{Type: "subscribed", ID: id, Channel: ch.name, Epoch: pos.Epoch, Offset: pos.Offset, Server: server}
	sub.skip = pos.Offset
	// Recovered history and the snapshot are not rate-capped; a
	// conflating subscriber that is behind gets their latest only.
	var now int64
	var skipped uint64
	if sub.th != nil {
		now = nowTick()
	}
	deliver := func(frame *Frame, offset uint64, capped bool) {
		if sub.th == nil {
			s.send(frame)
			return
		}
		r.n.hub.offerLocked(sub, frame, offset, now, capped, &skipped)
	}
	switch {
	case since != nil:
		recovered := hist.Complete
		reply.Recovered = &recovered
		s.send(encode(reply))
		if recovered {
			for i := range hist.Messages {
				if m := &hist.Messages[i]; m.Offset > since.Offset {
					deliver(messageFrame(m, false), m.Offset, false)
				}
			}
		}
	case snapshot && len(hist.Messages) > 0:
		s.send(encode(reply))
		deliver(messageFrame(&hist.Messages[0], true), hist.Messages[0].Offset, false)
	default:
		s.send(encode(reply))
	}
	// What came live meanwhile is live: capped.
	for _, p := range sub.buf {
		if p.offset > sub.skip {
			deliver(p.frame, p.offset, true)
		}
	}
	if skipped > 0 {
		r.n.stats.Skipped.Add(skipped)
	}
	sub.buf = nil
	sub.buffering = false
}

// requestResync asks for every local channel to be checked against the
// broker. Requests while a resync runs are coalesced into one more pass:
// a failover that reconnects many shard connections at once costs one or
// two passes, not one each.
func (r *recovery) requestResync() {
	r.mu.Lock()
	r.wanted = true
	start := !r.running
	r.running = true
	r.mu.Unlock()
	if !start {
		return
	}
	r.n.wg.Add(1)
	go func() {
		defer r.n.wg.Done()
		r.resyncLoop()
	}()
}

// isRunning reports whether a resync runs (for tests).
func (r *recovery) isRunning() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// resyncLoop runs passes while they are asked for.
func (r *recovery) resyncLoop() {
	for {
		r.mu.Lock()
		if !r.wanted {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.wanted = false
		r.mu.Unlock()
		r.resync()
	}
}

// resync is one pass over every channel. Channels whose position could not
// be read yet (the broker is still loading, or flapping) are tried again
// for a while; a new request cuts the wait short with a full pass.
func (r *recovery) resync() {
	var chans []*hubChannel
	r.n.hub.eachChannel(func(ch *hubChannel) bool { chans = append(chans, ch); return true })
	pending := r.resyncOnce(chans)
	for wait := 100 * time.Millisecond; len(pending) > 0 && wait < 30*time.Second; wait *= 2 {
		select {
		case <-r.n.done:
			return
		case <-time.After(wait):
		}
		r.mu.Lock()
		again := r.wanted
		r.mu.Unlock()
		if again {
			return // the next pass checks every channel
		}
		pending = r.resyncOnce(pending)
	}
	for _, ch := range pending {
		r.n.log.Warn("resync gave up: channel position unreadable", "channel", ch.name)
	}
}

// resyncOnce checks chans and returns those it could not check.
func (r *recovery) resyncOnce(chans []*hubChannel) (failed []*hubChannel) {
	for _, ch := range chans {
		ch.mu.Lock()
		before := broker.Position{Epoch: ch.stream.epoch, Offset: ch.stream.last}
		ch.mu.Unlock()
		ctx, cancel := r.n.recoveryCtx()
		hist, err := r.n.history(ctx, ch.name, broker.HistoryQuery{})
		cancel()
		if err != nil {
			r.n.log.Debug("resync: position read failed", "channel", ch.name, "err", err)
			failed = append(failed, ch)
			continue
		}
		ch.mu.Lock()
		if !r.resyncLocked(ch, before, hist.Position) {
			failed = append(failed, ch)
		}
		ch.mu.Unlock()
	}
	return failed
}

// resyncLocked compares the broker's position pos, read without the lock,
// with the stream. before is the stream's position when the read began:
// live messages may have moved it on since, so only a pos behind before
// means the broker went backwards. It reports false when the channel
// must be checked again later (a fill is running). Must hold ch.mu.
func (r *recovery) resyncLocked(ch *hubChannel, before, pos broker.Position) bool {
	st := &ch.stream
	if st.filling {
		return false
	}
	if st.epoch == "" {
		if st.base.Epoch == "" {
			return true // nobody has started: the first live message decides
		}
		st.epoch, st.last = st.base.Epoch, st.base.Offset
		before = st.base
	}
	switch {
	case st.epoch != before.Epoch:
		// A live message of another epoch came meanwhile and reset the
		// stream; pos may be older than it.
	case pos.Epoch != st.epoch:
		r.resetLocked(ch, pos.Epoch, pos.Offset)
	case pos.Offset < before.Offset:
		// The broker lost messages it had accepted (a restart without
		// durable persistence, or from an older snapshot): say so rather
		// than drop the reused offsets as duplicates.
		r.resetLocked(ch, pos.Epoch, pos.Offset)
	case pos.Offset > st.last:
		st.filling, st.fillTo = true, pos.Offset
		st.held = st.held[:0]
		r.startFillLocked(ch)
	}
	return true
}
