package push

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/heraldpush/herald/broker"
)

// The pub/sub canary. A broker's pub/sub can stall without an error: a
// Redis connection that answers pings but lost its subscriptions, a
// delivery pipeline stuck behind something. Publishes still succeed (they
// go over other connections) and subscribers silently get nothing. So
// each node publishes a probe through the broker every CanaryInterval on
// a channel only it subscribes, and expects it back through its own
// subscription. When no probe has come back for canaryMisses intervals
// (three probes missed) the node is stalled: Ready fails with
// CodePubSubStalled, the engine is asked to resubscribe
// (broker.Resubscriber) and, once probes come back, every local channel
// is resynced from history, so that what was published meanwhile is
// delivered.

// DefaultCanaryInterval is how often a node probes its pub/sub.
const DefaultCanaryInterval = 5 * time.Second

// canaryMisses is how many intervals without a probe back make the node
// stalled.
const canaryMisses = 3

// canaryChannelPrefix starts each node's probe channel; the rest is
// random per process, so that a node restarted under the same name never
// takes its predecessor's probes for its own.
const canaryChannelPrefix = SystemNamespace + ":canary."

// probe is a canary message.
type probe struct {
	Seq  uint64 `json:"seq"`
	Sent int64  `json:"sent"` // unix nanoseconds
}

// canary is a node's pub/sub probe. Its fields are guarded by mu, a leaf
// lock: the loop, the broker's delivery goroutine (back) and readiness
// checks (stalled, lag) take it briefly.
type canary struct {
	n        *Node
	channel  string
	interval time.Duration

	mu       sync.Mutex
	seq      uint64                  // the last probe sent
	sent     [16]time.Time           // send times by seq % len
	backSeq  uint64                  // the newest probe back
	backSent time.Time               // its send time (the node's start before any)
	rtt      time.Duration           // its round trip
	down     bool                    // stalled, as last seen by the loop
	resubAt  time.Time               // when the loop last asked to resubscribe
	now      func() time.Time        // time.Now; tests move it
	publish  func(data []byte) error // through the broker, bounded by BrokerTimeout
}

func (c *canary) init(n *Node) {
	c.n = n
	c.channel = canaryChannelPrefix + broker.NewEpoch()
	c.interval = n.opts.CanaryInterval
	c.now = time.Now
	c.backSent = c.now()
	c.publish = func(data []byte) error {
		ctx, cancel := context.WithTimeout(n.life, n.opts.BrokerTimeout)
		defer cancel()
		_, err := n.broker.Publish(ctx, c.channel, data, broker.Retention{})
		return err
	}
}

// loop sends a probe every interval and acts on stalls, until the node
// closes. It is one of the node's long-lived goroutines (concurrency.go).
func (c *canary) loop() {
	defer c.n.wg.Done()
	t := time.NewTicker(c.interval)
	defer t.Stop()
	c.tick()
	for {
		select {
		case <-c.n.done:
			return
		case <-t.C:
			c.tick()
		}
	}
}

// tick checks for a stall, then sends the next probe.
func (c *canary) tick() {
	c.mu.Lock()
	now := c.now()
	stalled := now.Sub(c.backSent) > canaryMisses*c.interval
	resub := stalled && now.Sub(c.resubAt) >= canaryMisses*c.interval
	if resub {
		c.resubAt = now
	}
	if stalled && !c.down {
		c.n.log.Warn("broker pub/sub stalled: no canary probe came back", "for", now.Sub(c.backSent).Round(time.Millisecond), "interval", c.interval)
	}
	c.down = c.down || stalled
	c.seq++
	seq := c.seq
	c.sent[seq%uint64(len(c.sent))] = now
	c.mu.Unlock()
	if resub {
		c.resubscribe()
	}
	data, _ := json.Marshal(probe{Seq: seq, Sent: now.UnixNano()})
	if err := c.publish(data); err != nil {
		c.n.log.Debug("canary probe not published", "err", err)
	}
}

// resubscribe asks the engine for fresh pub/sub connections, when it can.
func (c *canary) resubscribe() {
	r, ok := c.n.broker.(broker.Resubscriber)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.n.life, c.n.opts.BrokerTimeout)
	defer cancel()
	c.n.log.Warn("resubscribing the broker's pub/sub after missed canary probes")
	if err := r.Resubscribe(ctx); err != nil {
		c.n.log.Warn("pub/sub resubscribe failed", "err", err)
	}
}

// back records a probe that came back. The first one after a stall
// resyncs every local channel: what the stalled pub/sub did not deliver
// is in history.
func (c *canary) back(data []byte) {
	var p probe
	if json.Unmarshal(data, &p) != nil || p.Seq == 0 {
		return
	}
	c.mu.Lock()
	if p.Seq <= c.backSeq || p.Seq > c.seq {
		c.mu.Unlock()
		return // late, repeated, or not ours
	}
	now := c.now()
	missed := p.Seq > c.backSeq+1 // a probe before it never came back
	c.backSeq, c.backSent = p.Seq, time.Unix(0, p.Sent)
	c.rtt = now.Sub(c.backSent)
	wasDown := c.down
	if now.Sub(c.backSent) <= canaryMisses*c.interval {
		c.down = false
	}
	recovered := wasDown && !c.down
	c.mu.Unlock()
	if recovered {
		c.n.log.Info("broker pub/sub recovered: canary probes are back; resyncing channels")
	}
	if missed || wasDown {
		// Whatever lost the probe may have lost messages too: a gap is
		// found only at a channel's next message, which may never come.
		c.n.recovery.requestResync()
	}
}

// stalled returns how long no probe has come back when that is more than
// canaryMisses intervals, else 0. It is checked at each call, not only at
// ticks, so that readiness turns red as soon as the third interval ends.
func (c *canary) stalled() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.now().Sub(c.backSent); d > canaryMisses*c.interval {
		return d
	}
	return 0
}

// lag is the pub/sub's delay as the canary sees it: the round trip of the
// newest probe back or, when the probe after it is late beyond that, how
// long that one has been out.
func (c *canary) lag() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	lag := c.rtt
	if c.seq > c.backSeq {
		next := c.backSeq + 1
		sent := c.backSent.Add(c.interval) // when its send time is no longer kept
		if c.seq-next < uint64(len(c.sent)) {
			sent = c.sent[next%uint64(len(c.sent))]
		}
		lag = max(lag, c.now().Sub(sent))
	}
	return lag
}

// PubSubLag is the broker pub/sub's delay as the node's canary measures
// it (herald_broker_pubsub_lag_seconds).
func (n *Node) PubSubLag() time.Duration { return n.canary.lag() }

// checkCanary is Ready's canary part: a CodePubSubStalled error when no
// probe has come back for canaryMisses intervals.
func (n *Node) checkCanary() *Error {
	d := n.canary.stalled()
	if d == 0 {
		return nil
	}
	return Errorf(CodePubSubStalled, "broker pub/sub stalled: no canary probe came back for %s (probes every %s); resubscribing",
		d.Round(time.Millisecond), n.canary.interval)
}
