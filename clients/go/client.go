// Package heraldclient is the Go client for Herald's WebSocket protocol
// (docs/protocol.md). A Client keeps one connection up: it reconnects with
// jittered exponential backoff, resubscribes every channel with `since`
// set to the last position it saw, so that nothing published meanwhile is
// missed while it is still in history, and reports when the server could
// not recover (the application should then reload its state).
//
// Closes that retrying cannot fix end the client instead (docs/protocol.md,
// "Close codes"): 4004 (kicked), and 1008 (token refused, user banned) or
// 4003 (token expired) unless Config.TokenFunc supplies a different
// token. Done is closed then and Err says why. A subscribe the server
// refuses (unknown namespace, forbidden, ...) is dropped and reported to
// SubscribeOptions.OnError; the connection and other channels go on.
//
//	c := heraldclient.New(heraldclient.Config{URL: "ws://localhost:8080/ws"})
//	defer c.Close()
//	c.Subscribe("news", func(m heraldclient.Message) { fmt.Println(string(m.Data)) })
//
// Publisher is the other side, for backends: it publishes through the
// HTTP API with an API key.
package heraldclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/lxzan/gws"
)

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("heraldclient: closed")

// CloseError is the server's close that ended the client for good: see
// Permanent.
type CloseError struct {
	Code   uint16
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("heraldclient: closed by the server: %d %s", e.Code, e.Reason)
}

// Permanent reports whether a close code means reconnecting as before
// cannot help (docs/protocol.md, "Close codes"): 1008 (token refused or
// user banned: get a new token), 4003 (token expired: get a new token),
// 4004 (kicked: do not reconnect automatically).
func Permanent(code uint16) bool { return code == 1008 || code == 4003 || code == 4004 }

// Position is a place in a channel's stream.
type Position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// Message is one message received on a channel.
type Message struct {
	Channel  string          `json:"channel"`
	Offset   uint64          `json:"offset"`
	Epoch    string          `json:"epoch"`
	TS       int64           `json:"ts,omitempty"`
	Snapshot bool            `json:"snapshot,omitempty"`
	Data     json.RawMessage `json:"data"`
}

// State is the connection state reported to Config.OnState.
type State int

// Connection states.
const (
	Connecting State = iota
	Connected
	Disconnected
	Closed
)

func (s State) String() string {
	return [...]string{"connecting", "connected", "disconnected", "closed"}[s]
}

// Event describes a state change: Code and Reason are the close frame's
// when the server closed the connection.
type Event struct {
	State  State
	Code   uint16
	Reason string
	Err    error
}

// Config configures a Client.
type Config struct {
	// URL is the WebSocket endpoint, e.g. ws://localhost:8080/ws. With
	// several URLs (URLs), reconnects rotate through them.
	URL  string
	URLs []string
	// Token is sent as the token query parameter; TokenFunc, if set, is
	// asked for a fresh token before every connect.
	Token     string
	TokenFunc func(ctx context.Context) (string, error)
	// Header is sent with the handshake (Origin, for example).
	Header http.Header
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 100ms
	// and 10s); each delay is jittered.
	MinBackoff, MaxBackoff time.Duration
	// Dialer dials TCP; nil uses a net.Dialer with a 5 s timeout.
	Dialer *net.Dialer
	// OnState is called on every connection state change.
	OnState func(Event)
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// SubscribeOptions tune one subscription.
type SubscribeOptions struct {
	// Since resumes from a known position (e.g. persisted by the app).
	Since *Position
	// OnReset is called when the server could not deliver every message
	// since the last position (recovered: false): reload state then.
	OnReset func(channel string, at Position)
	// OnSubscribed is called after each (re)subscribe is confirmed.
	OnSubscribed func(channel string, at Position, recovered bool)
	// OnError is called when the server refuses the subscribe. The
	// subscription is dropped, except for code "unavailable" (the broker
	// is down for now), which is retried on the next connection.
	OnError func(channel string, err *ServerError)
}

type subscription struct {
	handler func(Message)
	opts    SubscribeOptions
	pos     Position // last delivered; guarded by Client.mu
	hasPos  bool
}

// Client is a reconnecting Herald WebSocket client. Handlers run on the
// client's read goroutine, one message at a time, in order per channel.
type Client struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	subs    map[string]*subscription
	conn    *gws.Conn
	nextID  uint64
	waiters map[uint64]chan reply
	subIDs  map[uint64]string // subscribe id -> channel, to route its error
	urlIdx  int
	err     error // why run stopped for good (*CloseError); set before done closes
}

type reply struct {
	frame serverFrame
	err   error
}

