package api

import (
	"fmt"

	"github.com/heraldpush/herald/push"
)

// MaxFanIn caps the messages one HTTP request publishes, however it asks
// for them: the channels of one /api/publish, or the entries of an
// /api/batch times their channels. One request of 100,000 channels would
// otherwise publish 100,000 messages (a batch of 1,000 entries x 50
// channels, 50,000) while holding one connection and one handler; with
// the cap the work a request can cause is bounded the same on every path,
// and a backend that needs more sends more requests. The WebSocket
// publish command names one channel.
const MaxFanIn = 1000

// checkFanIn answers 413 when a request would publish n messages.
func checkFanIn(n int) error {
	if n > MaxFanIn {
		return newError(push.CodeTooLarge,
			fmt.Sprintf("this request publishes %d messages (channels x entries); at most %d per request", n, MaxFanIn))
	}
	return nil
}

// batchFanIn counts the messages a batch publishes: one per channel of
// each entry ("channel" counts one).
func batchFanIn(msgs []publishRequest) int {
	n := 0
	for _, m := range msgs {
		n += max(len(m.Channels), 1)
	}
	return n
}
