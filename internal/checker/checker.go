// Package checker proves that Herald loses nothing: it subscribes many
// reconnecting clients (clients/go) to a few channels, publishes
// sequence-numbered messages through the HTTP API and verifies that every
// subscriber got every message exactly once, in order per channel. Faults
// (dropped connections, killed nodes, a restarted Redis) are injected by
// the caller through Config.During. `herald bench --check` and the fault
// tests both run it.
package checker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	heraldclient "github.com/heraldpush/herald/clients/go"
)

// Config describes one check.
type Config struct {
	// WebSocket URLs subscribers connect to (rotated per subscriber and on
	// reconnect) and the HTTP base URLs messages are published through.
	WSURLs   []string
	HTTPURLs []string
	APIKey   string
	// Namespace for the channels; it should keep history_size >= Messages
	// so that every gap is recoverable.
	Namespace   string
	Channels    int
	Subscribers int
	// Messages per channel.
	Messages int
	// Rate caps publishes per second over all channels (0: as fast as the
	// server answers).
	Rate int
	// During runs alongside publishing, with the subscribers: inject faults
	// there. Publishing does not wait for it, the final tally does.
	During func(ctx context.Context, subs []*heraldclient.Client)
	// Drops, without During, resets that many random subscribers'
	// connections (TCP reset, as a network failure) spread over the
	// expected publishing time.
	Drops int
	// Settle bounds the wait for the last deliveries after publishing.
	Settle time.Duration
	// MaxBackoff for the subscribers' reconnects (default 1s).
	MaxBackoff time.Duration
}

// Report is the outcome. A check passes when Missing, Duplicated and
// Reordered are zero.
type Report struct {
	Subscribers int `json:"subscribers"`
	Channels    int `json:"channels"`
	Published   int `json:"published"`
	// Uncertain publishes got no answer (connection lost mid-request):
	// they may or may not have been accepted and are not counted missing.
	Uncertain  int           `json:"uncertain"`
	Expected   int           `json:"expected"`
	Delivered  int           `json:"delivered"`
	Missing    int           `json:"missing"`
	Duplicated int           `json:"duplicated"`
	Reordered  int           `json:"reordered"`
	Resets     int           `json:"resets"` // recovered:false seen
	Reconnects int           `json:"reconnects"`
	Elapsed    time.Duration `json:"elapsed_ns"`
}

// OK reports whether nothing was lost, duplicated or reordered.
func (r Report) OK() bool { return r.Missing == 0 && r.Duplicated == 0 && r.Reordered == 0 }

func (r Report) String() string {
	return fmt.Sprintf("subscribers=%d channels=%d published=%d uncertain=%d expected=%d delivered=%d missing=%d duplicated=%d reordered=%d resets=%d reconnects=%d elapsed=%s",
		r.Subscribers, r.Channels, r.Published, r.Uncertain, r.Expected, r.Delivered, r.Missing, r.Duplicated, r.Reordered, r.Resets, r.Reconnects, r.Elapsed.Round(time.Millisecond))
}

// tally is what one subscriber saw on one channel.
type tally struct {
	mu        sync.Mutex
	seen      []uint8 // times each seq arrived
	last      int     // highest seq seen
	reordered int
	received  int
}

func (t *tally) add(seq int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq < 1 || seq > len(t.seen) {
		return
	}
	prev := t.seen[seq-1]
	if prev < 255 {
		t.seen[seq-1]++
	}
	t.received++
	if prev > 0 {
		return // a duplicate, counted as such, not as a reorder too
	}
	if seq < t.last {
		t.reordered++
	}
	t.last = max(t.last, seq)
}

func (t *tally) complete(published []atomic.Bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range published {
		if published[i].Load() && t.seen[i] == 0 {
			return false
		}
	}
	return true
}

