package push

import (
	"math"
	"strconv"
)

// Throttled subscriptions: max_rate (a subscription asks for at most N
// messages a second on its channel) and conflation (a conflate: true
// namespace's subscriber whose session fell behind gets the latest
// message only, conflate.go). Both keep, instead of queueing, the newest
// message the subscriber has not had and count the ones it replaced; the
// rate wheel (ratewheel.go) hands it over when its tick comes, carrying
// "skipped": N. Offsets stay the broker's: a subscriber that skipped N
// sees the offset jump by N+1.
//
// No encoding per subscriber: the fan-out's frame, encoded once, is what
// a throttled subscriber gets when it is let through at once, and what it
// keeps while held (a slice header, no copy). A frame with "skipped" is
// made at the wheel's tick, once per distinct (message, skipped) of the
// channel at that tick: the fan-out's frame with `,"skipped":N` put
// before its closing brace. Subscribers of a channel with the same
// max_rate are due on the same ticks (their slots are aligned to the
// absolute clock, not to when each subscribed), so in a steady stream
// they hold the same message with the same count and share one frame:
// the cost is one copy of the frame per channel and rate per tick,
// whatever the number of subscribers.
//
// The other way, a per-subscriber suffix written by the transport, would
// make every transport (and the shared queue entry) know about skipped
// counts, for a saving of one copy per tick.

// MaxRate and MinRate bound a subscription's max_rate, in messages per
// second: the rate wheel delivers at most one message per tick (10 ms),
// and the slowest rate is one message every 100 s.
const (
	MaxRate = float64(1e9 / wheelTick)
	MinRate = 0.01
)

// conflatePoll is how often, in ticks, a conflated subscription looks
// whether its session's queue has drained (50 ms).
const conflatePoll = 5

// ParseMaxRate reads the max_rate query parameter of /ws and /sse: a
// number of messages per second, "" or "0" for no cap.
func ParseMaxRate(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	r, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, maxRateError(s)
	}
	if err := CheckMaxRate(r); err != nil {
		return 0, err
	}
	return r, nil
}

// CheckMaxRate validates a max_rate: 0 (no cap), or MinRate-MaxRate
// messages per second.
func CheckMaxRate(r float64) error {
	if r == 0 || (r >= MinRate && r <= MaxRate) {
		return nil
	}
	return maxRateError(strconv.FormatFloat(r, 'g', -1, 64))
}

func maxRateError(s string) error {
	return Errorf(CodeBadRequest, "max_rate %s: want messages per second from %g to %g (0 or none: every message)", truncate(s, 32), MinRate, MaxRate)
}

// rateTicks is the number of ticks between two deliveries at rate r:
// rounded up, so that a subscriber never gets more than it asked for.
func rateTicks(r float64) int64 {
	return max(1, int64(math.Ceil(MaxRate/r-1e-9)))
}

// throttle is a throttled subscription's state. Guarded by its channel's
// hubChannel.mu.
type throttle struct {
	every    int64 // ticks between deliveries; 0: no max_rate (conflation only)
	conflate bool  // the namespace conflates: a behind session gets the latest only
	last     int64 // tick of the last capped delivery
	due      int64 // tick the wheel looks at this subscription; 0: not in the wheel
	// frame is the newest message not delivered yet (nil: none), offset
	// its offset; skipped counts the messages of the channel this
	// subscriber did not get since the last one it got.
	frame   *Frame
	offset  uint64
	skipped uint64
}

func newThrottle(rate float64, conflate bool) *throttle {
	if rate == 0 && !conflate {
		return nil
	}
	th := &throttle{conflate: conflate}
	if rate > 0 {
		th.every = rateTicks(rate)
	}
	return th
}

// nextSlot is the first tick at least every after last that is a
// multiple of every: subscriptions with the same rate share their ticks.
func (th *throttle) nextSlot() int64 {
	t := th.last + th.every
	return (t + th.every - 1) / th.every * th.every
}

