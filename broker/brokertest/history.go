package brokertest

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// checkHistory checks h against the expected offsets (in order), position
// offset and completeness.
func checkHistory(t *testing.T, what string, h broker.History, epoch string, pos uint64, complete bool, want ...uint64) {
	t.Helper()
	if h.Position != (broker.Position{Epoch: epoch, Offset: pos}) {
		t.Errorf("%s: position %+v, want %s:%d", what, h.Position, epoch, pos)
	}
	if h.Complete != complete {
		t.Errorf("%s: complete = %v, want %v", what, h.Complete, complete)
	}
	ok := len(h.Messages) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = h.Messages[i].Offset == want[i]
	}
	if !ok {
		t.Errorf("%s: messages %s, want %v", what, offsets(h.Messages), want)
		return
	}
	for _, m := range h.Messages {
		if m.Epoch != epoch || m.Channel == "" || m.Time <= 0 || len(m.Data) == 0 {
			t.Errorf("%s: message %+v lacks epoch, channel, time or data", what, m)
		}
	}
}

// testHistory covers the edge cases of History on a channel that keeps 5
// messages and had 10 published.
func testHistory(t *testing.T, e *env) {
	r := broker.Retention{Size: 5, TTL: time.Hour}
	last := e.publishN(t, "h", 10, r)
	E := last.Epoch
	at := func(off uint64) broker.Position { return broker.Position{Epoch: E, Offset: off} }
	other := func(off uint64) broker.Position { return broker.Position{Epoch: "other" + E, Offset: off} }
	cases := []struct {
		name     string
		q        broker.HistoryQuery
		complete bool
		want     []uint64
	}{
		{"since 0: trimmed", broker.HistoryQuery{Since: at(0), Limit: 10}, false, []uint64{6, 7, 8, 9, 10}},
		{"since just before the oldest", broker.HistoryQuery{Since: at(4), Limit: 10}, false, []uint64{6, 7, 8, 9, 10}},
		{"since the oldest's predecessor", broker.HistoryQuery{Since: at(5), Limit: 10}, true, []uint64{6, 7, 8, 9, 10}},
		{"limit cuts", broker.HistoryQuery{Since: at(7), Limit: 2}, false, []uint64{8, 9}},
		{"limit fits exactly", broker.HistoryQuery{Since: at(7), Limit: 3}, true, []uint64{8, 9, 10}},
		{"since the position", broker.HistoryQuery{Since: at(10), Limit: 10}, true, nil},
		{"since past the position", broker.HistoryQuery{Since: at(11), Limit: 10}, false, nil},
		{"since the largest offset", broker.HistoryQuery{Since: at(math.MaxUint64), Limit: 10}, false, nil},
		{"limit 0: position only", broker.HistoryQuery{Since: at(7)}, true, nil},
		{"limit 0, trimmed", broker.HistoryQuery{Since: at(1)}, false, nil},
		{"no since: newest, oldest first", broker.HistoryQuery{Limit: 3}, false, []uint64{8, 9, 10}},
		{"no since, more than kept", broker.HistoryQuery{Limit: 100}, false, []uint64{6, 7, 8, 9, 10}},
		{"reverse, no since", broker.HistoryQuery{Limit: 3, Reverse: true}, false, []uint64{10, 9, 8}},
		{"reverse since", broker.HistoryQuery{Since: at(6), Limit: 2, Reverse: true}, true, []uint64{10, 9}},
		{"reverse since, trimmed", broker.HistoryQuery{Since: at(2), Limit: 10, Reverse: true}, false, []uint64{10, 9, 8, 7, 6}},
		{"reverse, snapshot", broker.HistoryQuery{Limit: 1, Reverse: true}, false, []uint64{10}},
		{"other epoch: from the oldest", broker.HistoryQuery{Since: other(3), Limit: 10}, false, []uint64{6, 7, 8, 9, 10}},
		{"other epoch, limit", broker.HistoryQuery{Since: other(8), Limit: 2}, false, []uint64{6, 7}},
		{"other epoch, reverse", broker.HistoryQuery{Since: other(8), Limit: 2, Reverse: true}, false, []uint64{10, 9}},
		{"other epoch, largest offset", broker.HistoryQuery{Since: other(math.MaxUint64), Limit: 2}, false, []uint64{6, 7}},
		{"other epoch at the position", broker.HistoryQuery{Since: other(10), Limit: 10}, false, []uint64{6, 7, 8, 9, 10}},
		{"bare offset (no epoch)", broker.HistoryQuery{Since: broker.Position{Offset: 7}, Limit: 10}, false, []uint64{8, 9, 10}},
	}
	for _, c := range cases {
		h := e.history(t, "h", c.q)
		checkHistory(t, fmt.Sprintf("%s %+v", c.name, c.q), h, E, 10, c.complete, c.want...)
	}
	// Data survives too.
	h := e.history(t, "h", broker.HistoryQuery{Since: at(9), Limit: 1})
	if len(h.Messages) != 1 || string(h.Messages[0].Data) != string(payload(10)) || h.Messages[0].Channel != "h" {
		t.Errorf("history message = %+v, want channel h, data %s", h.Messages, payload(10))
	}
}

