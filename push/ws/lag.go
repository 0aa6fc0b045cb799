package ws

import (
	"math/rand/v2"
	"time"
)

// A client that stops reading is found out by its socket only once its
// receive window is full and send_lowat_bytes more wait unsent (sndbuf.go).
// Until then every message to it is one more write(2), as for a reader:
// about 600 writes of 140-byte messages for a browser's 64 KiB window, and
// 10,000 clients that stopped together made ten times the writes of the
// readers beside them and held their deliveries up for seconds (issue 12
// item 4). The window says it sooner: a client that reads hands its
// window back, one that does not advertises less and less. lag watches
// the window the client advertises (TCP_INFO's tcpi_snd_wnd, lag_linux.go)
// before a write, and a client whose unread bytes have not fallen and are
// more than twice the last write, on lagStrikes writes in a row, lags: its
// frames are held back and written together, behind the readers', after
// lagFirstWait and then twice as long each time up to lagMaxWait (give or
// take half, at random), instead of one write each. So a stalled client costs a few
// writes before its socket is full, however many messages the feed sends;
// it is closed 4001 as before (write_timeout, max_queue_bytes). A client
// that hands the window back (its unread bytes fall, or are no more than
// the last write) stops lagging at the next write.
//
// The writer of the connection owns a lag: the writers' goroutine running
// its flush (push.TryWriter's Pace, TryWrite), or its session's own while
// it waits for a full socket (Drain), never both at once.
type lag struct {
	high    uint32 // the largest window the client advertised
	unread  uint32 // high less the window at the last probe: what the client holds unread
	lastLen uint32 // bytes of the last write
	last    int64  // when the last write was made, time.Now().UnixNano()
	writes  uint8  // writes so far, up to lagYoung; then counts to lagEvery
	strikes uint8  // probes in a row that found the unread bytes growing
	lagging bool
	probed  bool   // probed since the last write: a probe again counts no strike
	wait    uint8  // lagging: the wait before the next write is about lagFirstWait << wait
	gap     uint32 // lagging: the wait after the last write, drawn by nextGap, in ns
}

const (
	// lagYoung: the first writes of a connection are all probed, so that
	// clients that never read are found out within a few messages.
	lagYoung = 16
	// lagEvery: later, one write in lagEvery is probed (a probe cost 3.7
	// µs against 14.7 µs a write in a profile of the 10,000-stalled bench,
	// fd locking included), and every write while lagging.
	lagEvery = 8
	// lagStrikes: probes in a row that must find the unread bytes growing.
	lagStrikes = 2

	lagFirstWait = 100 * time.Millisecond
	lagMaxShift  = 3 // lagMaxWait = lagFirstWait << lagMaxShift
	lagMaxWait   = lagFirstWait << lagMaxShift
)

// due reports whether the next write is probed.
func (l *lag) due() bool {
	return l.lagging || l.writes < lagYoung || l.writes == lagYoung+lagEvery-1
}

// observe takes the window the client advertises now (before a write) and
// decides whether it lags.
func (l *lag) observe(wnd uint32) {
	l.high = max(l.high, wnd)
	unread := l.high - wnd
	// More than twice the last write: a receiver that acknowledges every
	// second segment as it arrives (Windows), before its application has
	// read it, advertises a window short of two writes while it reads.
	growing := unread > 0 && unread >= l.unread && unread > 2*l.lastLen
	again := l.probed
	l.probed = true
	switch {
	case again && growing:
		// The same write looked at twice (a flush sent behind the
		// readers' and run): one strike for it.
	case !l.lagging && growing:
		if l.strikes++; l.strikes >= lagStrikes {
			l.lagging, l.wait = true, 0
		}
	case !l.lagging:
		l.strikes = 0
	case unread < l.unread || unread <= l.lastLen:
		// The client read: what it holds fell, or is no more than the
		// last write, which may still be on its way to it.
		l.lagging, l.strikes = false, 0
	case l.wait < lagMaxShift:
		l.wait++
	}
	l.unread = unread
}

// hold reports whether a write now should wait (the client lags and its
// last write was too recent), and for how long.
func (l *lag) hold(now int64) time.Duration {
	if !l.lagging {
		return 0
	}
	d := time.Duration(l.last + int64(l.gap) - now)
	return max(d, 0)
}

// nextGap draws the wait after a lagging client's write: lagFirstWait <<
// wait, give or take half of it at random. Clients that stopped reading
// together (all of a channel's, behind one failed network, or at the
// start of a benchmark) are found lagging on the same message, and
// without the spread their held writes came due in one burst of 10,000
// every time, each burst a delay for the readers.
func (l *lag) nextGap() {
	w := lagFirstWait << l.wait
	l.gap = uint32(w/2 + rand.N(w))
}

// wrote records a write of n bytes made at now.
func (l *lag) wrote(n int, now int64) {
	l.lastLen, l.last, l.probed = uint32(min(n, 1<<31)), now, false
	if l.lagging {
		l.nextGap()
	}
	switch {
	case l.writes < lagYoung:
		l.writes++
	case l.writes == lagYoung+lagEvery-1:
		l.writes = lagYoung
	default:
		l.writes++
	}
}
