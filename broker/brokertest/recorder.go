package brokertest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// WaitTimeout bounds every wait of this package. It is generous: under
// -race on a loaded machine a Redis round trip can take a while, and a
// wait that succeeds returns as soon as its condition holds.
const WaitTimeout = 15 * time.Second

// Recorder is a broker.Handler that records what an engine delivers, so
// that tests can wait for it.
type Recorder struct {
	mu         sync.Mutex
	msgs       map[string][]broker.Message
	reconnects int
	changed    chan struct{} // closed (and replaced) on every change
}

var _ broker.Handler = (*Recorder)(nil)

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{msgs: make(map[string][]broker.Message), changed: make(chan struct{})}
}

// HandleMessage implements broker.Handler.
func (r *Recorder) HandleMessage(m *broker.Message) {
	r.mu.Lock()
	r.msgs[m.Channel] = append(r.msgs[m.Channel], *m)
	r.notifyLocked()
	r.mu.Unlock()
}

// HandleReconnect implements broker.Handler.
func (r *Recorder) HandleReconnect() {
	r.mu.Lock()
	r.reconnects++
	r.notifyLocked()
	r.mu.Unlock()
}

func (r *Recorder) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Messages returns a copy of the messages delivered on channel so far.
func (r *Recorder) Messages(channel string) []broker.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs[channel])
}

// Reconnects returns how many times HandleReconnect was called.
func (r *Recorder) Reconnects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reconnects
}

// WaitMessages waits until at least n messages were delivered on channel
// and returns them all; it fails the test after WaitTimeout.
func (r *Recorder) WaitMessages(t testing.TB, channel string, n int) []broker.Message {
	t.Helper()
	r.wait(t, func() bool { return len(r.msgs[channel]) >= n },
		func() string { return fmt.Sprintf("%d messages on %q, got %d", n, channel, len(r.msgs[channel])) })
	return r.Messages(channel)
}

// WaitPosition waits until the message at pos was delivered on channel and
// returns all of the channel's messages; it fails the test after
// WaitTimeout. Use it when earlier messages may or may not arrive.
func (r *Recorder) WaitPosition(t testing.TB, channel string, pos broker.Position) []broker.Message {
	t.Helper()
	r.wait(t, func() bool {
		return slices.ContainsFunc(r.msgs[channel], func(m broker.Message) bool {
			return m.Epoch == pos.Epoch && m.Offset == pos.Offset
		})
	}, func() string {
		return fmt.Sprintf("%s:%d on %q, got %s", pos.Epoch, pos.Offset, channel, offsets(r.msgs[channel]))
	})
	return r.Messages(channel)
}

// WaitReconnects waits until HandleReconnect was called at least n times
// and returns the count; it fails the test after WaitTimeout.
func (r *Recorder) WaitReconnects(t testing.TB, n int) int {
	t.Helper()
	r.wait(t, func() bool { return r.reconnects >= n },
		func() string { return fmt.Sprintf("%d reconnects, got %d", n, r.reconnects) })
	return r.Reconnects()
}

// wait waits until cond, called with r.mu held, holds.
func (r *Recorder) wait(t testing.TB, cond func() bool, want func() string) {
	t.Helper()
	timer := time.NewTimer(WaitTimeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		ok, changed := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			r.mu.Lock()
			msg := want()
			r.mu.Unlock()
			t.Fatalf("timed out after %v waiting for %s", WaitTimeout, msg)
		}
	}
}

// WaitUntil polls cond until it returns nil and fails the test with its
// last error after timeout. It is for conditions nothing signals, such as
// a key expiring in Redis.
func WaitUntil(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		<-tick.C
	}
}
