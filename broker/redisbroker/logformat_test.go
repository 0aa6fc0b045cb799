package redisbroker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
	"github.com/redis/go-redis/v9"
)

// wantOffsets checks that h holds the messages of offsets from..to in
// order, each with data(offset).
func wantOffsets(t *testing.T, what string, h broker.History, from, to uint64) {
	t.Helper()
	if got, want := len(h.Messages), int(to-from+1); got != want {
		t.Fatalf("%s: %d messages %v, want offsets %d..%d", what, got, offsetsOf(h.Messages), from, to)
	}
	for i, m := range h.Messages {
		off := from + uint64(i)
		if m.Offset != off || string(m.Data) != string(data(int(off))) {
			t.Fatalf("%s: message %d is offset %d data %s, want offset %d data %s", what, i, m.Offset, m.Data, off, data(int(off)))
		}
	}
}

func offsetsOf(ms []broker.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Offset
	}
	return out
}

// legacyPublish publishes data(i) on channel with the previous version's
// script, as one of its nodes does during a rolling upgrade.
func legacyPublishOne(t *testing.T, b *Broker, channel string, i, size int) {
	t.Helper()
	n := b.names(channel)
	d := data(i)
	wire := fmt.Sprintf("%d:%s", len(d), d)
	err := legacyPublishV1.Run(context.Background(), b.client, []string{n.gen, n.pos, n.stream},
		broker.NewEpoch(), time.Now().UnixMilli(), "PUBLISH", 1, 0, ttlMillis(0), size, n.pubsub, wire).Err()
	if err != nil {
		t.Fatalf("older version's publish %d: %v", i, err)
	}
}

// legacyHistory reads channel's history after since the way the previous
// version does, and returns its messages' offsets and the oldest
// retained offset it reports.
func legacyHistory(t *testing.T, b *Broker, channel, epoch string, since uint64) (offsets []uint64, first string) {
	t.Helper()
	n := b.names(channel)
	raw, err := legacyHistoryV1.Run(context.Background(), b.client, []string{n.pos, n.stream, n.gen},
		broker.NewEpoch(), ttlMillis(0), "f", epoch, since+1, 100).Slice()
	if err != nil {
		t.Fatalf("older version's history: %v", err)
	}
	first, _ = raw[2].(string)
	entries, _ := raw[3].([]any)
	for _, e := range entries {
		m, err := parseEntry(channel, epoch, e)
		if err != nil {
			t.Fatal(err)
		}
		offsets = append(offsets, m.Offset)
	}
	return offsets, first
}

