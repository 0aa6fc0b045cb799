package push

// Conflation (namespace rule conflate: true). A subscriber that falls
// behind (its send queue near MaxQueueBytes) is not closed with 4001 for
// the messages of a conflating namespace: the session goes "behind", and
// until its queue drains each of its conflating subscriptions keeps only
// the newest message it has not had (throttle.go), then gets it with
// "skipped": N. A ticker on a slow link shows current prices instead of
// disconnecting. Frames of other namespaces, and the server's own, keep
// the rule of Session.send: past MaxQueueBytes, 4001.
//
// Conflation starts conflateReserve short of MaxQueueBytes. The room left
// is for what is not conflated (pings, replies, presence events): at the
// limit itself a conflated session's next ping would close it.
// The session stays behind until its writer finds the queue empty with
// nothing left unwritten in the transport (writeOut clears it): drained,
// not merely below the line, so that a client that barely keeps up is
// not switched back and forth at every frame.

// conflateReserve is the part of MaxQueueBytes kept for frames that are
// not conflated: conflation starts at MaxQueueBytes - MaxQueueBytes/8.
func conflateLimit(maxQueue int) int { return maxQueue - maxQueue/8 }

// trySend queues frame unless the session is behind, or would be with
// frame queued; it then reports false and marks the session behind, and
// the caller keeps the frame for later. A closed session takes nothing
// and reports true: there is nothing to keep it for.
func (s *Session) trySend(frame *Frame) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.node.stats.Dropped.Add(1)
		return true
	}
	if s.behind || (s.queued > 0 && s.queued+len(frame.Bytes) > conflateLimit(s.node.opts.MaxQueueBytes)) {
		if !s.behind {
			s.behind = true
			s.node.stats.Conflated.Add(1)
		}
		s.mu.Unlock()
		return false
	}
	s.enqueueLocked(frame)
	s.mu.Unlock()
	return true
}
