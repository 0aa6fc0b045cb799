package ws

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestHeldHeapPopsInDueOrder(t *testing.T) {
	var h heldHeap
	var want []int64
	for range 1000 {
		d := rand.Int64N(500)
		want = append(want, d)
		h.push(heldFlush{due: d})
	}
	last := int64(-1)
	for range want {
		got := h.pop().due
		if got < last {
			t.Fatalf("popped %d after %d", got, last)
		}
		last = got
	}
	if len(h) != 0 {
		t.Fatalf("%d left", len(h))
	}
}

// A held flush runs once due, never before, in due order, and without a
// goroutine of its own (the AfterFunc timers it replaced started one each).
func TestWriterRunsHeldFlushesWhenDue(t *testing.T) {
	p := startWriters(1, func() {})
	defer p.stop()
	w := &p.ws[0]
	const n = 2000
	var mu sync.Mutex
	var ran []int64 // the due of each flush, in the order they ran
	late := make(chan int64, n)
	done := make(chan struct{})
	goroutines := runtime.NumGoroutine()
	base := time.Now().UnixNano()
	for i := range n {
		due := base + int64(20*time.Millisecond) + rand.Int64N(int64(30*time.Millisecond))
		w.scheduleAt(due, func() {
			if now := time.Now().UnixNano(); now < due {
				late <- due - now
			}
			mu.Lock()
			ran = append(ran, due)
			if len(ran) == n {
				close(done)
			}
			mu.Unlock()
		})
		_ = i
	}
	if g := runtime.NumGoroutine(); g > goroutines+2 {
		t.Errorf("%d goroutines after %d held flushes, %d before", g, n, goroutines)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("held flushes did not all run")
	}
	close(late)
	for early := range late {
		t.Fatalf("a held flush ran %v before it was due", time.Duration(early))
	}
	for i := 1; i < len(ran); i++ {
		if ran[i] < ran[i-1] {
			t.Fatalf("flush due at %d ran after one due at %d", ran[i], ran[i-1])
		}
	}
}

// An earlier held flush scheduled while the writer waits for a later one
// rearms its timer.
func TestWriterHeldFlushRearms(t *testing.T) {
	p := startWriters(1, func() {})
	defer p.stop()
	w := &p.ws[0]
	now := time.Now().UnixNano()
	w.scheduleAt(now+int64(time.Hour), func() { t.Error("the flush due in an hour ran") })
	ran := make(chan struct{})
	w.scheduleAt(now+int64(10*time.Millisecond), func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("the earlier flush did not run: the writer kept waiting for the later one")
	}
}

// A writer with later flushes for longer than laterSlice rests: it parks,
// so that its P can run what the network has ready, instead of keeping
// it until the runtime preempts it.
func TestWriterRestsBetweenLaterFlushes(t *testing.T) {
	p := startWriters(1, func() {})
	defer p.stop()
	w := &p.ws[0]
	const n = 40
	const flushTime = 250 * time.Microsecond
	starts := make([]time.Time, 0, n)
	done := make(chan struct{})
	hold := make(chan struct{})
	w.schedule(func() { <-hold }, false) // the later flushes are all queued before any runs
	for i := range n {
		w.schedule(func() {
			starts = append(starts, time.Now())
			for t0 := time.Now(); time.Since(t0) < flushTime; {
			}
			if i == n-1 {
				close(done)
			}
		}, true)
	}
	close(hold)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("later flushes did not run")
	}
	rests := 0
	for i := 1; i < len(starts); i++ {
		// A flush takes flushTime: a gap of laterRest more is a rest.
		if starts[i].Sub(starts[i-1]) >= flushTime+laterRest {
			rests++
		}
	}
	// n flushes of flushTime are n/4 slices or more: a rest after each but the last.
	if want := n/4 - 1; rests < want {
		t.Fatalf("%d rests in %d later flushes of %v, want at least %d", rests, n, flushTime, want)
	}
}
