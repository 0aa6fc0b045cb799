package ws

// heldFlush is a lagging client's flush waiting for its time
// (wsTransport.ScheduleAfter).
type heldFlush struct {
	due int64 // time.Now().UnixNano() from which it may run
	f   func()
}

// heldHeap is a writer's held flushes, the earliest due first: a binary
// min-heap on due, kept by hand rather than through container/heap, whose
// Push and Pop would box every entry. The writer's mutex guards it.
type heldHeap []heldFlush

func (h *heldHeap) push(x heldFlush) {
	*h = append(*h, x)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p].due <= s[i].due {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

// pop removes and returns the earliest entry; h is not empty.
func (h *heldHeap) pop() heldFlush {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s[n] = heldFlush{} // drop the flush's reference
	s = s[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && s[c+1].due < s[c].due {
			c++
		}
		if s[i].due <= s[c].due {
			break
		}
		s[i], s[c] = s[c], s[i]
		i = c
	}
	*h = s
	return top
}
