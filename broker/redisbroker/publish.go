package redisbroker

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldpush/herald/broker"
)

// ttlMillis is a retention TTL for PEXPIRE: the default for 0, and at
// least a millisecond.
func ttlMillis(ttl time.Duration) int64 {
	if ttl <= 0 {
		ttl = broker.DefaultTTL
	}
	return int64(max((ttl+time.Millisecond-1)/time.Millisecond, 1))
}

// History implements broker.Broker with one call of historyScript. It
// answers exactly like the memory engine: see historyOf in package broker.
func (b *Broker) History(ctx context.Context, channel string, q broker.HistoryQuery) (broker.History, error) {
	if b.closed.Load() {
		return broker.History{}, broker.ErrClosed
	}
	// The stream range the answer needs. The script replaces start with
	// "-" when q.Since is from another epoch, which then counts as 0.
	since := q.Since.Offset
	noSince := q.Since.Epoch == "" && q.Since.Offset == 0
	mode, count := "", q.Limit
	switch {
	case q.Limit <= 0:
		mode = ""
	case q.Reverse || noSince:
		// Newest first; without since, newest Limit reversed below.
		mode = "r"
	default:
		// One more than asked, to tell whether Limit cut the answer.
		mode, count = "f", q.Limit+1
	}
	start := "-"
	switch {
	case since == math.MaxUint64:
		start = "+" // nothing can follow it (unless the epoch differs)
	case since > 0:
		start = strconv.FormatUint(since+1, 10)
	}
	n := b.names(channel)
	raw, err := historyScript.Run(ctx, b.client, []string{n.pos, n.stream, n.gen},
		broker.NewEpoch(), ttlMillis(0), mode, q.Since.Epoch, start, count).Slice()
	if err != nil {
		return broker.History{}, b.fail("history", channel, err)
	}
	pos, first, entries, err := parseHistory(channel, raw)
	if err != nil {
		return broker.History{}, fmt.Errorf("redisbroker: history %q: %w", channel, err)
	}

	h := broker.History{Position: pos}
	sameEpoch := q.Since.Epoch == "" || q.Since.Epoch == pos.Epoch
	if !sameEpoch {
		since = 0
	}
	oldest := pos.Offset + 1
	if first != 0 {
		oldest = first
	}
	h.Complete = sameEpoch && q.Since.Epoch != "" && since <= pos.Offset && since+1 >= oldest
	if mode == "" {
		return h, nil
	}
	if !q.Reverse && noSince {
		slices.Reverse(entries)
	}
	if len(entries) > q.Limit {
		entries = entries[:q.Limit]
		h.Complete = false
	}
	if len(entries) > 0 {
		h.Messages = entries
	}
	return h, nil
}

// parseHistory decodes historyScript's reply: {epoch, offset, first
// offset, entries}. first is the offset of the oldest retained message, 0 if none.
func parseHistory(channel string, raw []any) (pos broker.Position, first uint64, msgs []broker.Message, err error) {
	if len(raw) != 4 {
		return pos, 0, nil, fmt.Errorf("script returned %d values", len(raw))
	}
	epoch, _ := raw[0].(string)
	offStr, _ := raw[1].(string)
	off, err := strconv.ParseUint(offStr, 10, 64)
	if err != nil {
		return pos, 0, nil, fmt.Errorf("bad offset %q", offStr)
	}
	pos = broker.Position{Epoch: epoch, Offset: off}
	firstStr, _ := raw[2].(string)
	if first, err = strconv.ParseUint(firstStr, 10, 64); err != nil {
		return pos, 0, nil, fmt.Errorf("bad first offset %q", firstStr)
	}
	entries, _ := raw[3].([]any)
	if len(entries) > 0 {
		msgs = make([]broker.Message, 0, len(entries))
	}
	for _, e := range entries {
		m, err := parseEntry(channel, epoch, e)
		if err != nil {
			return pos, 0, nil, err
		}
		msgs = append(msgs, m)
	}
	return pos, first, msgs, nil
}

// parseEntry decodes one stream entry: {"<offset>-0", {"d", data, "t", ms}}.
func parseEntry(channel, epoch string, e any) (broker.Message, error) {
	m := broker.Message{Channel: channel, Epoch: epoch}
	pair, _ := e.([]any)
	if len(pair) != 2 {
		return m, fmt.Errorf("bad stream entry %v", e)
	}
	id, _ := pair[0].(string)
	ms, _, _ := strings.Cut(id, "-")
	off, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return m, fmt.Errorf("bad stream id %q", id)
	}
	m.Offset = off
	fields, _ := pair[1].([]any)
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		v, _ := fields[i+1].(string)
		switch k {
		case "p":
			// "<len>:<data>" (batch.go frame), stored as published.
			if _, d, ok := strings.Cut(v, ":"); ok {
				m.Data = json.RawMessage(d)
			}
		case "d":
			// The raw data, as versions before the framing stored it.
			m.Data = json.RawMessage(v)
		case "t":
			m.Time, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return m, nil
}
