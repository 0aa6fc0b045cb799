package ws

import (
	"sync"
	"sync/atomic"
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
type writer struct {
	mu     sync.Mutex
	ready  []func()
	later  []func()      // run one at a time, when ready is empty
	next   int           // later[next:] are still to run
	lagged func()        // called when a client is found lagging (lag.go): the node counts it
	idle   bool          // the goroutine waits on wake
	wake   chan struct{} // capacity 1: one wake-up per idle spell
}

func startWriters(n int, lagged func()) *writers {
	p := &writers{ws: make([]writer, max(n, 1)), done: make(chan struct{})}
	for i := range p.ws {
		w := &p.ws[i]
		w.lagged = lagged
		w.wake = make(chan struct{}, 1)
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
	wake := w.idle
	w.idle = false
	w.mu.Unlock()
	if wake {
		w.wake <- struct{}{}
	}
}

func (w *writer) run(done <-chan struct{}) {
	var batch []func()
	for {
		w.mu.Lock()
		if len(w.ready) == 0 && w.next < len(w.later) {
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
			w.idle = true
			w.mu.Unlock()
			select {
			case <-w.wake:
			case <-done:
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
