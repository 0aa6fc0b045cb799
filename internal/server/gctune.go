package server

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector's pace under sustained fan-out (issue 14 item 3). With
// 10,000 subscribers delivering 65,000 messages/s, the two cores of the
// test machine run at about 85% for the server's write(2)s and the load
// client's read(2)s alone; every collection then takes a further 80-220
// ms of CPU (marking 32 MB of connection state and 10,000 goroutine
// stacks: the cost does not depend on the garbage), and at GOGC=50 one
// came every 5-9 s, the publish path's 3.7 KB of HTTP garbage a message
// filling the 50% headroom. Each was a chance for the writers to fall 100
// ms or more behind. So while the node delivers at a rate where the
// writers are busy, the tuner gives the heap enough headroom for about
// one collection every gcSpacing, within gcMaxHeadroom; once the node is
// quiet again it goes back to defaultGCPercent and returns the headroom
// to the OS, so an idle node's memory (issue 14 item 2) is what it was.

const (
	// gcBusyDeliveries: deliveries per second from which the writers'
	// time is worth more than the heap's headroom.
	gcBusyDeliveries = 10_000
	// gcSpacing is the time wanted between two collections while busy.
	gcSpacing = 30 * time.Second
	// gcMaxHeadroom bounds the garbage the tuner lets pile up, and
	// gcMaxPercent the GOGC it sets (a small heap is cheap to mark).
	gcMaxHeadroom = 64 << 20
	gcMaxPercent  = 400
	// gcQuietTicks: seconds below gcBusyDeliveries before the tuner
	// lowers GOGC again, so that a short lull does not cost a collection.
	gcQuietTicks = 5
)

// gcTuner decides GOGC from one tick's figures (step); gcTune applies it.
type gcTuner struct {
	base    int // GOGC while quiet
	percent int // GOGC set now
	quiet   int // consecutive quiet ticks while raised
}

// step returns the GOGC for a tick that saw deliveries and allocated
// bytes over dt with live bytes of live heap, and whether the tuner just
// went back to base (the caller then returns the headroom to the OS).
func (t *gcTuner) step(deliveries, allocated, live uint64, dt time.Duration) (percent int, lowered bool) {
	if dt <= 0 {
		return t.percent, false
	}
	if float64(deliveries)/dt.Seconds() < gcBusyDeliveries {
		if t.percent == t.base {
			return t.percent, false
		}
		if t.quiet++; t.quiet < gcQuietTicks {
			return t.percent, false
		}
		t.percent, t.quiet = t.base, 0
		return t.percent, true
	}
	t.quiet = 0
	headroom := min(float64(allocated)/dt.Seconds()*gcSpacing.Seconds(), gcMaxHeadroom)
	want := t.base
	if live > 0 {
		want = min(max(int(100*headroom/float64(live)), t.base), gcMaxPercent)
	}
	// Only a change of a quarter or more: each setting recomputes the
	// heap goal, and the allocation rate wobbles from tick to tick.
	if want > t.percent*5/4 || want < t.percent*3/4 {
		t.percent = want
	}
	return t.percent, false
}

// gcTune runs the tuner once a second until done is closed, reading the
// node's deliveries from delivered. It leaves GOGC at base when it ends.
func gcTune(base int, delivered func() uint64, done <-chan struct{}) {
	t := &gcTuner{base: base, percent: base}
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	read := func() (allocs, live uint64) {
		metrics.Read(samples)
		return samples[0].Value.Uint64(), samples[1].Value.Uint64()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastAllocs, _ := read()
	lastDelivered, last := delivered(), time.Now()
	for {
		select {
		case <-done:
			if t.percent != base {
				debug.SetGCPercent(base)
			}
			return
		case now := <-tick.C:
			allocs, live := read()
			d := delivered()
			prev := t.percent
			p, lowered := t.step(d-lastDelivered, allocs-lastAllocs, live, now.Sub(last))
			lastAllocs, lastDelivered, last = allocs, d, now
			if p != prev {
				debug.SetGCPercent(p)
			}
			if lowered {
				debug.FreeOSMemory() // collects, then hands the headroom back
			}
		}
	}
}

// TuneGC paces the collector by the node's deliveries (gcTune) unless
// GOGC is set, which is the operator's choice and left alone; the caller
// (herald serve, which owns the process's GC settings) calls the returned
// stop, which ends the tuner's goroutine and waits for it.
func (n *Node) TuneGC(getenv func(string) string) (stop func()) {
	if getenv("GOGC") != "" {
		return func() {}
	}
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		gcTune(defaultGCPercent, n.core.Delivered, done)
	}()
	return func() { close(done); <-ended }
}
