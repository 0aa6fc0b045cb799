// Package webhook POSTs Herald's presence events (online, offline, join,
// leave) to the receivers the config names, in batches, signed, retried.
//
// The events are not made here: the presence store records each one in
// the queue of every webhook that wants it, in the same atomic step that
// decides the transition (push/presence_users.go, broker.Presence), so an
// event is queued once across the cluster however many nodes there are.
// With the Redis broker the queues live in Redis: a node that restarts
// loses nothing queued. Each node runs a Sender; for each webhook only
// the node holding the queue's lease sends, one batch at a time, head
// first, and removes a batch only once the receiver answered 2xx: so
// events arrive in queue order (in order per user), at least once (a
// sender that dies between the answer and the removal sends the batch
// again; receivers dedupe by id).
//
// Goroutines: one per webhook (Sender.run), started by Start and ended
// by Close, which waits for them; an HTTP request in flight is cut short.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
)

// Defaults for Options.
const (
	DefaultRetry      = time.Hour
	DefaultBatch      = 100
	DefaultTimeout    = 5 * time.Second
	DefaultMaxBackoff = 10 * time.Second
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the
	// body under the webhook's secret.
	SignatureHeader = "X-Herald-Signature"
)

// Hook is one receiver, as the config writes it.
type Hook struct {
	URL    string   `yaml:"url" json:"url"`
	Secret string   `yaml:"secret" json:"-"`
	Events []string `yaml:"events" json:"events"`
}

// Validate checks h.
func (h Hook) Validate() error {
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook: url %q: want http:// or https:// and a host", h.URL)
	}
	if h.Secret == "" {
		return fmt.Errorf("webhook %s: secret is empty: receivers check X-Herald-Signature with it", h.URL)
	}
	if len(h.Events) == 0 {
		return fmt.Errorf("webhook %s: no events: want some of online, offline, join, leave", h.URL)
	}
	for _, e := range h.Events {
		switch e {
		case push.EventOnline, push.EventOffline, push.EventJoin, push.EventLeave:
		default:
			return fmt.Errorf("webhook %s: unknown event %q: want online, offline, join or leave", h.URL, e)
		}
	}
	return nil
}

// Queue is the name of h's queue: the same on every node with the same
// config, so that the nodes share it.
func (h Hook) Queue() string {
	sum := sha256.Sum256([]byte(h.URL))
	return "webhook:" + hex.EncodeToString(sum[:8])
}

// Queues are the push.EventQueues of hooks, for push.Options.
func Queues(hooks []Hook) []push.EventQueue {
	out := make([]push.EventQueue, len(hooks))
	for i, h := range hooks {
		out[i] = push.EventQueue{Name: h.Queue(), Events: h.Events}
	}
	return out
}

// Sign returns the X-Herald-Signature value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Options configure a Sender. Zero values pick the defaults.
type Options struct {
	Hooks []Hook
	Store broker.Presence
	// Owner names this node in the queues' leases.
	Owner string
	// Retry is how long an event is retried before it is given up
	// (counted failed); default DefaultRetry.
	Retry time.Duration
	// Batch is the most events one POST carries.
	Batch int
	// Timeout bounds one POST.
	Timeout time.Duration
	// MaxBackoff caps the wait between two attempts (it doubles from
	// 250 ms after each failure).
	MaxBackoff time.Duration
	// Poll is how often an empty queue is looked at again (default 200 ms).
	Poll   time.Duration
	Logger *slog.Logger
}

