package push

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// batchBroker answers PublishBatch with scripted outcomes, one per entry.
type batchBroker struct {
	*scriptBroker
	outcomes []error // nil: published
	calls    int
}

func (b *batchBroker) PublishBatch(_ context.Context, pubs []broker.Publication) []broker.PublishResult {
	b.calls++
	out := make([]broker.PublishResult, len(pubs))
	for i := range pubs {
		out[i].Err = b.outcomes[i]
		if out[i].Err == nil {
			out[i].Position = broker.Position{Epoch: "e", Offset: uint64(i + 1)}
		}
	}
	return out
}

var _ broker.BatchPublisher = (*batchBroker)(nil)

// A batch goes to an engine that takes batches in one call, and its
// answer never says "nothing was published" when a later entry may have
// been: an engine's outcomes are independent after a failure.
func TestPublishBatchThroughBatchPublisher(t *testing.T) {
	unavailable := fmt.Errorf("%w: refused", broker.ErrUnavailable)
	uncertain := fmt.Errorf("%w: no answer", broker.ErrUncertain)
	for _, tc := range []struct {
		name     string
		outcomes []error
		wantPos  int
		wantCode string // "" for no error
	}{
		{"all published", []error{nil, nil, nil}, 3, ""},
		{"refused from the second on", []error{nil, unavailable, unavailable}, 1, CodeUnavailable},
		{"refused, then published", []error{nil, unavailable, nil}, 1, CodeUncertain},
		{"refused, then uncertain", []error{unavailable, uncertain, unavailable}, 0, CodeUncertain},
		{"uncertain first", []error{uncertain, nil, nil}, 0, CodeUncertain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NewNode(Options{Node: "t", Heartbeat: time.Hour, StatsInterval: time.Hour})
			b := &batchBroker{scriptBroker: newScriptBroker("e"), outcomes: tc.outcomes}
			n.Start(context.Background(), b)
			t.Cleanup(func() { _ = n.Close(context.Background(), CloseGoingAway, "test over") })
			pubs := []Publication{{Channel: "a", Data: []byte(`1`)}, {Channel: "b", Data: []byte(`2`)}, {Channel: "a", Data: []byte(`3`)}}
			pos, err := n.PublishBatch(context.Background(), pubs)
			if b.calls != 1 {
				t.Fatalf("PublishBatch called the engine %d times, want once", b.calls)
			}
			if len(pos) != tc.wantPos {
				t.Errorf("%d positions, want %d", len(pos), tc.wantPos)
			}
			var e *Error
			switch {
			case tc.wantCode == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.wantCode != "" && (!errors.As(err, &e) || e.Code != tc.wantCode):
				t.Fatalf("error %v, want code %s", err, tc.wantCode)
			}
		})
	}
}
