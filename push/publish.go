package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/heraldpush/herald/broker"
)

// MaxHistoryLimit caps one history read on every transport (the WebSocket
// history command and GET /api/channels/:channel/history).
const MaxHistoryLimit = 1000

// Publication is one message to publish. Data must be one JSON value, as
// a JSON decoder (or json.Marshal) hands it over: every transport decodes
// before it publishes, so the syntax is checked there; the Node checks
// the rest (Node.check).
type Publication struct {
	Channel string
	Data    json.RawMessage
	// IdempotencyKey (optional, 1-128 bytes) makes a retried publish
	// happen once: within the namespace's idempotency_window, a publish to
	// the same channel with the same key publishes nothing and answers the
	// first one's position, Duplicate set.
	IdempotencyKey string
}

// Published is the answer to one publication: its position, and whether
// it repeated an idempotency key (nothing was published; the position is
// the first publish's).
type Published struct {
	broker.Position
	Duplicate bool
}

// checked is a Publication that passed Node.check, ready for the broker.
type checked struct {
	channel string
	data    json.RawMessage
	ret     broker.Retention
	key     string
	window  time.Duration
}

// publication returns c as the broker takes it.
func (c checked) publication() broker.Publication {
	return broker.Publication{Channel: c.channel, Data: c.data, Retention: c.ret, IdempotencyKey: c.key, IdempotencyWindow: c.window}
}

// InvalidPublication is the error of a PublishBatch whose entry Index
// was refused before anything was published.
type InvalidPublication struct {
	Index int
	Err   *Error
}

func (e *InvalidPublication) Error() string { return e.Err.Error() }

func (e *InvalidPublication) Unwrap() error { return e.Err }

// check is the one validation of a publication, for every way in: the
// channel and its namespace, the data's encoding, compaction and size.
func (n *Node) check(p Publication) (checked, error) {
	if p.Channel == "" {
		return checked{}, Errorf(CodeBadRequest, `missing "channel"`)
	}
	if len(p.IdempotencyKey) > broker.MaxIdempotencyKey {
		return checked{}, Errorf(CodeBadRequest, "idempotency_key is %d bytes, at most %d are allowed", len(p.IdempotencyKey), broker.MaxIdempotencyKey)
	}
	ns, err := n.opts.Namespaces.Lookup(p.Channel)
	if err != nil {
		return checked{}, AsError(err)
	}
	data := p.Data
	if len(data) == 0 {
		return checked{}, Errorf(CodeBadRequest, `missing "data"`)
	}
	// encoding/json lets invalid UTF-8 through, but a text frame carrying
	// it makes browsers drop the connection.
	if !utf8.Valid(data) {
		return checked{}, Errorf(CodeBadRequest, "data is not valid UTF-8")
	}
	// Decoded data is one valid JSON value in a buffer of its own (the
	// decoders copy it), so it only needs compacting, which copies it
	// again, when it holds whitespace: stored and sent compact, a message
	// never holds a newline (batch frames separate messages with '\n').
	if bytes.ContainsAny(data, " \t\r\n") {
		if data, err = CompactData(data); err != nil {
			return checked{}, Errorf(CodeBadRequest, "data is not JSON: %v", err)
		}
	}
	if len(data) > ns.MessageLimit() {
		return checked{}, Errorf(CodeTooLarge, "data for %q is %d bytes, its namespace allows %d", p.Channel, len(data), ns.MessageLimit())
	}
	return checked{channel: p.Channel, data: data, ret: ns.Retention(), key: p.IdempotencyKey, window: ns.IdempotencyWindow}, nil
}

// Publish validates p and publishes it. An error is an *Error; a broker
// failure says whether the message may have been published
// (outcome_unknown) or certainly was not (unavailable).
func (n *Node) Publish(ctx context.Context, p Publication) (Published, error) {
	c, err := n.check(p)
	if err != nil {
		return Published{}, err
	}
	return n.publish(ctx, c)
}