// Run performs one check.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Channels <= 0 || cfg.Subscribers <= 0 || cfg.Messages <= 0 || len(cfg.WSURLs) == 0 || len(cfg.HTTPURLs) == 0 {
		return Report{}, fmt.Errorf("checker: need channels, subscribers, messages, WS and HTTP URLs")
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 30 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Second
	}
	if cfg.Drops > 0 && cfg.During == nil {
		cfg.During = randomDrops(cfg)
	}
	start := time.Now()
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	names := make([]string, cfg.Channels)
	for i := range names {
		names[i] = fmt.Sprintf("check-%s-%d", run, i)
		if cfg.Namespace != "" {
			names[i] = cfg.Namespace + ":" + names[i]
		}
	}
	probeChannel := "check-" + run + "-probe"
	if cfg.Namespace != "" {
		probeChannel = cfg.Namespace + ":" + probeChannel
	}
	for _, base := range cfg.HTTPURLs {
		if err := probe(ctx, cfg, base, probeChannel); err != nil {
			return Report{}, err
		}
	}
	tallies := make([][]*tally, cfg.Subscribers) // [subscriber][channel]
	var resets, reconnects, ready atomic.Int64
	readyCh := make(chan struct{})
	refusedCh := make(chan error, 1) // the first refused subscribe
	subs := make([]*heraldclient.Client, cfg.Subscribers)
	for i := range subs {
		urls := rotate(cfg.WSURLs, i)
		first := true
		subs[i] = heraldclient.New(heraldclient.Config{
			URLs:       urls,
			MaxBackoff: cfg.MaxBackoff,
			OnState: func(e heraldclient.Event) {
				if e.State == heraldclient.Connected {
					if !first {
						reconnects.Add(1)
					}
					first = false
				}
			},
		})
		tallies[i] = make([]*tally, cfg.Channels)
		for j, name := range names {
			t := &tally{seen: make([]uint8, cfg.Messages)}
			tallies[i][j] = t
			once := sync.Once{}
			err := subs[i].Subscribe(name, func(m heraldclient.Message) {
				if seq, ok := seqOf(m.Data); ok {
					t.add(seq)
				}
			}, heraldclient.SubscribeOptions{
				OnSubscribed: func(string, heraldclient.Position, bool) {
					once.Do(func() {
						if ready.Add(1) == int64(cfg.Subscribers*cfg.Channels) {
							close(readyCh)
						}
					})
				},
				OnReset: func(string, heraldclient.Position) { resets.Add(1) },
				OnError: func(channel string, err *heraldclient.ServerError) {
					select {
					case refusedCh <- fmt.Errorf("checker: subscribe %s refused: %s: %s", channel, err.Code, err.Message):
					default:
					}
				},
			})
			if err != nil {
				return Report{}, err
			}
		}
	}
	defer func() {
		for _, c := range subs {
			_ = c.Close()
		}
	}()
	select {
	case <-readyCh:
	case err := <-refusedCh:
		return Report{}, err
	case <-ctx.Done():
		return Report{}, fmt.Errorf("checker: subscribers not ready: %w", ctx.Err())
	case <-time.After(cfg.Settle):
		return Report{}, fmt.Errorf("checker: only %d of %d subscriptions confirmed", ready.Load(), cfg.Subscribers*cfg.Channels)
	}

	var faults sync.WaitGroup
	if cfg.During != nil {
		faults.Add(1)
		go func() {
			defer faults.Done()
			cfg.During(ctx, subs)
		}()
	}
	published := make([][]atomic.Bool, cfg.Channels)
	for j := range published {
		published[j] = make([]atomic.Bool, cfg.Messages)
	}
	var uncertain atomic.Int64
	p := &publisher{urls: cfg.HTTPURLs, key: cfg.APIKey, client: &http.Client{Timeout: 10 * time.Second}}
	if err := p.run(ctx, names, cfg, published, &uncertain); err != nil {
		return Report{}, err
	}
	faults.Wait()

	// Wait until every subscriber has every accepted message, or Settle.
	deadline := time.Now().Add(cfg.Settle)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if allComplete(tallies, published) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling a tally, not waiting on luck
	}

	r := Report{Subscribers: cfg.Subscribers, Channels: cfg.Channels, Uncertain: int(uncertain.Load()),
		Resets: int(resets.Load()), Reconnects: int(reconnects.Load())}
	for j := range published {
		for k := range published[j] {
			if published[j][k].Load() {
				r.Published++
			}
		}
	}
	for i := range tallies {
		for j, t := range tallies[i] {
			t.mu.Lock()
			for k, n := range t.seen {
				if published[j][k].Load() {
					r.Expected++
					if n == 0 {
						r.Missing++
					}
				}
				if n > 0 {
					r.Delivered++
				}
				if n > 1 {
					r.Duplicated += int(n) - 1
				}
			}
			r.Reordered += t.reordered
			t.mu.Unlock()
		}
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

func allComplete(tallies [][]*tally, published [][]atomic.Bool) bool {
	for i := range tallies {
		for j, t := range tallies[i] {
			if !t.complete(published[j]) {
				return false
			}
		}
	}
	return true
}

func rotate(urls []string, i int) []string {
	out := make([]string, len(urls))
	for k := range urls {
		out[k] = urls[(i+k)%len(urls)]
	}
	return out
}

// seqOf reads {"seq": n} from a message's data.
func seqOf(data json.RawMessage) (int, bool) {
	var v struct {
		Seq int `json:"seq"`
	}
	if json.Unmarshal(data, &v) != nil || v.Seq == 0 {
		return 0, false
	}
	return v.Seq, true
}

// publisher sends the sequence-numbered messages, one goroutine per
// channel so that each channel's sequence is published in order.
type publisher struct {
	urls   []string
	key    string
	client *http.Client
}

func (p *publisher) run(ctx context.Context, names []string, cfg Config, published [][]atomic.Bool, uncertain *atomic.Int64) error {
	var tick <-chan time.Time
	if cfg.Rate > 0 {
		t := time.NewTicker(time.Second / time.Duration(cfg.Rate))
		defer t.Stop()
		tick = t.C
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for j, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1; seq <= cfg.Messages; seq++ {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						errs <- ctx.Err()
						return
					}
				}
				ok, err := p.publish(ctx, j+seq, name, seq)
				if err != nil {
					errs <- err
					return
				}
				if ok {
					published[j][seq-1].Store(true)
				} else {
					uncertain.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// publish sends one message, retrying while the answer is 503 (nothing
// was accepted) for up to a minute, through the next node on each try. It
// reports ok=false when a request got no answer: it may have been
// accepted, so it is neither retried (that could duplicate) nor counted.
func (p *publisher) publish(ctx context.Context, n int, channel string, seq int) (bool, error) {
	body := fmt.Appendf(nil, `{"channel":%q,"data":{"seq":%d}}`, channel, seq)
	deadline := time.Now().Add(time.Minute)
	for try := 0; ; try++ {
		url := p.urls[(n+try)%len(p.urls)] + "/api/publish"
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/json")
		if p.key != "" {
			req.Header.Set("Authorization", "Bearer "+p.key)
		}
		resp, err := p.client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			if isRefused(err) && time.Now().Before(deadline) {
				continue // never reached a server: safe to retry elsewhere
			}
			return false, nil
		}
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return true, nil
		case resp.StatusCode == http.StatusGatewayTimeout:
			return false, nil // outcome unknown: retrying could duplicate
		case resp.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline):
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return false, ctx.Err()
			}
		default:
			return false, fmt.Errorf("checker: publish %s #%d: HTTP %d", channel, seq, resp.StatusCode)
		}
	}
}

// randomDrops is cfg.Drops connection resets of random subscribers, spread
// over the time publishing should take at cfg.Rate.
func randomDrops(cfg Config) func(context.Context, []*heraldclient.Client) {
	return func(ctx context.Context, clients []*heraldclient.Client) {
		span := time.Second
		if cfg.Rate > 0 {
			span = time.Duration(cfg.Channels*cfg.Messages) * time.Second / time.Duration(cfg.Rate)
		}
		for i := 0; i < cfg.Drops && ctx.Err() == nil; i++ {
			clients[rand.IntN(len(clients))].DropConnection()
			time.Sleep(span / time.Duration(cfg.Drops)) // the spacing is the fault pattern, not a wait
		}
	}
}
