package push

import "errors"

// The reasons of a 4001 close (CloseSlowConsumer), one per rule.
const (
	// SlowQueueReason: the send queue passed max_queue_bytes while the
	// client's socket was full (Session.send).
	SlowQueueReason = "slow consumer: send queue full"
	// NotReadingReason: the client's socket did not take what was
	// waiting for it within write_timeout (closeNotReading).
	NotReadingReason = "slow consumer: not reading"
)

// ErrNotReading is what a TryWriter's Drain returns when its client did
// not take what was waiting within the write timeout: it stopped reading,
// or reads too slowly for the feed. The session closes it as a slow
// consumer (4001), as it does one whose queue overflows, instead of
// dropping the connection without a word: a client on a quiet feed may
// never queue max_queue_bytes, and it used to be cut without a close frame
// (issue 12 item 4). Drain keeps what it could not write, so that the
// transport's Close sends it before the close frame should the client
// resume.
var ErrNotReading = errors.New("push: the client did not read within the write timeout")

// closeNotReading closes the session as a slow consumer because its
// client stopped taking data (ErrNotReading); the writer calls it, and
// then finish sends the close.
func (s *Session) closeNotReading() {
	s.mu.Lock()
	first := s.closeLocked(CloseSlowConsumer, NotReadingReason)
	queued := s.queued
	s.mu.Unlock()
	if first {
		s.closedSlow(queued)
	}
}

// closedSlow is what follows the close of a slow consumer, s.mu not held:
// it is counted, and it leaves its channels at once. Its connection lives
// on for up to stalledCloseLinger (push/ws), waiting for the client to
// read its close; meanwhile every message to its channels would still
// come to it to be dropped. 10,000 stalled subscribers made that a third
// of the node's CPU (issue 12 item 4). On a goroutine of its own: the
// caller of send may hold the channel's lock (fanOutLocked).
func (s *Session) closedSlow(queued int) {
	go s.leaveChannels()
	s.node.countRejection(ReasonSlowConsumer)
	s.node.log.Debug("slow consumer", "client", s.id, "queued", queued)
}

// flushBeforeClose reports whether the writer, finding the session
// closed, writes the frames queued before the close first. A client closed
// for a flood (4005) on connect, say, sees its welcome and the errors that
// led there, and then the close with its reason, instead of a bare close
// (the queue used to be dropped). Not for a slow consumer (4001): its
// queue is what overflowed, and its socket takes nothing. Nor when no
// close frame is due (the connection is gone). The writes do not wait
// long: a Drain gives up a second after Interrupt, and what the socket
// does not take then ends the connection without a close frame, as
// before. s.mu is held.
func (s *Session) flushBeforeClose() bool {
	if !s.closing || s.closeCode.Load() == CloseSlowConsumer {
		return false
	}
	if s.tw != nil {
		s.tw.Interrupt()
	}
	return true
}
