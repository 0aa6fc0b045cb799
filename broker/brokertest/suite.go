// Package brokertest holds what the engines' tests share: Run, the one
// contract suite every broker.Broker must pass; Recorder, a Handler that
// tests can wait on; and StartRedis, which runs a real redis-server for a
// test (other packages use it for multi-node tests too).
package brokertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// NewBroker returns a new engine that delivers to h. The engines it
// returns must not share channel state with each other (for Redis: give
// each its own key prefix). Run closes them when their test ends.
type NewBroker func(t *testing.T, h broker.Handler) broker.Broker

// Run runs the contract suite against the engines newBroker returns, one
// fresh engine per subtest. The memory engine defines the expected answers;
// every engine must give the same ones.
func Run(t *testing.T, newBroker NewBroker) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"OffsetsIncreaseFromOnePerChannel", testOffsets},
		{"EpochKnownBeforeFirstPublish", testEpochBeforePublish},
		{"DeliveryInOrder", testDeliveryInOrder},
		{"OnlySubscribedChannelsDelivered", testOnlySubscribed},
		{"UnsubscribeStopsDelivery", testUnsubscribe},
		{"SubscribeTwiceDeliversOnce", testSubscribeTwice},
		{"SubscribeSeveral", testSubscribeSeveral},
		{"DataRoundTrip", testDataRoundTrip},
		{"ConcurrentPublishersGapFree", testConcurrentPublishers},
		{"History", testHistory},
		{"HistoryTrimmedToSize", testHistoryTrimmed},
		{"HistoryWithoutRetention", testHistoryNoRetention},
		{"HistoryRetentionDropped", testHistoryRetentionDropped},
		{"TTLExpiryStartsNewEpoch", testTTLExpiry},
		{"Batch", testBatch},
		{"BatchConcurrent", testBatchConcurrent},
		{"Idempotent", testIdempotent},
		{"IdempotentRace", testIdempotentRace},
		{"IdempotencyWindow", testIdempotencyWindow},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newEnv(t, newBroker))
		})
	}
}

// env is one subtest's engine and what it delivered.
type env struct {
	b   broker.Broker
	rec *Recorder
}

