package redisbroker

import (
	"context"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
)

// TestPublishExpiryOnSchedule checks the bounds the publish script keeps
// while it renews a channel's expiry only when due: after every publish
// the position hash and the stream live at least the TTL from the
// publish on and at most TTL + TTL/8; a changed TTL applies at the next
// publish; a stream that starts within a renewal period gets an expiry
// too.
func TestPublishExpiryOnSchedule(t *testing.T) {
	srv := brokertest.StartRedis(t)
	b := newTestBroker(t, srv.URL(), brokertest.NewRecorder())
	adm := admin(t, srv.Addr())
	ctx := context.Background()
	const ttl = 1600 * time.Millisecond
	n := b.names("exp")

	// check publishes once with r and checks the expiry of each key.
	check := func(what string, r broker.Retention, keys ...string) {
		t.Helper()
		start := time.Now()
		if _, err := b.Publish(ctx, "exp", data(1), r); err != nil {
			t.Fatalf("%s: publish: %v", what, err)
		}
		for _, k := range keys {
			left, err := adm.PTTL(ctx, k).Result()
			if err != nil {
				t.Fatalf("%s: PTTL %s: %v", what, k, err)
			}
			// PTTL rounds down to the millisecond.
			if left+time.Since(start)+time.Millisecond < r.TTL {
				t.Fatalf("%s: %s expires %v after a publish %v ago, want at least %v after it", what, k, left, time.Since(start), r.TTL)
			}
			if left > r.TTL+r.TTL/8 {
				t.Fatalf("%s: %s expires in %v, want at most %v", what, k, left, r.TTL+r.TTL/8)
			}
		}
	}

	// A channel kept an hour, then the namespace's TTL shortened.
	check("first publish", broker.Retention{TTL: time.Hour}, n.pos)
	check("TTL shortened", broker.Retention{TTL: ttl}, n.pos)
	// History from now on: the log is new, the renewal not yet due.
	hist := broker.Retention{Size: 5, TTL: ttl}
	check("log started", hist, n.pos, n.log)
	// Publishes for longer than a renewal period (TTL/16): some renew,
	// some do not, every one keeps the bounds.
	renewed, skipped := false, false
	prev := adm.PTTL(ctx, n.pos).Val()
	for end := time.Now().Add(4 * ttl / 16); time.Now().Before(end); {
		check("publish", hist, n.pos, n.log)
		left := adm.PTTL(ctx, n.pos).Val()
		if left > prev {
			renewed = true
		} else {
			skipped = true
		}
		prev = left
	}
	if !renewed || !skipped {
		t.Fatalf("over 4 renewal periods renewed=%v skipped=%v, want both", renewed, skipped)
	}
	if l := adm.HGet(ctx, n.pos, "l").Val(); l != "1600" {
		t.Fatalf("the position hash notes TTL %q, want 1600", l)
	}
}
