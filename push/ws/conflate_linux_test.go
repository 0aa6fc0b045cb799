//go:build linux

package ws

import (
	"testing"
	"time"

	"github.com/heraldpush/herald/internal/pushtest"
	"github.com/heraldpush/herald/push"
)

func conflateNode(t *testing.T) *testNode {
	ns := &push.Namespaces{Named: map[string]*push.Namespace{"stocks": {Conflate: true}, "news": {}}}
	return startTestNode(t, push.Options{MaxQueueBytes: 64 << 10, Namespaces: ns})
}

// A client that stops reading, in a conflating namespace, is not closed:
// it goes latest-only, and when it reads again it gets what was queued,
// then the newest message with the count it skipped; never an old one
// after a newer one.
func TestConflateKeepsASlowReaderWithTheLatest(t *testing.T) {
	n := conflateNode(t)
	c := n.dialStalled(t, "/ws?channel=stocks:AAPL")
	// The query's subscribe runs after the 101: publish only once it is
	// made, or offset 1 goes out before there is anyone to skip it.
	waitUntil(t, 10*time.Second, "the subscription", func() bool { _, _, subs := n.hub.Counts(); return subs == 1 })
	conflated := func() bool { return n.hub.Snapshot().Conflated > 0 }
	published := publishUntil(t, n.hub, "stocks:AAPL", time.Millisecond, 30*time.Second, conflated)
	// As much again while it is behind: held, not queued, not closed.
	more := 0
	published += publishUntil(t, n.hub, "stocks:AAPL", time.Millisecond, 30*time.Second, func() bool { more++; return more > 200 })
	if got := slowClosed(n.hub); got != 0 {
		t.Fatalf("%d slow-consumer closes in a conflating namespace", got)
	}
	last := uint64(published) // the channel's offsets start at 1
	got := c.readMessages(t, "stocks:AAPL", 20*time.Second, pushtest.LastIs(last))
	skipped := pushtest.CheckSkips(t, got, 0)
	if skipped == 0 || skipped+uint64(len(got)) != last {
		t.Fatalf("%d delivered, %d skipped, of %d published: want some skipped, none lost", len(got), skipped, last)
	}
	if m := got[len(got)-1]; m.Skipped == 0 {
		t.Errorf("the latest came without its count: %s", m.Raw)
	}
	// Drained: it is a plain subscriber again, every message at once.
	pos := publishN(t, n.hub, "stocks:AAPL", 3)
	again := c.readMessages(t, "stocks:AAPL", 10*time.Second, pushtest.LastIs(pos.Offset))
	if pushtest.CheckSkips(t, again, last) != 0 || len(again) != 3 {
		t.Fatalf("after draining: %d messages, want the 3 published", len(again))
	}
	t.Logf("%d published, %d delivered, %d skipped", pos.Offset, len(got)+len(again), skipped)
}

// The same slow client is still closed 4001 for the messages of a
// namespace that does not conflate.
func TestConflateLeavesOtherNamespacesTo4001(t *testing.T) {
	n := conflateNode(t)
	c := n.dialStalled(t, "/ws?channel=stocks:AAPL&channel=news:world")
	publishUntil(t, n.hub, "stocks:AAPL", time.Millisecond, 30*time.Second, func() bool { return n.hub.Snapshot().Conflated > 0 })
	publishUntil(t, n.hub, "news:world", time.Millisecond, 30*time.Second, func() bool { return slowClosed(n.hub) == 1 })
	_ = c.SetReadDeadline(time.Now().Add(stalledCloseLinger))
	if code, reason, ok := c.closeCode(); !ok || code != push.CloseSlowConsumer {
		t.Fatalf("close %d %q (close frame: %v), want %d", code, reason, ok, push.CloseSlowConsumer)
	}
}
