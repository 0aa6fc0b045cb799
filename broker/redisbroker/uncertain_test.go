package redisbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
)

// outcomes records how each numbered publish was answered.
type outcomes struct {
	mu                     sync.Mutex
	byID                   map[int]string // "ok", "unavailable", "uncertain", "other: ..."
	ok, unavail, uncertain atomic.Int64
}

func (o *outcomes) record(id int, err error) {
	what := "ok"
	switch {
	case err == nil:
		o.ok.Add(1)
	case errors.Is(err, broker.ErrUncertain):
		what = "uncertain"
		o.uncertain.Add(1)
	case errors.Is(err, broker.ErrUnavailable):
		what = "unavailable"
		o.unavail.Add(1)
	default:
		what = "other: " + err.Error()
	}
	o.mu.Lock()
	o.byID[id] = what
	o.mu.Unlock()
}

// Issue 12 item 4: a publish answered ErrUnavailable (HTTP 503, "nothing
// was published") must never be delivered. Publishers (single publishes
// and batches, several channels) run while the test SIGKILLs the
// redis-server it started, many times, each time with publishes in flight;
// two other nodes are subscribed. At the end no subscriber holds a message
// whose publish was answered unavailable.
func TestKillMidPublishNoUnavailableDelivered(t *testing.T) {
	const rounds = 20
	srv := brokertest.StartRedis(t)
	pub := newTestBroker(t, srv.URL(), brokertest.NewRecorder())
	chans := []string{"k0", "k1", "k2", "k3"}
	var subs []*brokertest.Recorder
	for range 2 {
		rec := brokertest.NewRecorder()
		b := newTestBroker(t, srv.URL(), rec, func(o *Options) { o.Prefix = pub.prefix })
		mustSubscribe(t, b, chans...)
		subs = append(subs, rec)
	}
	o := &outcomes{byID: make(map[int]string)}
	var nextID atomic.Int64
	// up is closed when the server is back: a publisher that found it
	// down waits for that instead of spinning.
	stop := make(chan struct{})
	var upMu sync.Mutex
	up := make(chan struct{})
	waitUp := func(err error) {
		if errors.Is(err, broker.ErrUnavailable) {
			upMu.Lock()
			c := up
			upMu.Unlock()
			select {
			case <-c:
			case <-stop:
			}
		}
	}
	var wg sync.WaitGroup
	noHistory := broker.Retention{TTL: time.Hour}
	for w := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if w < 6 {
					id := int(nextID.Add(1))
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					r := retain
					if w%2 == 0 {
						r = noHistory
					}
					_, err := pub.Publish(ctx, chans[id%len(chans)], json.RawMessage(fmt.Sprintf(`{"id":%d}`, id)), r)
					cancel()
					o.record(id, err)
					waitUp(err)
					continue
				}
				// A batch over every channel: one pipeline, cut anywhere.
				pubs := make([]broker.Publication, 6)
				ids := make([]int, len(pubs))
				for i := range pubs {
					ids[i] = int(nextID.Add(1))
					pubs[i] = broker.Publication{Channel: chans[ids[i]%len(chans)], Data: json.RawMessage(fmt.Sprintf(`{"id":%d}`, ids[i])), Retention: retain}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				res := pub.PublishBatch(ctx, pubs)
				cancel()
				for i, r := range res {
					o.record(ids[i], r.Err)
				}
				waitUp(res[len(res)-1].Err)
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	for round := range rounds {
		// Kill after a random number of successes, with publishers busy.
		target := o.ok.Load() + 20 + rand.Int64N(300)
		brokertest.WaitUntil(t, 30*time.Second, func() error {
			if n := o.ok.Load(); n < target {
				return fmt.Errorf("round %d: %d publishes succeeded, waiting for %d", round, n, target)
			}
			return nil
		})
		upMu.Lock()
		up = make(chan struct{})
		upMu.Unlock()
		failed := o.unavail.Load() + o.uncertain.Load()
		srv.Kill()
		brokertest.WaitUntil(t, 10*time.Second, func() error {
			if o.unavail.Load()+o.uncertain.Load() == failed {
				return errors.New("no publish failed yet with Redis down")
			}
			return nil
		})
		srv.Restart()
		// go-redis answers its last dial error for up to a second after
		// a failed dial: wait for the engine, not only the server.
		brokertest.WaitUntil(t, 10*time.Second, func() error { return pub.Ready(context.Background()) })
		upMu.Lock()
		close(up)
		upMu.Unlock()
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{}) // for the deferred close

	// Everything published before an end marker has been delivered (or
	// was lost with a killed server) once the marker arrives. Markers are
	// published until every node got one: a node may still be
	// resubscribing after the last restart.
	for _, ch := range chans {
		brokertest.WaitUntil(t, 15*time.Second, func() error {
			if _, err := pub.Publish(context.Background(), ch, json.RawMessage(`{"id":0}`), retain); err != nil {
				return err
			}
			for i, rec := range subs {
				msgs := rec.Messages(ch)
				if len(msgs) == 0 || string(msgs[len(msgs)-1].Data) != `{"id":0}` {
					return fmt.Errorf("node %d has no end marker on %s yet", i, ch)
				}
			}
			return nil
		})
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	delivered := 0
	for i, rec := range subs {
		for _, ch := range chans {
			for _, m := range rec.Messages(ch) {
				var d struct{ ID int }
				if err := json.Unmarshal(m.Data, &d); err != nil {
					t.Fatalf("node %d got undecodable %s", i, m.Data)
				}
				if d.ID == 0 {
					continue
				}
				delivered++
				switch what := o.byID[d.ID]; what {
				case "ok", "uncertain":
				default:
					t.Errorf("node %d got message %d on %s, whose publish was answered %q", i, d.ID, ch, what)
				}
			}
		}
	}
	t.Logf("%d rounds: %d publishes ok, %d unavailable, %d uncertain; %d deliveries checked",
		rounds, o.ok.Load(), o.unavail.Load(), o.uncertain.Load(), delivered)
	if o.unavail.Load() == 0 || o.uncertain.Load() == 0 {
		t.Errorf("the kills produced %d unavailable and %d uncertain publishes; the test needs both to mean anything", o.unavail.Load(), o.uncertain.Load())
	}
	for id, what := range o.byID {
		if what != "ok" && what != "uncertain" && what != "unavailable" {
			t.Errorf("publish %d answered %s", id, what)
		}
	}
}
