package brokertest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/heraldpush/herald/broker"
)

// batcher returns the engine as a BatchPublisher; every engine must be one.
func (e *env) batcher(t *testing.T) broker.BatchPublisher {
	t.Helper()
	bp, ok := e.b.(broker.BatchPublisher)
	if !ok {
		t.Fatalf("%T does not implement broker.BatchPublisher", e.b)
	}
	return bp
}

// testBatch: a batch over several channels, interleaved, gives each
// channel's messages increasing offsets in the batch's order, delivers
// them in that order and keeps them in history, and continues the offsets
// of single publishes.
func testBatch(t *testing.T, e *env) {
	bp := e.batcher(t)
	chans := []string{"b1", "b2", "b3"}
	e.subscribe(t, chans...)
	first := e.publish(t, "b1", payload(0), keep)
	const rounds = 40
	var pubs []broker.Publication
	for i := 1; i <= rounds; i++ {
		for _, ch := range chans {
			pubs = append(pubs, broker.Publication{Channel: ch, Data: payload(i), Retention: keep})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	res := bp.PublishBatch(ctx, pubs)
	if len(res) != len(pubs) {
		t.Fatalf("PublishBatch returned %d results for %d publications", len(res), len(pubs))
	}
	epochs := map[string]string{"b1": first.Epoch}
	next := map[string]uint64{"b1": 2, "b2": 1, "b3": 1}
	for i, r := range res {
		ch := pubs[i].Channel
		if r.Err != nil {
			t.Fatalf("entry %d (%s): %v", i, ch, r.Err)
		}
		if e, ok := epochs[ch]; ok && e != r.Position.Epoch {
			t.Fatalf("entry %d (%s) in epoch %s, want %s", i, ch, r.Position.Epoch, e)
		}
		epochs[ch] = r.Position.Epoch
		if r.Position.Offset != next[ch] {
			t.Fatalf("entry %d (%s) got offset %d, want %d", i, ch, r.Position.Offset, next[ch])
		}
		next[ch]++
	}
	for _, ch := range chans {
		from := uint64(1)
		n := rounds
		if ch == "b1" {
			n++
		}
		msgs := e.rec.WaitMessages(t, ch, n)
		checkSequence(t, msgs, ch, epochs[ch], from)
		for _, m := range msgs[n-rounds:] {
			if want := payload(int(m.Offset) - (n - rounds)); string(m.Data) != string(want) {
				t.Fatalf("%s:%d data %s, want %s", ch, m.Offset, m.Data, want)
			}
		}
		h := e.history(t, ch, broker.HistoryQuery{Since: broker.Position{Epoch: epochs[ch]}, Limit: 1000})
		if !h.Complete || len(h.Messages) != n || h.Position.Offset != uint64(n) {
			t.Fatalf("%s history after the batch: %d messages up to %d, complete %v; want %d, complete", ch, len(h.Messages), h.Position.Offset, h.Complete, n)
		}
	}
	// A publish after the batch continues it.
	if pos := e.publish(t, "b2", payload(99), keep); pos != (broker.Position{Epoch: epochs["b2"], Offset: rounds + 1}) {
		t.Fatalf("publish after the batch = %+v, want %s:%d", pos, epochs["b2"], rounds+1)
	}
	if res := bp.PublishBatch(ctx, nil); len(res) != 0 {
		t.Fatalf("an empty batch returned %d results", len(res))
	}
}

// testBatchConcurrent: batches and single publishes racing on one channel
// keep it gap-free, and each batch's entries stay in its order.
func testBatchConcurrent(t *testing.T, e *env) {
	bp := e.batcher(t)
	e.subscribe(t, "bc")
	const workers, batches, size = 4, 10, 5
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			var err error
			defer func() { errs <- err }()
			for b := range batches {
				pubs := make([]broker.Publication, size)
				for i := range pubs {
					pubs[i] = broker.Publication{Channel: "bc", Data: payload(w*1000 + b*size + i), Retention: keep}
				}
				res := bp.PublishBatch(context.Background(), pubs)
				for i := range res {
					if res[i].Err != nil {
						err = res[i].Err
						return
					}
					if i > 0 && res[i].Position.Offset <= res[i-1].Position.Offset {
						err = fmt.Errorf("batch entries %d and %d got offsets %d, %d", i-1, i, res[i-1].Position.Offset, res[i].Position.Offset)
						return
					}
				}
				if _, err = e.b.Publish(context.Background(), "bc", payload(w), keep); err != nil {
					return
				}
			}
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	total := workers * batches * (size + 1)
	msgs := e.rec.WaitMessages(t, "bc", total)
	checkSequence(t, msgs, "bc", msgs[0].Epoch, 1)
}

// checkBatchClosed: after Close every entry of a batch fails with
// ErrClosed.
func checkBatchClosed(t *testing.T, e *env) {
	res := e.batcher(t).PublishBatch(context.Background(), []broker.Publication{{Channel: "c", Data: payload(1), Retention: keep}, {Channel: "d", Data: payload(2), Retention: keep}})
	for i, r := range res {
		if !errors.Is(r.Err, broker.ErrClosed) {
			t.Errorf("PublishBatch entry %d after Close: %v, want ErrClosed", i, r.Err)
		}
	}
}
