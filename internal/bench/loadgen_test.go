package bench

import (
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