// PublishBatch validates every publication first, so that a bad one
// refuses the whole batch (an *InvalidPublication naming it) with nothing
// published, then publishes them in order: a multi-channel publish and
// /api/batch both come here. Only the broker can fail midway; the
// positions so far come back with its error.
func (n *Node) PublishBatch(ctx context.Context, pubs []Publication) ([]Published, error) {
	cs := make([]checked, len(pubs))
	for i, p := range pubs {
		c, err := n.check(p)
		if err != nil {
			return nil, &InvalidPublication{Index: i, Err: AsError(err)}
		}
		cs[i] = c
	}
	if bp, ok := n.broker.(broker.BatchPublisher); ok {
		return n.publishBatch(ctx, bp, cs)
	}
	out := make([]Published, 0, len(cs))
	for _, c := range cs {
		pos, err := n.publish(ctx, c)
		if err != nil {
			return out, err
		}
		out = append(out, pos)
	}
	return out, nil
}

// publish is the one broker publish of the node, timed for every caller.
// A keyed publication needs an engine that checks keys (a
// BatchPublisher: both of Herald's engines are).
func (n *Node) publish(ctx context.Context, c checked) (Published, error) {
	if c.key != "" {
		bp, ok := n.broker.(broker.BatchPublisher)
		if !ok {
			return Published{}, Errorf(CodeBadRequest, "this broker does not support idempotency_key")
		}
		res, err := n.publishBatch(ctx, bp, []checked{c})
		if err != nil {
			return Published{}, err
		}
		return res[0], nil
	}
	var pos broker.Position
	err := n.timed("publish", func() error {
		var err error
		pos, err = n.broker.Publish(ctx, c.channel, c.data, c.ret)
		return err
	})
	if err != nil {
		return Published{Position: pos}, publishError(err)
	}
	return Published{Position: pos}, nil
}

// publishBatch hands the whole batch to an engine that publishes it in
// one round trip (the Redis engine pipelines it). The answer keeps
// PublishBatch's shape, the positions up to the first failure and its
// error, with one care: the engine's outcomes are independent after a
// failure, so when an entry after a refused one may have gone through,
// the batch's error is outcome_unknown, never "nothing was published".
func (n *Node) publishBatch(ctx context.Context, bp broker.BatchPublisher, cs []checked) ([]Published, error) {
	pubs := make([]broker.Publication, len(cs))
	for i, c := range cs {
		pubs[i] = c.publication()
	}
	var res []broker.PublishResult
	_ = n.timed("publish", func() error {
		res = bp.PublishBatch(ctx, pubs)
		for _, r := range res {
			if r.Err != nil {
				return r.Err
			}
		}
		return nil
	})
	out := make([]Published, 0, len(cs))
	for i, r := range res {
		if r.Err == nil {
			out = append(out, Published{Position: r.Position, Duplicate: r.Duplicate})
			continue
		}
		err := r.Err
		if !errors.Is(err, broker.ErrUncertain) {
			for _, later := range res[i+1:] {
				if later.Err == nil || errors.Is(later.Err, broker.ErrUncertain) {
					err = fmt.Errorf("%w: entry %d was refused, a later one may have been published: %v", broker.ErrUncertain, i, r.Err)
					break
				}
			}
		}
		return out, publishError(err)
	}
	if len(res) != len(cs) { // an engine bug; never answer 2xx for what it did not answer
		return out, publishError(fmt.Errorf("%w: the broker answered %d of %d publishes", broker.ErrUncertain, len(res), len(cs)))
	}
	return out, nil
}

// publishError says of a failed publish whether it may have gone through.
func publishError(err error) *Error {
	e := AsError(err)
	if e.Code == CodeUnavailable && !errors.Is(err, broker.ErrUncertain) {
		e.Message = "broker unavailable, nothing was published; retry later: " + err.Error()
	}
	return e
}

// History reads channel's history for any transport: the messages after
// since (all retained ones when since is zero), at most limit of them, and
// never more than the namespace's history_size or MaxHistoryLimit. limit
// below 0 asks for that most; 0 for the position only.
func (n *Node) History(ctx context.Context, channel string, since broker.Position, limit int) (broker.History, error) {
	ns, err := n.opts.Namespaces.Lookup(channel)
	if err != nil {
		return broker.History{}, AsError(err)
	}
	most := min(max(ns.HistorySize, 0), MaxHistoryLimit)
	if limit < 0 || limit > most {
		limit = most
	}
	hist, err := n.history(ctx, channel, broker.HistoryQuery{Since: since, Limit: limit})
	if err != nil {
		return hist, AsError(err)
	}
	return hist, nil
}
