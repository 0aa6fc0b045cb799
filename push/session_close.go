package push

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