// A rolling upgrade: the history an older version kept (one stream entry
// per message, framed or raw data) reads as before, a publish of this
// version moves it into the log, and while nodes of both versions
// publish, this version reads every message and the older one reads
// either a correct history or none (so that its subscribers are told
// recovered: false), never a wrong or gapped one.
func TestHistoryAcrossLogFormats(t *testing.T) {
	srv := brokertest.StartRedis(t)
	b := newTestBroker(t, srv.URL(), brokertest.NewRecorder())
	adm := admin(t, srv.Addr())
	ctx := context.Background()
	const ch, size = "up", 6
	r := broker.Retention{Size: size}
	n := b.names(ch)
	hist := func(since uint64) broker.History {
		t.Helper()
		pos, err := b.History(ctx, ch, broker.HistoryQuery{})
		if err != nil {
			t.Fatal(err)
		}
		h, err := b.History(ctx, ch, broker.HistoryQuery{Since: broker.Position{Epoch: pos.Position.Epoch, Offset: since}, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	// An older version's channel: 1-4, the first two stored raw ("d",
	// before the framing), the others framed.
	legacyPublishOne(t, b, ch, 1, size)
	epoch := adm.HGet(ctx, n.pos, "epoch").Val()
	for i := 2; i <= 4; i++ {
		legacyPublishOne(t, b, ch, i, size)
	}
	// Rebuild the stream with the first two raw.
	adm.Del(ctx, n.stream)
	for i := 1; i <= 4; i++ {
		d := string(data(i))
		vals := []any{"p", fmt.Sprintf("%d:%s", len(d), d), "t", "1"}
		if i <= 2 {
			vals = []any{"d", d, "t", "1"}
		}
		adm.XAdd(ctx, &redis.XAddArgs{Stream: n.stream, ID: fmt.Sprintf("%d-0", i), Values: vals})
	}
	h := hist(0)
	wantOffsets(t, "older version's history", h, 1, 4)
	if !h.Complete || h.Position.Epoch != epoch {
		t.Fatalf("older version's history: complete %v epoch %q, want complete in %q", h.Complete, h.Position.Epoch, epoch)
	}

	// This version publishes 5 and 6: the stream moves into the log.
	for i := 5; i <= 6; i++ {
		if _, err := b.Publish(ctx, ch, data(i), r); err != nil {
			t.Fatal(err)
		}
	}
	if adm.Exists(ctx, n.stream).Val() != 0 || adm.HGet(ctx, n.pos, "h").Val() != "0" || adm.HGet(ctx, n.pos, "g").Val() != "6" {
		t.Fatalf("after this version's publish: stream exists %d, h %q, g %q; want gone, 0, 6",
			adm.Exists(ctx, n.stream).Val(), adm.HGet(ctx, n.pos, "h").Val(), adm.HGet(ctx, n.pos, "g").Val())
	}
	wantOffsets(t, "after the move", hist(0), 1, 6)
	wantOffsets(t, "after the move, since 3", hist(3), 4, 6)
	// The older version reads no history now, and says so.
	if offs, first := legacyHistory(t, b, ch, epoch, 2); len(offs) != 0 || first != "0" {
		t.Fatalf("older version's read of this version's log: offsets %v, oldest %q; want none", offs, first)
	}

	// Both versions publish: 7 and 8 by the older, 9 by this one, 10 by
	// the older again.
	legacyPublishOne(t, b, ch, 7, size)
	legacyPublishOne(t, b, ch, 8, size)
	if offs, first := legacyHistory(t, b, ch, epoch, 6); fmt.Sprint(offs) != "[7 8]" || first != "7" {
		t.Fatalf("older version after its own publishes: offsets %v, oldest %q; want [7 8] from 7", offs, first)
	}
	wantOffsets(t, "log and stream", hist(2), 3, 8)
	if _, err := b.Publish(ctx, ch, data(9), r); err != nil {
		t.Fatal(err)
	}
	legacyPublishOne(t, b, ch, 10, size)
	h = hist(4)
	wantOffsets(t, "mixed", h, 5, 10)
	if !h.Complete {
		t.Fatal("mixed: since 4 with the last 6 of 10 retained is complete")
	}
	if h = hist(3); h.Complete {
		t.Fatal("mixed: since 3 with the last 6 of 10 retained is not complete")
	}
	if offs, first := legacyHistory(t, b, ch, epoch, 9); fmt.Sprint(offs) != "[10]" || first != "10" {
		t.Fatalf("older version: offsets %v, oldest %q; want [10] from 10", offs, first)
	}
	if offs, _ := legacyHistory(t, b, ch, epoch, 5); len(offs) != 1 {
		t.Fatalf("older version since 5: offsets %v, want only [10] (it then reports 6-9 lost)", offs)
	}
	// Reverse and newest-first reads see the same messages.
	rev, err := b.History(ctx, ch, broker.HistoryQuery{Limit: 4, Reverse: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(offsetsOf(rev.Messages)); got != "[10 9 8 7]" {
		t.Fatalf("newest 4, reverse: %s", got)
	}
	last, err := b.History(ctx, ch, broker.HistoryQuery{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(offsetsOf(last.Messages)); got != "[8 9 10]" {
		t.Fatalf("newest 3: %s", got)
	}

	// An older version starts a new epoch (its data lost): the log left
	// behind is not read, and goes at the next publish.
	adm.Del(ctx, n.pos)
	legacyPublishOne(t, b, ch, 1, size)
	h = hist(0)
	wantOffsets(t, "new epoch by the older version", h, 1, 1)
	if _, err := b.Publish(ctx, ch, data(2), r); err != nil {
		t.Fatal(err)
	}
	wantOffsets(t, "new epoch, then this version", hist(0), 1, 2)
	if l := adm.XLen(ctx, n.log).Val(); l != 2 {
		t.Fatalf("log holds %d entries, want 2 (the moved one and this one)", l)
	}
}

// The log is trimmed by messages, not entries: groups of many messages
// and of one keep at least the last size offsets and not much more.
func TestLogTrim(t *testing.T) {
	srv := brokertest.StartRedis(t)
	b := newTestBroker(t, srv.URL(), brokertest.NewRecorder())
	adm := admin(t, srv.Addr())
	ctx := context.Background()
	const ch, size = "trim", 10
	r := broker.Retention{Size: size}
	i := 0
	for round := 0; round < 40; round++ {
		// Groups of 1 to 64 messages in one call.
		k := 1 + (round*37)%64
		pubs := make([]broker.Publication, k)
		for j := range pubs {
			i++
			pubs[j] = broker.Publication{Channel: ch, Data: data(i), Retention: r}
		}
		for _, res := range b.PublishBatch(ctx, pubs) {
			if res.Err != nil {
				t.Fatal(res.Err)
			}
		}
		h, err := b.History(ctx, ch, broker.HistoryQuery{Since: broker.Position{Epoch: "x"}, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		wantOffsets(t, fmt.Sprintf("after %d", i), h, uint64(max(i-size+1, 1)), uint64(i))
	}
	// What the approximate trim keeps: whole nodes (at most 4096 bytes or
	// 100 entries each) beyond the entries that may hold the window.
	var kept int
	for _, e := range adm.XRange(ctx, b.names(ch).log, "-", "+").Val() {
		var n int
		fmt.Sscan(e.Values["n"].(string), &n)
		kept += n
	}
	if kept < size || kept > size+2*logGroupMax+200 {
		t.Fatalf("the log keeps %d messages for a history of %d", kept, size)
	}
}
