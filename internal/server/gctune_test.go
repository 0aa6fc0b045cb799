package server

import (
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

func TestGCTunerSpacesCollectionsUnderLoad(t *testing.T) {
	const mib = 1 << 20
	tn := &gcTuner{base: 50, percent: 50}
	// 65,000 deliveries/s, 2.4 MB/s allocated, 32 MB live: a collection
	// every 30 s wants 72 MB of headroom, capped at 64 MB: 200%.
	p, lowered := tn.step(65_000, 24*mib/10, 32*mib, time.Second)
	if p != 200 || lowered {
		t.Fatalf("busy: GOGC %d (lowered %v), want 200", p, lowered)
	}
	// A wobble of less than a quarter leaves it.
	if p, _ = tn.step(65_000, 2*mib, 32*mib, time.Second); p != 200 {
		t.Fatalf("wobble: GOGC %d, want 200 kept", p)
	}
	// A small heap allocating fast stops at gcMaxPercent.
	if p, _ = tn.step(65_000, 100*mib, 4*mib, time.Second); p != gcMaxPercent {
		t.Fatalf("small heap: GOGC %d, want %d", p, gcMaxPercent)
	}
	// Fast allocation without deliveries (connecting, say) is not busy;
	// the tuner comes down only after gcQuietTicks quiet seconds.
	for i := 1; i < gcQuietTicks; i++ {
		if p, lowered = tn.step(500, 50*mib, 32*mib, time.Second); p != gcMaxPercent || lowered {
			t.Fatalf("quiet tick %d: GOGC %d (lowered %v), want %d kept", i, p, lowered, gcMaxPercent)
		}
	}
	if p, lowered = tn.step(0, 0, 32*mib, time.Second); p != 50 || !lowered {
		t.Fatalf("quiet: GOGC %d (lowered %v), want 50 and lowered", p, lowered)
	}
	if p, lowered = tn.step(0, 0, 32*mib, time.Second); p != 50 || lowered {
		t.Fatalf("still quiet: GOGC %d (lowered %v), want 50, no second release", p, lowered)
	}
	// A busy node allocating little keeps the base: no reason to grow.
	if p, _ = tn.step(65_000, 1<<10, 32*mib, time.Second); p != 50 {
		t.Fatalf("busy, no garbage: GOGC %d, want 50", p)
	}
}

func TestTuneGCLeavesGOGCAloneWhenSet(t *testing.T) {
	prev := debug.SetGCPercent(77)
	defer debug.SetGCPercent(prev)
	n := &Node{}
	n.TuneGC(func(k string) string { return map[string]string{"GOGC": "77"}[k] })()
	if got := debug.SetGCPercent(77); got != 77 {
		t.Fatalf("GOGC %d after TuneGC with GOGC set, want 77 untouched", got)
	}
}

func TestGCTuneRaisesAndRestores(t *testing.T) {
	prev := debug.SetGCPercent(defaultGCPercent)
	defer debug.SetGCPercent(prev)
	var delivered atomic.Uint64
	done, ended := make(chan struct{}), make(chan struct{})
	go func() { defer close(ended); gcTune(defaultGCPercent, delivered.Load, done) }()
	// Busy: deliveries far past gcBusyDeliveries and garbage to go with
	// them, until the tuner raises GOGC (it ticks once a second).
	var sink [][]byte
	deadline := time.Now().Add(10 * time.Second)
	raised := false
	for !raised && time.Now().Before(deadline) {
		delivered.Add(1_000_000)
		for range 64 {
			sink = append(sink, make([]byte, 64<<10))
		}
		sink = sink[len(sink)/2:]
		time.Sleep(20 * time.Millisecond)
		raised = gogc() > defaultGCPercent
	}
	_ = sink
	if !raised {
		t.Fatal("GOGC not raised in 10 s of deliveries and garbage")
	}
	close(done)
	<-ended
	if got := gogc(); got != defaultGCPercent {
		t.Fatalf("GOGC %d after the tuner stopped, want %d", got, defaultGCPercent)
	}
}

// gogc reads GOGC without setting it.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
