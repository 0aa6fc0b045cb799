package ws

import (
	"testing"
	"time"
)

// feed plays windows (what the client advertised before each write) and
// writes of n bytes into a lag, and returns the write at which it was
// first found lagging (-1: never).
func feed(l *lag, windows []uint32, n int) int {
	at := -1
	for i, w := range windows {
		l.observe(w)
		if l.lagging && at < 0 {
			at = i
		}
		l.wrote(n, int64(i)*int64(50*time.Millisecond))
	}
	return at
}

// shrinking is the window of a client that reads nothing, from high, as
// writes of n bytes fill it (what a 4 KiB receive buffer advertised to
// 140-byte writes on loopback, give or take the ACKs it delays).
func shrinking(high uint32, n, writes int) []uint32 {
	w := make([]uint32, writes)
	for i := range w {
		w[i] = high - uint32(min(i*n, int(high)))
	}
	return w
}

func TestLagFindsAClientThatDoesNotRead(t *testing.T) {
	var l lag
	if at := feed(&l, shrinking(4096, 140, 20), 140); at < 0 || at > 4 {
		t.Fatalf("a client whose window shrinks by every write found lagging at write %d, want by the 5th", at)
	}
	if !l.lagging || l.hold(l.last) <= 0 {
		t.Fatalf("lagging %v, hold %v right after a write: want the next write held", l.lagging, l.hold(l.last))
	}
	// The held wait doubles while the client keeps not reading, within
	// half of it either way (nextGap), up to lagMaxWait.
	for range 10 {
		l.observe(0)
		l.wrote(140, l.last+int64(time.Second))
	}
	if g := time.Duration(l.gap); g < lagMaxWait/2 || g > lagMaxWait*3/2 {
		t.Errorf("wait after many held writes %v, want about %v", g, lagMaxWait)
	}
}

func TestLagLeavesReadersAlone(t *testing.T) {
	var l lag
	// A reader hands its window back: the same window before each write,
	// or the last write's bytes still on the way.
	w := make([]uint32, 200)
	for i := range w {
		w[i] = 65536
		if i%3 == 0 {
			w[i] -= 140
		}
	}
	if at := feed(&l, w, 140); at >= 0 {
		t.Fatalf("a reader found lagging at write %d", at)
	}
	// A receiver that acknowledges every second segment as it arrives,
	// before its application reads it: two writes unread at every probe.
	var win lag
	two := make([]uint32, 200)
	for i := range two {
		two[i] = 65536 - 280
	}
	two[0] = 65536
	if at := feed(&win, two, 140); at >= 0 {
		t.Fatalf("a reader two writes behind its acknowledgements found lagging at write %d", at)
	}
	// Probed: every write while young, then one in lagEvery.
	var probed int
	var m lag
	for range lagYoung + 10*lagEvery {
		if m.due() {
			probed++
		}
		m.wrote(140, 0)
	}
	if want := lagYoung + 10; probed != want {
		t.Errorf("%d of %d writes probed, want %d", probed, lagYoung+10*lagEvery, want)
	}
}

// A write looked at twice (its flush sent behind the readers' flushes,
// then run) is one strike, not two.
func TestLagCountsAWriteOnce(t *testing.T) {
	var l lag
	l.observe(4096)
	l.wrote(140, 0)
	l.observe(4096 - 300)
	l.observe(4096 - 300)
	if l.lagging || l.strikes != 1 {
		t.Fatalf("after one write looked at twice: lagging %v, %d strikes; want 1 strike", l.lagging, l.strikes)
	}
}

func TestLagEndsWhenTheClientReadsAgain(t *testing.T) {
	var l lag
	feed(&l, shrinking(8192, 500, 6), 500)
	if !l.lagging {
		t.Fatal("not lagging after its window shrank by every write")
	}
	l.observe(8192) // it read everything
	if l.lagging || l.hold(l.last) != 0 {
		t.Fatalf("still lagging (hold %v) after the client handed its whole window back", l.hold(l.last))
	}
}

// Flushes marked later wait for every other flush, even ones scheduled
// after them: a reader's flush is not stuck behind those of clients that
// do not read.
func TestWritersRunReadersFirst(t *testing.T) {
	p := startWriters(1, func() {})
	defer p.stop()
	w := &p.ws[0]
	hold, order := make(chan struct{}), make(chan string, 8)
	w.schedule(func() { <-hold }, false) // keeps the goroutine busy while the rest is queued
	for _, name := range []string{"later1", "later2"} {
		w.schedule(func() { order <- name }, true)
	}
	for _, name := range []string{"ready1", "ready2"} {
		w.schedule(func() { order <- name }, false)
	}
	close(hold)
	var got []string
	for range 4 {
		got = append(got, <-order)
	}
	want := []string{"ready1", "ready2", "later1", "later2"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ran %v, want %v", got, want)
		}
	}
}
