package push

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// The rate wheel: one timer wheel per node for every subscription that
// holds a message back (max_rate, or conflation while its session is
// behind), instead of a timer or a goroutine per subscription. A
// subscription with a pending message sits in the slot of the tick it is
// due; one goroutine wakes each tick while any is waiting (and sleeps
// while none is), takes the due entries and hands them to the hub
// grouped by channel, so that subscribers of a channel due at the same
// tick share one encoding of what they get (throttle.go).
const (
	// wheelTick is the wheel's resolution: max_rate is measured on this
	// clock, and MaxRate is one message per tick.
	wheelTick = 10 * time.Millisecond
	// wheelSlots covers 10.24 s per turn; entries due later wait in their
	// slot for the turn they are due in.
	wheelSlots = 1024
)

// ticks are wheelTicks since the Unix epoch: an absolute clock, so that
// subscriptions with the same max_rate are due on the same ticks however
// they were started (throttle.go aligns them).
func nowTick() int64 { return time.Now().UnixNano() / int64(wheelTick) }

// wheelEntry is a subscription due at tick due. An entry whose
// subscription has since been delivered, rescheduled or detached (its
// throttle's due no longer matches) is dropped when its tick comes.
type wheelEntry struct {
	sub *subscription
	due int64
}

type rateWheel struct {
	// fire delivers the due entries of one channel; set by the hub.
	fire func(ch *hubChannel, due []wheelEntry, now int64)

	mu    sync.Mutex // a leaf: taken under hubChannel.mu by schedule
	slots [wheelSlots][]wheelEntry
	n     int   // entries in slots
	cur   int64 // the last tick taken out of the slots
	idle  bool  // run waits on wake
	wake  chan struct{}

	// firing serialises advance (run's, and a test's turning the wheel
	// by hand) over batch and the hub's scratch frames.
	firing sync.Mutex
	batch  []wheelEntry // due entries, reused; guarded by firing
}

func (w *rateWheel) init(fire func(*hubChannel, []wheelEntry, int64)) {
	w.fire, w.wake, w.cur = fire, make(chan struct{}, 1), nowTick()
}

// schedule puts sub in the wheel at tick due, or at the next tick when
// due has passed, and returns the tick it will be looked at. The caller
// stores it in sub.th.due. Called holding sub's hubChannel.mu.
func (w *rateWheel) schedule(sub *subscription, due int64) int64 {
	w.mu.Lock()
	if w.n == 0 && w.idle {
		// After an idle spell cur is old: the ticks in between had
		// nothing to do, and run must not walk them one by one.
		w.cur = max(w.cur, nowTick()-1)
	}
	due = max(due, w.cur+1)
	slot := &w.slots[due%wheelSlots]
	*slot = append(*slot, wheelEntry{sub, due})
	w.n++
	wake := w.idle
	w.idle = false
	w.mu.Unlock()
	if wake {
		w.wake <- struct{}{}
	}
	return due
}

// run is the wheel's goroutine, one per node: started by Node.Start,
// ended by done (Node.Close).
func (w *rateWheel) run(done <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		w.mu.Lock()
		if w.n == 0 {
			w.idle = true
			w.mu.Unlock()
			select {
			case <-w.wake:
			case <-done:
				return
			}
			continue
		}
		w.mu.Unlock()
		now := time.Now().UnixNano()
		next := (now/int64(wheelTick) + 1) * int64(wheelTick)
		timer.Reset(time.Duration(next - now))
		select {
		case <-timer.C:
		case <-done:
			timer.Stop()
			return
		}
		w.advance(nowTick())
	}
}

// advance takes out every entry due by now and fires them, a channel at
// a time. A late wake-up (a loaded machine) walks the ticks it missed,
// at most one turn: each slot once.
func (w *rateWheel) advance(now int64) {
	w.firing.Lock()
	defer w.firing.Unlock()
	w.mu.Lock()
	from := max(w.cur+1, now-wheelSlots+1)
	due := w.batch[:0]
	for t := from; t <= now; t++ {
		slot := &w.slots[t%wheelSlots]
		keep := (*slot)[:0]
		for _, e := range *slot {
			if e.due <= t {
				due = append(due, e)
			} else {
				keep = append(keep, e)
			}
		}
		clear((*slot)[len(keep):])
		*slot = keep
	}
	w.n -= len(due)
	w.cur = max(w.cur, now)
	w.mu.Unlock()

	// Group by channel, so that each channel's lock is taken once and its
	// subscribers share their frames.
	slices.SortFunc(due, func(a, b wheelEntry) int { return cmp.Compare(a.sub.ch.id, b.sub.ch.id) })
	for i := 0; i < len(due); {
		j := i + 1
		for j < len(due) && due[j].sub.ch == due[i].sub.ch {
			j++
		}
		w.fire(due[i].sub.ch, due[i:j], now)
		i = j
	}
	clear(due)
	w.batch = due[:0]
}

// pending reports the entries in the wheel (for tests and stats).
func (w *rateWheel) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}
