package broker

import (
	"context"
	"testing"
	"time"
)

// TestMemoryExpiryStartsNewEpoch moves the engine's clock past a channel's
// TTL: the next publish and history read start a new epoch (and must not
// trip over the channel's own lock while resetting it).
func TestMemoryExpiryStartsNewEpoch(t *testing.T) {
	m := NewMemory(expiryHandler{})
	defer m.Close(context.Background())
	now := time.Now()
	m.now = func() time.Time { return now }
	ctx := context.Background()
	r := Retention{Size: 10, TTL: time.Minute}
	first, err := m.Publish(ctx, "a", []byte(`1`), r)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	h, err := m.History(ctx, "a", HistoryQuery{Since: first, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if h.Position.Epoch == first.Epoch || h.Position.Offset != 0 || h.Complete || len(h.Messages) != 0 {
		t.Fatalf("after expiry: %+v, want a new empty epoch", h)
	}
	now = now.Add(2 * DefaultTTL)
	p, err := m.Publish(ctx, "a", []byte(`2`), r)
	if err != nil {
		t.Fatal(err)
	}
	if p.Epoch == h.Position.Epoch || p.Offset != 1 {
		t.Fatalf("publish after expiry: %+v, want offset 1 in a new epoch", p)
	}
}

type expiryHandler struct{}

func (expiryHandler) HandleMessage(*Message) {}
func (expiryHandler) HandleReconnect()       {}
