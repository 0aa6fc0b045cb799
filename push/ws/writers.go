package ws

import (
	"sync"
	"sync/atomic"
	"time"
)

// writers run the flushes of WebSocket sessions. A publish to 10,000
// subscribers schedules 10,000 flushes; a few goroutines (one per CPU)
// take them in turn and write without waiting for any one client, instead
// of a goroutine per connection per message. A connection whose socket is
// full leaves them (see tryWriter).
type writers struct {
	ws   []writer
	next atomic.Uint32
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// writer is one goroutine's run queues: the flushes of clients that keep
// up, and after them those of clients whose window the last write did not
// find handed back (lag.go). 10,000 clients that stopped reading together
// used to be 10,000 writes in front of the readers' on every message until
// they were found out; now a reader's flush waits for one write at most.
//
// The writer also keeps the lagging clients' held flushes until they are
// due (held), on its one timer. They had a time.AfterFunc each, and each
// timer that fired started a goroutine: 10,000 lagging clients due within
// a few milliseconds of one another were thousands of goroutines in the
// run queues at once, in front of the fan-outs and the publish requests,
// which waited up to 20 ms behind them (an execution trace of the
// 10,000-stalled bench, issue 12 item 4).
type writer struct {
	mu      sync.Mutex
	ready   []func()
	later   []func()      // run one at a time, when ready is empty
	next    int           // later[next:] are still to run
	held    heldHeap      // flushes not due yet; they join later when due
	lagged  func()        // called when a client is found lagging (lag.go): the node counts it
	idle    bool          // the goroutine waits on wake or timer
	resting bool          // idle, and later flushes do not wake it (laterSlice)
	armed   int64         // while idle: when timer fires (UnixNano), 0 if stopped
	wake    chan struct{} // capacity 1: a wake-up waiting is enough
	timer   *time.Timer   // ends an idle spell for held[0] or a rest; Reset and Stop under mu
}

// laterSlice is the longest a writer runs later flushes in a row before
// it rests laterRest, or less if a reader's flush comes. A writer's flushes
// never block, so a goroutine with later flushes to run would keep its P
// until the runtime preempts it, 10 ms on: 10,000 clients that stopped
// reading together kept both of the machine's Ps so, and the publish
// requests and fan-outs behind them (the network is polled when a P looks
// for work) waited that long. A rest hands the P back; the lagging
// clients' writes, held back anyway, get at most a quarter of a CPU a
// writer while they come in bursts (a rest of 1 ms, half a CPU, measured
// the same in the 10,000-stalled bench; docs/performance.md).
const (
	laterSlice = time.Millisecond
	laterRest  = 3 * time.Millisecond
)

func startWriters(n int, lagged func()) *writers {
	p := &writers{ws: make([]writer, max(n, 1)), done: make(chan struct{})}
	for i := range p.ws {
		w := &p.ws[i]
		w.lagged = lagged
		w.wake = make(chan struct{}, 1)
		w.timer = time.NewTimer(time.Hour)
		w.timer.Stop()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			w.run(p.done)
		}()
	}
	return p
}

// pick assigns a new connection to a writer, in turn.
func (p *writers) pick() *writer {
	return &p.ws[int(p.next.Add(1))%len(p.ws)]
}

// stop ends the goroutines; flushes scheduled after it never run.
func (p *writers) stop() {
	p.once.Do(func() { close(p.done) })
	p.wg.Wait()
}

// schedule queues f to run on the writer's goroutine, after every flush
// not marked later when later is set. It never blocks.
func (w *writer) schedule(f func(), later bool) {
	w.mu.Lock()
	if later {
		w.later = append(w.later, f)
	} else {
		w.ready = append(w.ready, f)
	}
	wake := w.idle && !(later && w.resting)
	if wake {
		w.idle, w.resting = false, false // the writer's wait clears armed and the timer
	}
	w.mu.Unlock()
	if wake {
		// A token may be left from a wait the timer ended: it wakes
		// the writer as well, and a blocking send here could wait on a
		// writer that has stopped.
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// scheduleAt queues f to run on the writer's goroutine from due
// (time.Now().UnixNano()) on, behind the readers' flushes. It never blocks.
func (w *writer) scheduleAt(due int64, f func()) {
	w.mu.Lock()
	w.held.push(heldFlush{due: due, f: f})
	if w.idle && (w.armed == 0 || due < w.armed) {
		w.arm(due, time.Now().UnixNano())
	}
	w.mu.Unlock()
}

// arm sets the timer to fire at due; w.mu is held.
func (w *writer) arm(due, now int64) {
	w.armed = due
	w.timer.Reset(time.Duration(max(due-now, 0)))
}

// wait parks the goroutine until a flush is scheduled (a reader's only,
// when resting), the timer fires (for held[0], or at restUntil if that is
// sooner) or done is closed. w.mu is held on entry and released.
func (w *writer) wait(done <-chan struct{}, resting bool, restUntil int64) bool {
	w.idle, w.resting = true, resting
	now := time.Now().UnixNano()
	due := restUntil
	if len(w.held) > 0 && (due == 0 || w.held[0].due < due) {
		due = w.held[0].due
	}
	if due != 0 {
		w.arm(due, now)
	}
	w.mu.Unlock()
	stop := false
	select {
	case <-w.wake:
	case <-w.timer.C:
	case <-done:
		stop = true
	}
	w.mu.Lock()
	w.idle, w.resting, w.armed = false, false, 0
	w.timer.Stop()
	w.mu.Unlock()
	return !stop
}

func (w *writer) run(done <-chan struct{}) {
	var batch []func()
	var since int64 // this writer's first later flush since it last waited, 0 if none
	for {
		w.mu.Lock()
		if len(w.held) > 0 {
			now := time.Now().UnixNano()
			for len(w.held) > 0 && w.held[0].due <= now {
				w.later = append(w.later, w.held.pop().f)
			}
		}
		if len(w.ready) == 0 && w.next < len(w.later) {
			now := time.Now().UnixNano()
			if since == 0 {
				since = now
			} else if now-since >= int64(laterSlice) {
				since = 0
				if !w.wait(done, true, now+int64(laterRest)) {
					return
				}
				continue
			}
			// One at a time: a reader's flush scheduled meanwhile goes
			// next.
			f := w.later[w.next]
			w.later[w.next] = nil
			if w.next++; w.next == len(w.later) {
				w.later, w.next = w.later[:0], 0
			}
			w.mu.Unlock()
			f()
			continue
		}
		if len(w.ready) == 0 {
			since = 0
			if !w.wait(done, false, 0) {
				return
			}
			continue
		}
		// Swap the queues: schedulers append to the spare while this
		// batch runs, and neither grows again once large enough.
		batch, w.ready = w.ready, batch[:0]
		w.mu.Unlock()
		for i, f := range batch {
			f()
			batch[i] = nil
		}
	}
}
