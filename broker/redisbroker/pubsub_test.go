package redisbroker

import (
	"testing"
)

// The reconnect detection from confirmations alone, as after a redial made
// inside a Ping or Subscribe between two reads.
func TestConfirmDetectsResubscription(t *testing.T) {
	b := &Broker{prefix: "p:", genKeys: []string{"p:#gen"}}
	s := newShard(b, 0)
	a, c := b.names("a").pubsub, b.names("c").pubsub
	s.want[a], s.want[c] = "a", "c"
	wa := make(chan struct{})
	s.waiters[a] = []chan struct{}{wa}

	step := func(kind, name string, wantReconnect, wantDropped bool) {
		t.Helper()
		r, d := s.confirm(kind, name)
		if r != wantReconnect || d != wantDropped {
			t.Fatalf("%s %s: reconnected %v dropped %v, want %v %v", kind, name, r, d, wantReconnect, wantDropped)
		}
	}
	// First connection: everything confirmed once, a waiter released.
	step("subscribe", s.control, false, false)
	step("subscribe", a, false, false)
	select {
	case <-wa:
	default:
		t.Fatal("waiter not released")
	}
	step("subscribe", c, false, false)
	// go-redis redialled and resubscribed: the first repeat tells, once.
	step("subscribe", c, true, false)
	step("subscribe", s.control, false, false)
	step("subscribe", a, false, false)
	// Our own unsubscribe is expected; one we did not ask for is not.
	delete(s.want, a)
	s.unsubs[a] = 1
	step("unsubscribe", a, false, false)
	step("unsubscribe", c, false, true)
	step("unsubscribe", "stranger", false, false)
}