// New starts a client; it connects in the background and keeps
// reconnecting until Close.
func New(cfg Config) *Client {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{Timeout: 5 * time.Second}
	}
	if len(cfg.URLs) == 0 && cfg.URL != "" {
		cfg.URLs = []string{cfg.URL}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg: cfg, log: log, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		subs: make(map[string]*subscription), waiters: make(map[uint64]chan reply),
		subIDs: make(map[uint64]string),
	}
	go c.run()
	return c
}

// Subscribe starts delivering channel's messages to h. It returns at once;
// the subscription is (re)made on every connection.
func (c *Client) Subscribe(channel string, h func(Message), opts ...SubscribeOptions) error {
	sub := &subscription{handler: h}
	if len(opts) > 0 {
		sub.opts = opts[0]
	}
	if sub.opts.Since != nil {
		sub.pos, sub.hasPos = *sub.opts.Since, true
	}
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		return ErrClosed
	}
	if _, dup := c.subs[channel]; dup {
		c.mu.Unlock()
		return fmt.Errorf("heraldclient: already subscribed to %q", channel)
	}
	c.subs[channel] = sub
	conn := c.conn
	frame := c.subscribeFrameLocked(channel, sub)
	c.mu.Unlock()
	if conn != nil {
		_ = conn.WriteMessage(gws.OpcodeText, frame)
	}
	return nil
}

// Unsubscribe stops delivering channel's messages.
func (c *Client) Unsubscribe(channel string) {
	c.mu.Lock()
	delete(c.subs, channel)
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		b, _ := json.Marshal(map[string]string{"type": "unsubscribe", "channel": channel})
		_ = conn.WriteMessage(gws.OpcodeText, b)
	}
}

// Position returns the last position delivered on channel.
func (c *Client) Position(channel string) (Position, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.subs[channel]; s != nil && s.hasPos {
		return s.pos, true
	}
	return Position{}, false
}

// Publish sends a client publish (the namespace must allow it) with a
// fresh idempotency key and waits for its ack. While its outcome is
// unknown (outcome_unknown, the connection broke before the ack) or it
// was not published (unavailable, not connected yet), it is sent again
// with the same key, for up to DefaultRetryFor or until ctx ends: the
// server publishes it once.
func (c *Client) Publish(ctx context.Context, channel string, data any) (Position, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Position{}, err
	}
	key := NewIdempotencyKey()
	r := newRetrier(DefaultRetryFor)
	for {
		pos, err := c.publishOnce(ctx, channel, key, raw)
		if err == nil || !retryable(err) || ctx.Err() != nil || !r.again(ctx) {
			return pos, err
		}
	}
}

// publishOnce makes one attempt of Publish.
func (c *Client) publishOnce(ctx context.Context, channel, key string, raw json.RawMessage) (Position, error) {
	ch := make(chan reply, 1)
	c.mu.Lock()
	conn := c.conn
	if conn == nil {
		c.mu.Unlock()
		select {
		case <-c.done:
			return Position{}, ErrClosed
		default:
		}
		return Position{}, errors.New("heraldclient: not connected")
	}
	c.nextID++
	id := c.nextID
	c.waiters[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, id)
		c.mu.Unlock()
	}()
	frame, _ := json.Marshal(struct {
		Type           string          `json:"type"`
		ID             uint64          `json:"id"`
		Channel        string          `json:"channel"`
		Data           json.RawMessage `json:"data"`
		IdempotencyKey string          `json:"idempotency_key"`
	}{"publish", id, channel, raw, key})
	if err := conn.WriteMessage(gws.OpcodeText, frame); err != nil {
		return Position{}, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return Position{}, r.err
		}
		return Position{Epoch: r.frame.Epoch, Offset: r.frame.Offset}, nil
	case <-ctx.Done():
		return Position{}, ctx.Err()
	case <-c.done:
		if err := c.Err(); err != nil {
			return Position{}, err
		}
		return Position{}, ErrClosed
	}
}

// Done is closed when the client has stopped: after Close, or after a
// permanent close by the server (then Err is not nil).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client stopped by itself: a *CloseError, or an error
// saying why a fresh token could not be had. Nil while it runs and after
// Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection and stops reconnecting.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		_ = conn.WriteClose(1000, []byte("client closing"))
	}
	<-c.done
	return nil
}

// DropConnection aborts the current connection with a TCP reset, as a
// network failure would, without a close frame. The client reconnects and
// resumes. It exists for fault tests and `herald bench --check`.
func (c *Client) DropConnection() {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return
	}
	if tc, ok := conn.NetConn().(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.NetConn().Close()
}

func (c *Client) state(e Event) {
	if c.cfg.OnState != nil {
		c.cfg.OnState(e)
	}
}

