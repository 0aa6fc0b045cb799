package redisbroker

import (
	"cmp"
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
	raw, err := historyScript.Run(ctx, b.client, []string{n.pos, n.stream, n.gen, n.log},
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
	// entries hold what was asked for, oldest first, and maybe more:
	// the first count (mode f) or the last count (mode r, newest first
	// when Reverse; without since, the newest Limit in order).
	if len(entries) > count {
		if mode == "r" {
			entries = entries[len(entries)-count:]
		} else {
			entries = entries[:count]
		}
	}
	if q.Reverse {
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
// offset, log entries, stream entries, lowest offset wanted}. first is
// the offset of the oldest retained message, 0 if none. The messages it
// returns are those of the entries from the lowest offset wanted and
// from first on, oldest first.
func parseHistory(channel string, raw []any) (pos broker.Position, first uint64, msgs []broker.Message, err error) {
	if len(raw) != 6 {
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
	fromStr, _ := raw[5].(string)
	from, err := strconv.ParseUint(fromStr, 10, 64)
	if err != nil {
		return pos, 0, nil, fmt.Errorf("bad lowest offset %q", fromStr)
	}
	from = max(from, first)
	logs, _ := raw[3].([]any)
	stream, _ := raw[4].([]any)
	if first == 0 || len(logs)+len(stream) == 0 {
		return pos, first, nil, nil
	}
	keep := func(m broker.Message) {
		if m.Offset >= from && m.Offset <= off {
			msgs = append(msgs, m)
		}
	}
	for _, e := range logs {
		if err := parseLogEntry(channel, epoch, e, keep); err != nil {
			return pos, 0, nil, err
		}
	}
	for _, e := range stream {
		m, err := parseEntry(channel, epoch, e)
		if err != nil {
			return pos, 0, nil, err
		}
		keep(m)
	}
	// Each part is in order (forward or reverse); the log's messages are
	// older than the stream's, but nothing here relies on it.
	slices.SortFunc(msgs, func(x, y broker.Message) int { return cmp.Compare(x.Offset, y.Offset) })
	msgs = slices.CompactFunc(msgs, func(x, y broker.Message) bool { return x.Offset == y.Offset })
	return pos, first, msgs, nil
}

// parseLogEntry decodes one entry of the log: {"<first offset>-0", {"n",
// count, "t", ms, "g", "<len>:<data>..."}}, and calls fn with each of
// its messages in order. Their data share one copy of the entry.
func parseLogEntry(channel, epoch string, e any, fn func(broker.Message)) error {
	pair, _ := e.([]any)
	if len(pair) != 2 {
		return fmt.Errorf("bad log entry %v", e)
	}
	id, _ := pair[0].(string)
	ms, _, _ := strings.Cut(id, "-")
	off, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return fmt.Errorf("bad log entry id %q", id)
	}
	var (
		ts   int64
		body string
		n    = -1
	)
	fields, _ := pair[1].([]any)
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		v, _ := fields[i+1].(string)
		switch k {
		case "n":
			n, _ = strconv.Atoi(v)
		case "t":
			ts, _ = strconv.ParseInt(v, 10, 64)
		case "g":
			body = v
		}
	}
	buf := []byte(body)
	for i := 0; len(buf) > 0; i++ {
		data, rest, ok := nextFrame(buf)
		if !ok {
			return fmt.Errorf("bad log entry %q", id)
		}
		fn(broker.Message{Channel: channel, Epoch: epoch, Offset: off + uint64(i), Time: ts, Data: json.RawMessage(data)})
		buf = rest
		n--
	}
	if n != 0 {
		return fmt.Errorf("log entry %q holds another count of messages than its n", id)
	}
	return nil
}

// parseEntry decodes one stream entry, as versions before the log wrote
// them: {"<offset>-0", {"p", "<len>:<data>", "t", ms}} ("d" and the raw
// data in versions before the framing).
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