// testHistoryTrimmed checks that a stream holds exactly Size messages.
func testHistoryTrimmed(t *testing.T, e *env) {
	r := broker.Retention{Size: 5, TTL: time.Hour}
	for i := 1; i <= 12; i++ {
		pos := e.publish(t, "trim", payload(i), r)
		h := e.history(t, "trim", broker.HistoryQuery{Since: broker.Position{Epoch: pos.Epoch}, Limit: 100})
		var want []uint64
		for off := max(1, i-4); off <= i; off++ {
			want = append(want, uint64(off))
		}
		checkHistory(t, fmt.Sprintf("after %d publishes", i), h, pos.Epoch, uint64(i), i <= 5, want...)
	}
}

func testHistoryNoRetention(t *testing.T, e *env) {
	r := broker.Retention{Size: 0, TTL: time.Hour}
	last := e.publishN(t, "none", 3, r)
	E := last.Epoch
	checkHistory(t, "since 0", e.history(t, "none", broker.HistoryQuery{Since: broker.Position{Epoch: E}, Limit: 10}), E, 3, false)
	checkHistory(t, "since 2", e.history(t, "none", broker.HistoryQuery{Since: broker.Position{Epoch: E, Offset: 2}, Limit: 10}), E, 3, false)
	checkHistory(t, "since the position", e.history(t, "none", broker.HistoryQuery{Since: broker.Position{Epoch: E, Offset: 3}, Limit: 10}), E, 3, true)
	checkHistory(t, "no since", e.history(t, "none", broker.HistoryQuery{Limit: 1, Reverse: true}), E, 3, false)
	// The position survives without history.
	if pos := e.publish(t, "none", payload(4), r); pos != (broker.Position{Epoch: E, Offset: 4}) {
		t.Fatalf("publish = %+v, want %s:4", pos, E)
	}
}

// testHistoryRetentionDropped: a publish with Size 0 drops what earlier
// publishes kept (the namespace's rules changed).
func testHistoryRetentionDropped(t *testing.T, e *env) {
	e.publishN(t, "drop", 3, broker.Retention{Size: 5, TTL: time.Hour})
	pos := e.publish(t, "drop", payload(4), broker.Retention{TTL: time.Hour})
	E := pos.Epoch
	checkHistory(t, "since 3", e.history(t, "drop", broker.HistoryQuery{Since: broker.Position{Epoch: E, Offset: 3}, Limit: 10}), E, 4, false)
	checkHistory(t, "since 4", e.history(t, "drop", broker.HistoryQuery{Since: broker.Position{Epoch: E, Offset: 4}, Limit: 10}), E, 4, true)
	pos = e.publish(t, "drop", payload(5), broker.Retention{Size: 5, TTL: time.Hour})
	checkHistory(t, "kept again", e.history(t, "drop", broker.HistoryQuery{Since: broker.Position{Epoch: E, Offset: 4}, Limit: 10}), E, 5, true, 5)
}

// testTTLExpiry: once a channel's TTL passed without a publish, its state
// is gone and it starts again in a new epoch.
func testTTLExpiry(t *testing.T, e *env) {
	r := broker.Retention{Size: 10, TTL: time.Second}
	e.subscribe(t, "ttl")
	e.publish(t, "ttl", payload(1), r)
	p2 := e.publish(t, "ttl", payload(2), r)
	e.rec.WaitMessages(t, "ttl", 2)
	var now broker.History
	WaitUntil(t, 10*time.Second, func() error {
		now = e.history(t, "ttl", broker.HistoryQuery{})
		if now.Position.Epoch == p2.Epoch {
			return fmt.Errorf("still in epoch %s at offset %d, 1s TTL", p2.Epoch, now.Position.Offset)
		}
		return nil
	})
	if now.Position.Offset != 0 || now.Position.Epoch == "" {
		t.Fatalf("after expiry the position is %+v, want a new epoch at offset 0", now.Position)
	}
	checkHistory(t, "since the old position", e.history(t, "ttl", broker.HistoryQuery{Since: p2, Limit: 10}), now.Position.Epoch, 0, false)
	p3 := e.publish(t, "ttl", payload(3), r)
	if p3 != (broker.Position{Epoch: now.Position.Epoch, Offset: 1}) {
		t.Fatalf("publish after expiry = %+v, want %s:1", p3, now.Position.Epoch)
	}
	msgs := e.rec.WaitMessages(t, "ttl", 3)
	if m := msgs[2]; m.Epoch != p3.Epoch || m.Offset != 1 {
		t.Fatalf("delivered %s:%d after expiry, want %s:1", m.Epoch, m.Offset, p3.Epoch)
	}
}