// subscribeFrameLocked is channel's subscribe frame, with an id that
// routes the server's error to the subscription. Must hold c.mu.
func (c *Client) subscribeFrameLocked(channel string, s *subscription) []byte {
	c.nextID++
	c.subIDs[c.nextID] = channel
	f := struct {
		Type    string    `json:"type"`
		ID      uint64    `json:"id"`
		Channel string    `json:"channel"`
		Since   *Position `json:"since,omitempty"`
	}{Type: "subscribe", ID: c.nextID, Channel: channel}
	if s.hasPos {
		p := s.pos
		f.Since = &p
	}
	b, _ := json.Marshal(f)
	return b
}

// run connects, waits for the connection to end and reconnects with
// backoff until Close or a permanent close.
func (c *Client) run() {
	defer close(c.done)
	final := Event{State: Closed}
	defer func() { c.state(final) }()
	backoff := c.cfg.MinBackoff
	var refused string // the token a permanent close refused
	for c.ctx.Err() == nil {
		c.state(Event{State: Connecting})
		start := time.Now()
		ev, token := c.connectOnce(refused)
		if c.ctx.Err() != nil {
			return
		}
		if ev.State != Closed {
			c.state(ev)
		}
		if ev.State == Closed || Permanent(ev.Code) && (ev.Code == 4004 || c.cfg.TokenFunc == nil) {
			// Retrying as before cannot help: stop and say why.
			err := ev.Err
			if err == nil {
				err = &CloseError{Code: ev.Code, Reason: ev.Reason}
			}
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			c.cancel()
			final = Event{State: Closed, Code: ev.Code, Reason: ev.Reason, Err: err}
			c.log.Debug("not reconnecting", "code", ev.Code, "reason", ev.Reason, "err", ev.Err)
			return
		}
		if Permanent(ev.Code) {
			// 1008 or 4003 with a TokenFunc: reconnect with a fresh token,
			// but never again with the refused one.
			refused = token
		}
		if time.Since(start) > 10*time.Second {
			backoff = c.cfg.MinBackoff // it was up for a while: retry fast
		}
		// Full jitter: spread reconnects of many clients after an outage.
		d := backoff/2 + rand.N(backoff/2+1)
		c.log.Debug("reconnecting", "in", d, "code", ev.Code, "reason", ev.Reason, "err", ev.Err)
		select {
		case <-time.After(d):
		case <-c.ctx.Done():
			return
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

func (c *Client) nextURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.cfg.URLs[c.urlIdx%len(c.cfg.URLs)]
	c.urlIdx++
	return u
}

// connectOnce runs one connection to its end and says how it ended, and
// with which token. A TokenFunc that returns refused (the token the server
// closed a connection for with 1008 or 4003) ends the client: State Closed.
func (c *Client) connectOnce(refused string) (ev Event, token string) {
	raw := c.nextURL()
	u, err := url.Parse(raw)
	if err != nil {
		return Event{State: Disconnected, Err: err}, ""
	}
	token = c.cfg.Token
	if c.cfg.TokenFunc != nil {
		if token, err = c.cfg.TokenFunc(c.ctx); err != nil {
			return Event{State: Disconnected, Err: err}, ""
		}
		if refused != "" && token == refused {
			return Event{State: Closed, Err: errors.New("heraldclient: TokenFunc returned the token the server refused")}, token
		}
	}
	if token != "" {
		q := u.Query()
		q.Set("token", token)
		u.RawQuery = q.Encode()
	}
	secure := u.Scheme == "wss" || u.Scheme == "https"
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if secure {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	netConn, err := c.cfg.Dialer.DialContext(c.ctx, "tcp", host)
	if err != nil {
		return Event{State: Disconnected, Err: err}, token
	}
	if secure {
		tc := tls.Client(netConn, &tls.Config{ServerName: u.Hostname()})
		if err := tc.HandshakeContext(c.ctx); err != nil {
			_ = netConn.Close()
			return Event{State: Disconnected, Err: err}, token
		}
		netConn = tc
	}
	h := &connHandler{c: c, closed: make(chan Event, 1)}
	conn, _, err := gws.NewClientFromConn(h, &gws.ClientOption{
		Addr:             u.String(),
		RequestHeader:    c.cfg.Header,
		HandshakeTimeout: 5 * time.Second,
		ReadBufferSize:   4096,
		CheckUtf8Enabled: false,
	}, netConn)
	if err != nil {
		_ = netConn.Close()
		return Event{State: Disconnected, Err: err}, token
	}
	h.conn = conn
	go conn.ReadLoop()
	select {
	case ev := <-h.closed:
		return ev, token
	case <-c.ctx.Done():
		_ = conn.WriteClose(1000, []byte("client closing"))
		return <-h.closed, token
	}
}
