package brokertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// publishKeyed publishes one keyed publication through PublishBatch.
func (e *env) publishKeyed(t *testing.T, channel, key string, i int, r broker.Retention, window time.Duration) broker.PublishResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	res := e.batcher(t).PublishBatch(ctx, []broker.Publication{{
		Channel: channel, Data: payload(i), Retention: r, IdempotencyKey: key, IdempotencyWindow: window,
	}})
	if res[0].Err != nil {
		t.Fatalf("publish %q key %q: %v", channel, key, res[0].Err)
	}
	return res[0]
}

// testIdempotent: a key publishes once per channel; a repeat (alone, or in
// the same batch) answers the first position with Duplicate and publishes
// nothing: no offset, no history entry, no delivery. Another key, or the
// same key on another channel, publishes.
func testIdempotent(t *testing.T, e *env) {
	e.subscribe(t, "i1", "i2")
	first := e.publishKeyed(t, "i1", "k1", 1, keep, 0)
	if first.Duplicate || first.Position.Offset != 1 {
		t.Fatalf("first keyed publish: %+v, want offset 1, not duplicate", first)
	}
	again := e.publishKeyed(t, "i1", "k1", 99, keep, 0)
	if !again.Duplicate || again.Position != first.Position {
		t.Fatalf("repeat: %+v, want duplicate of %+v", again, first.Position)
	}
	other := e.publishKeyed(t, "i1", "k2", 2, keep, 0)
	if other.Duplicate || other.Position.Offset != 2 {
		t.Fatalf("another key: %+v, want offset 2", other)
	}
	elsewhere := e.publishKeyed(t, "i2", "k1", 1, keep, 0)
	if elsewhere.Duplicate || elsewhere.Position.Offset != 1 {
		t.Fatalf("same key on another channel: %+v, want offset 1", elsewhere)
	}
	// A batch: [k3, unkeyed, k3, k1]: the second k3 repeats the first,
	// k1 repeats the publish above.
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	res := e.batcher(t).PublishBatch(ctx, []broker.Publication{
		{Channel: "i1", Data: payload(3), Retention: keep, IdempotencyKey: "k3"},
		{Channel: "i1", Data: payload(4), Retention: keep},
		{Channel: "i1", Data: payload(98), Retention: keep, IdempotencyKey: "k3"},
		{Channel: "i1", Data: payload(97), Retention: keep, IdempotencyKey: "k1"},
	})
	want := []struct {
		off uint64
		dup bool
	}{{3, false}, {4, false}, {3, true}, {1, true}}
	for i, r := range res {
		if r.Err != nil || r.Position.Offset != want[i].off || r.Duplicate != want[i].dup || r.Position.Epoch != first.Position.Epoch {
			t.Fatalf("batch entry %d: %+v, want offset %d duplicate %v in epoch %s", i, r, want[i].off, want[i].dup, first.Position.Epoch)
		}
	}
	next := e.publish(t, "i1", payload(5), keep)
	if next.Offset != 5 {
		t.Fatalf("unkeyed publish after the duplicates got offset %d, want 5", next.Offset)
	}
	msgs := e.rec.WaitMessages(t, "i1", 5)
	checkSequence(t, msgs, "i1", first.Position.Epoch, 1)
	for i, m := range msgs {
		if string(m.Data) != string(payload(i+1)) {
			t.Fatalf("delivered %d carries %s, want %s", m.Offset, m.Data, payload(i+1))
		}
	}
	h := e.history(t, "i1", broker.HistoryQuery{Since: broker.Position{Epoch: first.Position.Epoch}, Limit: 100})
	checkHistory(t, "history", h, first.Position.Epoch, 5, true, 1, 2, 3, 4, 5)
	// Nothing more arrives: the unkeyed publish after the duplicates is
	// the last delivery, and a marker behind it proves the queue drained.
	e.publish(t, "i1", payload(6), keep)
	if got := e.rec.WaitMessages(t, "i1", 6); len(got) != 6 {
		t.Fatalf("delivered %s, want offsets 1-6", offsets(got))
	}
}

// testIdempotentRace: many publishers racing with one key publish it once;
// every one of them gets the same position.
func testIdempotentRace(t *testing.T, e *env) {
	e.subscribe(t, "race")
	const racers = 16
	var wg sync.WaitGroup
	res := make([]broker.PublishResult, racers)
	for i := range racers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
			defer cancel()
			res[i] = e.batcher(t).PublishBatch(ctx, []broker.Publication{{
				Channel: "race", Data: payload(i), Retention: keep, IdempotencyKey: "once",
			}})[0]
		})
	}
	wg.Wait()
	fresh := 0
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("racer %d: %v", i, r.Err)
		}
		if r.Position != res[0].Position {
			t.Fatalf("racer %d got %+v, racer 0 %+v", i, r.Position, res[0].Position)
		}
		if !r.Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d racers published, want 1", fresh)
	}
	marker := e.publish(t, "race", payload(100), keep)
	msgs := e.rec.WaitPosition(t, "race", marker)
	if len(msgs) != 2 {
		t.Fatalf("delivered %s, want the keyed publish and the marker", offsets(msgs))
	}
}

// testIdempotencyWindow: after its window a key publishes again.
func testIdempotencyWindow(t *testing.T, e *env) {
	const window = 50 * time.Millisecond
	first := e.publishKeyed(t, "w", "k", 1, keep, window)
	if first.Duplicate {
		t.Fatalf("first publish answered duplicate")
	}
	WaitUntil(t, WaitTimeout, func() error {
		r := e.publishKeyed(t, "w", "k", 2, keep, window)
		if r.Duplicate {
			if r.Position != first.Position {
				t.Fatalf("duplicate answered %+v, want %+v", r.Position, first.Position)
			}
			return fmt.Errorf("still a duplicate")
		}
		if r.Position.Offset != 2 {
			t.Fatalf("publish after the window got offset %d, want 2", r.Position.Offset)
		}
		return nil
	})
}