// Sender delivers the queues of its hooks.
type Sender struct {
	opts   Options
	client *http.Client
	hooks  []*hookState
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

type hookState struct {
	Hook
	queue    string
	sent     atomic.Uint64 // events delivered (2xx) by this node
	expired  atomic.Uint64 // events given up after Retry by this node
	attempts atomic.Uint64 // failed POSTs by this node
}

// New checks the hooks and returns a Sender; Start starts it.
func New(opts Options) (*Sender, error) {
	if opts.Retry <= 0 {
		opts.Retry = DefaultRetry
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.Poll <= 0 {
		opts.Poll = 200 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Owner == "" {
		opts.Owner = broker.NewEpoch()
	}
	if len(opts.Hooks) > 0 && opts.Store == nil {
		return nil, errors.New("webhook: the broker keeps no presence store")
	}
	s := &Sender{opts: opts, client: &http.Client{Timeout: opts.Timeout}}
	seen := map[string]bool{}
	for _, h := range opts.Hooks {
		if err := h.Validate(); err != nil {
			return nil, err
		}
		if seen[h.URL] {
			return nil, fmt.Errorf("webhook %s: listed twice", h.URL)
		}
		seen[h.URL] = true
		s.hooks = append(s.hooks, &hookState{Hook: h, queue: h.Queue()})
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	return s, nil
}

// Start starts one sender goroutine per hook.
func (s *Sender) Start() {
	for _, h := range s.hooks {
		s.wg.Add(1)
		go s.run(h)
	}
}

// Close stops the goroutines and waits for them (or ctx). What is queued
// stays queued.
func (s *Sender) Close(ctx context.Context) error {
	s.stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leaseTTL outlives one POST and the calls around it, so that a live
// sender keeps its lease; a dead one's passes to another node this late.
func (s *Sender) leaseTTL() time.Duration { return 2*s.opts.Timeout + 5*time.Second }

// run delivers h's queue while this node holds its lease.
func (s *Sender) run(h *hookState) {
	defer s.wg.Done()
	var backoff time.Duration
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-s.ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for s.ctx.Err() == nil {
		delay, err := s.step(h)
		switch {
		case err != nil:
			h.attempts.Add(1)
			backoff = min(max(2*backoff, 250*time.Millisecond), s.opts.MaxBackoff)
			s.opts.Logger.Warn("webhook delivery failed; retrying", "url", h.URL, "in", backoff, "err", err)
			delay = backoff
		default:
			backoff = 0
		}
		if delay > 0 && !wait(delay) {
			return
		}
	}
}

// step sends the head batch of h's queue once, and says how long to wait
// before the next step (0: at once).
func (s *Sender) step(h *hookState) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.Timeout)
	defer cancel()
	st := s.opts.Store
	ok, err := st.QueueLease(ctx, h.queue, s.opts.Owner, s.leaseTTL())
	if err != nil {
		return 0, fmt.Errorf("queue lease: %w", err)
	}
	if !ok {
		return time.Second, nil // another node sends; take over if it dies
	}
	batch, err := st.QueuePeek(ctx, h.queue, s.opts.Batch)
	if err != nil {
		return 0, fmt.Errorf("queue: %w", err)
	}
	if len(batch) == 0 {
		return s.opts.Poll, nil
	}
	// Events past Retry are given up, from the head.
	cutoff := time.Now().Add(-s.opts.Retry)
	old := 0
	for _, ev := range batch {
		var e broker.EventJSON
		t, perr := time.Time{}, json.Unmarshal(ev, &e)
		if perr == nil {
			t, perr = time.Parse(time.RFC3339Nano, e.Time)
		}
		if perr == nil && t.After(cutoff) {
			break
		}
		old++
	}
	if old > 0 {
		if err := st.QueueTrim(ctx, h.queue, s.opts.Owner, old); err != nil {
			return 0, fmt.Errorf("queue trim: %w", err)
		}
		h.expired.Add(uint64(old))
		s.opts.Logger.Warn("webhook events given up", "url", h.URL, "events", old, "retry", s.opts.Retry)
		return 0, nil
	}
	body := make([]byte, 0, 128*len(batch))
	body = append(body, '[')
	for i, ev := range batch {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, ev...)
	}
	body = append(body, ']')
	if err := s.post(ctx, h, body); err != nil {
		return 0, err
	}
	if err := st.QueueTrim(ctx, h.queue, s.opts.Owner, len(batch)); err != nil {
		// Another node took the lease: it sends this batch again.
		return 0, fmt.Errorf("queue trim after delivery: %w", err)
	}
	h.sent.Add(uint64(len(batch)))
	return 0, nil
}

func (s *Sender) post(ctx context.Context, h *hookState, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Herald-Webhook")
	req.Header.Set(SignatureHeader, Sign(h.Secret, body))
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return nil
}

// Stats are one hook's figures: Queued and Dropped cluster-wide (from the
// store), the others this node's.
type Stats struct {
	URL, Queue     string
	Queued         int64
	Dropped        int64 // refused by the queue's bound
	Sent           uint64
	Expired        uint64 // given up after Retry
	FailedAttempts uint64
}

// Stats reads every hook's figures.
func (s *Sender) Stats(ctx context.Context) []Stats {
	out := make([]Stats, 0, len(s.hooks))
	for _, h := range s.hooks {
		st := Stats{URL: h.URL, Queue: h.queue, Sent: h.sent.Load(), Expired: h.expired.Load(), FailedAttempts: h.attempts.Load()}
		if qs, err := s.opts.Store.QueueStats(ctx, h.queue); err == nil {
			st.Queued, st.Dropped = qs.Len, qs.Dropped
		} else {
			st.Queued = -1
		}
		out = append(out, st)
	}
	return out
}
