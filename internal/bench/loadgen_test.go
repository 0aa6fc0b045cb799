package bench

import (
	"os"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * 10 * time.Microsecond) // 10µs .. 10ms
	}
	q := h.quantiles(0.5, 0.99)
	if q[0] < 4.9 || q[0] > 5.1 || q[1] < 9.8 || q[1] > 10 {
		t.Errorf("p50 %vms p99 %vms, want about 5 and 9.9", q[0], q[1])
	}
	for _, us := range []uint64{0, 1, 1023, 1024, 5000, 1 << 30} {
		if v := histValue(histIndex(us)); v > us || float64(us-v) > float64(us)*0.002 {
			t.Errorf("histogram bucket of %dµs reads %dµs", us, v)
		}
	}
}

// serverCPU reads this process's own CPU time, which grows as it works
// (linux: /proc).
func TestServerCPU(t *testing.T) {
	self := []int{os.Getpid()}
	before := serverCPU(self)
	if before < 0 {
		t.Fatal("cannot read this process's CPU time")
	}
	// Spin until the kernel has counted a tick more, or give up.
	after := before
	for end := time.Now().Add(10 * time.Second); after <= before && time.Now().Before(end); {
		after = serverCPU(self)
	}
	if after <= before {
		t.Fatalf("CPU seconds stayed at %v through 10s of spinning", before)
	}
	if serverCPU(nil) != -1 || serverCPU([]int{-5}) != -1 {
		t.Error("no pid, or one without /proc, must read -1")
	}
}