// drop forgets what is held: the channel was reset, or sub is leaving.
func (th *throttle) drop() {
	th.frame, th.offset, th.skipped, th.due = nil, 0, 0, 0
}

// offerLocked hands a message frame to a throttled subscription. It is
// queued at once when the rate allows (capped false: recovery, which is
// not rate-capped) and the session is not behind; otherwise it becomes
// the held message (the one it replaces counts as skipped) and the
// subscription waits in the wheel. It reports whether frame was queued;
// a held message it replaces is counted in *skipped (the caller adds its
// count to the stats once, not an atomic add per subscriber). Must hold
// sub.ch.mu.
func (h *Hub) offerLocked(sub *subscription, frame *Frame, offset uint64, now int64, capped bool, skipped *uint64) bool {
	th := sub.th
	if th.frame != nil {
		// Already waiting for the wheel: the newest wins.
		th.frame, th.offset = frame, offset
		th.skipped++
		*skipped++
		return false
	}
	if capped && th.every > 0 && now < th.last+th.every {
		th.frame, th.offset = frame, offset
		th.due = h.wheel.schedule(sub, th.nextSlot())
		return false
	}
	if !sub.sendLocked(frame) {
		th.frame, th.offset = frame, offset
		th.due = h.wheel.schedule(sub, now+conflatePoll)
		return false
	}
	if capped {
		th.last = now
	}
	return true
}

// sendLocked queues frame to sub's session: conflating subscriptions
// refuse while the session is behind (conflate.go). Must hold sub.ch.mu.
func (sub *subscription) sendLocked(frame *Frame) bool {
	if sub.th != nil && sub.th.conflate {
		return sub.s.trySend(frame)
	}
	sub.s.send(frame)
	return true
}

// skippedFrame is one encoding of a held message with its count, shared
// by the subscribers of a channel due at the same tick.
type skippedFrame struct {
	offset, skipped uint64
	frame           *Frame
}

// fire delivers the held messages of the wheel's due entries of ch: the
// rate wheel's callback, on its goroutine. Takes ch.mu.
func (h *Hub) fire(ch *hubChannel, due []wheelEntry, now int64) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	shared := h.skipFrames[:0] // advance holds wheel.firing
	var delivered uint64
	for _, e := range due {
		th := e.sub.th
		if th.due != e.due || th.frame == nil {
			continue // delivered, rescheduled or detached since
		}
		th.due = 0
		f := th.frame
		if th.skipped > 0 {
			f = nil
			for _, sf := range shared {
				if sf.offset == th.offset && sf.skipped == th.skipped {
					f = sf.frame
					break
				}
			}
			if f == nil {
				f = skippedCopy(th.frame, th.skipped)
				shared = append(shared, skippedFrame{th.offset, th.skipped, f})
			}
		}
		if !e.sub.sendLocked(f) {
			// Behind: keep it (with its count) and look again soon.
			th.due = h.wheel.schedule(e.sub, now+conflatePoll)
			continue
		}
		th.frame, th.offset, th.skipped = nil, 0, 0
		if th.every > 0 {
			th.last = now
		}
		delivered++
	}
	clear(shared)
	h.skipFrames = shared[:0]
	h.stats.Delivered.Add(delivered)
}

// skippedCopy is the message frame f with "skipped": n: a new Frame
// (what the transports read of f stays), its bytes f's with the member
// added last.
func skippedCopy(f *Frame, n uint64) *Frame {
	c := newFrame(len(f.Bytes) + len(`,"skipped":`) + 20)
	c.Type, c.Channel, c.Position = f.Type, f.Channel, f.Position
	c.Bytes = appendSkipped(c.Bytes, f.Bytes, n)
	return c
}

// appendSkipped appends frame, a "message" frame of AppendMessage, with
// "skipped": n added as its last member.
func appendSkipped(dst, frame []byte, n uint64) []byte {
	dst = append(dst, frame[:len(frame)-1]...)
	dst = append(dst, `,"skipped":`...)
	dst = strconv.AppendUint(dst, n, 10)
	return append(dst, '}')
}