func newEnv(t *testing.T, newBroker NewBroker) *env {
	rec := NewRecorder()
	b := newBroker(t, rec)
	t.Cleanup(func() {
		// Nothing in the suite breaks a connection.
		if n := rec.Reconnects(); n != 0 {
			t.Errorf("HandleReconnect called %d times, but no connection was lost", n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &env{b: b, rec: rec}
}

// keep retains plenty, for tests that are not about retention.
var keep = broker.Retention{Size: 1000, TTL: time.Hour}

func payload(i int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"n":%d,"s":"h\u00e9llo \"quoted\""}`, i))
}

func (e *env) publish(t *testing.T, channel string, data json.RawMessage, r broker.Retention) broker.Position {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	pos, err := e.b.Publish(ctx, channel, data, r)
	if err != nil {
		t.Fatalf("Publish(%q): %v", channel, err)
	}
	return pos
}

// publishN publishes payload(1..n) and returns the last position.
func (e *env) publishN(t *testing.T, channel string, n int, r broker.Retention) broker.Position {
	t.Helper()
	var pos broker.Position
	for i := 1; i <= n; i++ {
		pos = e.publish(t, channel, payload(i), r)
	}
	return pos
}

func (e *env) history(t *testing.T, channel string, q broker.HistoryQuery) broker.History {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	h, err := e.b.History(ctx, channel, q)
	if err != nil {
		t.Fatalf("History(%q, %+v): %v", channel, q, err)
	}
	return h
}

func (e *env) subscribe(t *testing.T, channels ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := e.b.Subscribe(ctx, channels...); err != nil {
		t.Fatalf("Subscribe(%q): %v", channels, err)
	}
}

func (e *env) unsubscribe(t *testing.T, channels ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := e.b.Unsubscribe(ctx, channels...); err != nil {
		t.Fatalf("Unsubscribe(%q): %v", channels, err)
	}
}

// checkSequence checks that msgs are channel's offsets from..from+len-1 in
// epoch, in order, each with payload(offset-base).
func checkSequence(t *testing.T, msgs []broker.Message, channel, epoch string, from uint64) {
	t.Helper()
	for i, m := range msgs {
		want := from + uint64(i)
		if m.Offset != want || m.Epoch != epoch || m.Channel != channel {
			t.Fatalf("message %d is %s %s:%d, want %s %s:%d (all: %s)", i, m.Channel, m.Epoch, m.Offset, channel, epoch, want, offsets(msgs))
		}
	}
}

func offsets(msgs []broker.Message) string {
	var b bytes.Buffer
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, m.Offset)
	}
	return "[" + b.String() + "]"
}

func testOffsets(t *testing.T, e *env) {
	var epoch string
	for i := 1; i <= 20; i++ {
		pos := e.publish(t, "a", payload(i), keep)
		if i == 1 {
			epoch = pos.Epoch
			if epoch == "" {
				t.Fatal("first publish returned an empty epoch")
			}
		}
		if pos.Offset != uint64(i) || pos.Epoch != epoch {
			t.Fatalf("publish %d returned %s:%d, want %s:%d", i, pos.Epoch, pos.Offset, epoch, i)
		}
	}
	if pos := e.publish(t, "b", payload(1), keep); pos.Offset != 1 || pos.Epoch == "" {
		t.Fatalf("first publish on another channel returned %s:%d, want offset 1", pos.Epoch, pos.Offset)
	}
	if h := e.history(t, "a", broker.HistoryQuery{}); h.Position != (broker.Position{Epoch: epoch, Offset: 20}) || len(h.Messages) != 0 {
		t.Fatalf("History without limit = %+v with %d messages, want position %s:20 only", h.Position, len(h.Messages), epoch)
	}
}

// The hub learns a channel's position when its first subscriber arrives,
// often before anything was published: the first publish must then be in
// that same epoch, or every subscriber would be told history was lost.
func testEpochBeforePublish(t *testing.T, e *env) {
	h := e.history(t, "fresh", broker.HistoryQuery{Limit: 10})
	if h.Position.Epoch == "" || h.Position.Offset != 0 || len(h.Messages) != 0 || h.Complete {
		t.Fatalf("History of a new channel = %+v, want a new epoch at offset 0, no messages, not complete (no since)", h)
	}
	if again := e.history(t, "fresh", broker.HistoryQuery{}); again.Position != h.Position {
		t.Fatalf("position changed from %+v to %+v without a publish", h.Position, again.Position)
	}
	if c := e.history(t, "fresh", broker.HistoryQuery{Since: h.Position, Limit: 10}); !c.Complete || len(c.Messages) != 0 {
		t.Fatalf("History since the current position = %+v, want complete and empty", c)
	}
	if pos := e.publish(t, "fresh", payload(1), keep); pos != (broker.Position{Epoch: h.Position.Epoch, Offset: 1}) {
		t.Fatalf("first publish = %+v, want %s:1 (the epoch History reported)", pos, h.Position.Epoch)
	}
}

func testDeliveryInOrder(t *testing.T, e *env) {
	e.subscribe(t, "live")
	// Published right after Subscribe returned: all must arrive.
	last := e.publishN(t, "live", 100, keep)
	msgs := e.rec.WaitMessages(t, "live", 100)
	if len(msgs) != 100 {
		t.Fatalf("got %d messages, want 100: %s", len(msgs), offsets(msgs))
	}
	checkSequence(t, msgs, "live", last.Epoch, 1)
	for i, m := range msgs {
		if !bytes.Equal(m.Data, payload(i+1)) {
			t.Fatalf("message %d data = %s, want %s", m.Offset, m.Data, payload(i+1))
		}
		if m.Time <= 0 {
			t.Fatalf("message %d has no time", m.Offset)
		}
	}
}

func testOnlySubscribed(t *testing.T, e *env) {
	e.publish(t, "other", payload(1), keep)
	e.subscribe(t, "mine")
	e.publish(t, "other", payload(2), keep)
	e.publish(t, "mine", payload(1), keep)
	e.rec.WaitMessages(t, "mine", 1)
	if got := e.rec.Messages("other"); len(got) != 0 {
		t.Fatalf("delivered %d messages of a channel nobody subscribed: %s", len(got), offsets(got))
	}
}

func testUnsubscribe(t *testing.T, e *env) {
	e.subscribe(t, "u", "marker")
	e.publish(t, "u", payload(1), keep)
	e.rec.WaitMessages(t, "u", 1)
	e.unsubscribe(t, "u")
	e.publish(t, "u", payload(2), keep)
	// Nothing signals a message that is not delivered; a later message on
	// a channel still subscribed is the best barrier there is.
	e.publish(t, "marker", payload(1), keep)
	e.rec.WaitMessages(t, "marker", 1)
	if got := e.rec.Messages("u"); len(got) != 1 {
		t.Fatalf("delivered %s after Unsubscribe", offsets(got))
	}
	e.subscribe(t, "u")
	pos := e.publish(t, "u", payload(3), keep)
	msgs := e.rec.WaitMessages(t, "u", 2)
	if len(msgs) != 2 || msgs[1].Offset != pos.Offset {
		t.Fatalf("after subscribing again got %s, want [1 %d]", offsets(msgs), pos.Offset)
	}
	if err := e.b.Unsubscribe(context.Background(), "never-subscribed"); err != nil {
		t.Fatalf("Unsubscribe of a channel not subscribed: %v", err)
	}
}

func testSubscribeTwice(t *testing.T, e *env) {
	e.subscribe(t, "dup")
	e.subscribe(t, "dup")
	last := e.publishN(t, "dup", 5, keep)
	msgs := e.rec.WaitMessages(t, "dup", 5)
	e.publish(t, "dup", payload(6), keep)
	msgs = e.rec.WaitMessages(t, "dup", 6)
	if len(msgs) != 6 {
		t.Fatalf("got %s, want each of 1..6 once", offsets(msgs))
	}
	checkSequence(t, msgs, "dup", last.Epoch, 1)
}

func testSubscribeSeveral(t *testing.T, e *env) {
	chans := []string{"s1", "s2", "s3", "ns:s4"}
	e.subscribe(t, chans...)
	for _, ch := range chans {
		e.publish(t, ch, payload(1), keep)
	}
	for _, ch := range chans {
		if msgs := e.rec.WaitMessages(t, ch, 1); msgs[0].Channel != ch || msgs[0].Offset != 1 {
			t.Fatalf("on %s got %+v", ch, msgs[0])
		}
	}
}

func testDataRoundTrip(t *testing.T, e *env) {
	big, _ := json.Marshal(string(bytes.Repeat([]byte("x"), 60<<10)))
	values := []string{
		`null`, `true`, `0`, `-1.5e10`, `"text"`, `""`, `[]`, `{}`,
		`{"a":[1,2,{"b":"\u00fc\u20ac\ud83d\ude00 ü€😀"}]}`,
		`"line\nbreak \u2028 \"quote\" \\ back"`,
		`{ "spaced" : [ 1 , 2 ] }`,
		string(big),
	}
	e.subscribe(t, "data")
	before := time.Now().Add(-time.Second).UnixMilli()
	for _, v := range values {
		e.publish(t, "data", json.RawMessage(v), keep)
	}
	after := time.Now().Add(time.Second).UnixMilli()
	live := e.rec.WaitMessages(t, "data", len(values))
	h := e.history(t, "data", broker.HistoryQuery{Limit: 100})
	if len(h.Messages) != len(values) {
		t.Fatalf("history has %d messages, want %d", len(h.Messages), len(values))
	}
	for i, v := range values {
		for _, m := range []broker.Message{live[i], h.Messages[i]} {
			if string(m.Data) != v {
				t.Fatalf("message %d data = %.80s, want %.80s", i+1, m.Data, v)
			}
			if m.Time < before || m.Time > after {
				t.Fatalf("message %d time %d not within [%d, %d]", i+1, m.Time, before, after)
			}
		}
		if live[i].Time != h.Messages[i].Time {
			t.Fatalf("message %d: live time %d, history time %d", i+1, live[i].Time, h.Messages[i].Time)
		}
	}
}

func testConcurrentPublishers(t *testing.T, e *env) {
	const workers, each = 8, 25
	e.subscribe(t, "conc")
	var (
		mu     sync.Mutex
		seen   = make(map[uint64]bool)
		epochs = make(map[string]bool)
		wg     sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				pos, err := e.b.Publish(context.Background(), "conc", payload(w*each+i), keep)
				if err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				mu.Lock()
				if seen[pos.Offset] {
					t.Errorf("offset %d assigned twice", pos.Offset)
				}
				seen[pos.Offset], epochs[pos.Epoch] = true, true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for off := uint64(1); off <= workers*each; off++ {
		if !seen[off] {
			t.Fatalf("offset %d never assigned", off)
		}
	}
	if len(epochs) != 1 {
		t.Fatalf("publishes saw %d epochs, want 1", len(epochs))
	}
	msgs := e.rec.WaitMessages(t, "conc", workers*each)
	if len(msgs) != workers*each {
		t.Fatalf("delivered %d messages, want %d", len(msgs), workers*each)
	}
	checkSequence(t, msgs, "conc", msgs[0].Epoch, 1)
}

func testClosed(t *testing.T, e *env) {
	e.publish(t, "c", payload(1), keep)
	ctx := context.Background()
	if err := e.b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := e.b.Publish(ctx, "c", payload(2), keep); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	if err := e.b.Subscribe(ctx, "c"); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if _, err := e.b.History(ctx, "c", broker.HistoryQuery{Limit: 1}); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("History after Close: %v, want ErrClosed", err)
	}
	checkBatchClosed(t, e)
	// The suite's cleanup closes it again: that must be harmless.
}
