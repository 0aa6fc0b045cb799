// Package pushtest holds what the tests of push and of its transports
// check about the frames a client reads, so that each is written once.
// It imports nothing of Herald's: the internal tests of package push can
// use it without a cycle.
package pushtest

import (
	"encoding/json"
	"testing"
)

// Message is a "message" frame as a client reads it.
type Message struct {
	Type     string          `json:"type"`
	Channel  string          `json:"channel"`
	Offset   uint64          `json:"offset"`
	Epoch    string          `json:"epoch"`
	Skipped  uint64          `json:"skipped"`
	Snapshot bool            `json:"snapshot"`
	Data     json.RawMessage `json:"data"`
	Raw      string          `json:"-"` // the frame as read, for failure messages
}

// LastIs is a stop condition for a read of messages: the last one read is
// at offset or beyond.
func LastIs(offset uint64) func([]Message) bool {
	return func(ms []Message) bool { return len(ms) > 0 && ms[len(ms)-1].Offset >= offset }
}

// CheckSkips checks that ms, the messages after offset from, never go
// back and that each one's skipped is the gap its offset jumped, and
// returns the messages skipped in all.
func CheckSkips(t testing.TB, ms []Message, from uint64) (skipped uint64) {
	t.Helper()
	prev := from
	for _, m := range ms {
		if m.Offset <= prev {
			t.Fatalf("offset %d after %d: an old message after a newer one", m.Offset, prev)
		}
		if m.Skipped != m.Offset-prev-1 {
			t.Fatalf("offset %d after %d says skipped %d, want %d (%s)", m.Offset, prev, m.Skipped, m.Offset-prev-1, m.Raw)
		}
		skipped += m.Skipped
		prev = m.Offset
	}
	return skipped
}
