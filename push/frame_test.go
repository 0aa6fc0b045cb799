package push

import (
	"runtime"
	"testing"
	"unsafe"
)

// TestFrameSizesFillSizeClasses checks that a message frame costs exactly
// the size class of its frame type: the header constant matches the
// struct, and the runtime allocates each frame type with no rounding up
// (bytes allocated per frame == the size class it was sized for).
func TestFrameSizesFillSizeClasses(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("frameHeader is the 64-bit size; 32-bit platforms leave a little unused by design")
	}
	if got := unsafe.Sizeof(Frame{}); got != frameHeader {
		t.Fatalf("unsafe.Sizeof(Frame{}) = %d, frameHeader = %d: update frameHeader", got, frameHeader)
	}
	sizes := []struct {
		n    int    // bytes asked for
		size uint64 // the size class
	}{
		{1, 256},
		{len(frameS{}.b) + 1, 320},
		{len(frameM{}.b) + 1, 384},
		{len(frameL{}.b) + 1, 512},
		{len(frameXL{}.b) + 1, 1024},
		{len(frame1k{}.b) + 1, 2048},
		{len(frame2k{}.b) + 1, 4096},
	}
	keep := make([]*Frame, 10000)
	for _, c := range sizes {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range keep {
			keep[i] = newFrame(c.n)
		}
		runtime.ReadMemStats(&after)
		if cap(keep[0].Bytes) < c.n {
			t.Errorf("newFrame(%d): cap %d", c.n, cap(keep[0].Bytes))
		}
		per := (after.TotalAlloc - before.TotalAlloc) / uint64(len(keep))
		// Allow a few bytes of the runtime's own allocations in between:
		// a frame rounded up would be a whole size class step (32 bytes
		// or more at these sizes) over.
		if per < c.size || per >= c.size+32 {
			t.Errorf("newFrame(%d) allocates %d bytes a frame, want the %d-byte size class", c.n, per, c.size)
		}
	}
}
