package e2e

// The end-to-end harness: real nodes built by the suite's constructor
// (server.Start, the wiring the binary uses) on random ports, WebSocket
// clients on coder/websocket (a client that is not gws, so both ends of the protocol are checked
// independently) and HTTP helpers. Multi-node, Redis and recovery tests
// build on it: start several nodes from configs that share a RedisURL and
// dial whichever node a test needs.
//
// Nothing here sleeps to synchronise: reads have deadlines and conditions
// are polled with waitFor until a deadline.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldpush/herald/api"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// Harness timeouts: generous, since they only matter when a test fails,
// and -race on a small machine is slow.
const (
	readTimeout = 5 * time.Second  // one frame
	httpTimeout = 10 * time.Second // one HTTP request
	stopTimeout = 5 * time.Second  // a node's graceful shutdown
)

// testConfig is the default configuration with a random loopback port
// and a fixed node name. Tests change what they need before startTestNode.
func testConfig() server.Config {
	cfg := server.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Node = "test-node"
	cfg.ShutdownTimeout = stopTimeout
	return cfg
}

// testLogger discards logs unless HERALD_TEST_LOG is set (to a level:
// debug, info, warn, error), then it writes text logs to stderr. Logs are
// not sent to t.Log: sessions close asynchronously and may log after the
// test has returned.
func testLogger(t testing.TB) *slog.Logger {
	v := os.Getenv("HERALD_TEST_LOG")
	if v == "" {
		return slog.New(slog.DiscardHandler)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(v)); err != nil {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("test", t.Name())
}

// testNode is a running node with helpers to reach it.
type testNode struct {
	*server.Node
	// The node's parts the tests reach, as fields for brevity.
	addr      string
	core      *push.Node
	api       *api.Server
	served    <-chan error
	debugAddr net.Addr

	t      testing.TB
	base   string // http://host:port
	client *http.Client
}

// startTestNode starts a node from cfg and shuts it down when the test
// ends (after the test's clients, which are cleaned up first).
func startTestNode(t testing.TB, cfg server.Config) *testNode {
	t.Helper()
	n, err := constructor()(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("startNode: %v", err)
	}
	tn := wrapNode(t, n)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("node %s shutdown: %v", tn.addr, err)
		}
		select {
		case err := <-tn.served:
			if err != nil {
				t.Errorf("node %s serve: %v", tn.addr, err)
			}
		case <-ctx.Done():
			t.Errorf("node %s: Serve did not return after shutdown", tn.addr)
		}
		tn.client.CloseIdleConnections()
	})
	return tn
}

// wrapNode gives a running node the harness's helpers.
func wrapNode(t testing.TB, n *server.Node) *testNode {
	return &testNode{
		Node: n, addr: n.Addr(), core: n.Core(), api: n.API(), served: n.Served(), debugAddr: n.DebugAddr(),
		t:      t,
		base:   "http://" + n.Addr(),
		client: &http.Client{Timeout: httpTimeout},
	}
}

// in returns n with its helpers failing t: a subtest must not fail its
// parent from its own goroutine.
func (n *testNode) in(t testing.TB) *testNode {
	m := *n
	m.t = t
	return &m
}

// wsURL is the node's WebSocket URL for path with query (may be "").
func (n *testNode) wsURL(path, query string) string {
	u := "ws://" + n.addr + path
	if query != "" {
		u += "?" + query
	}
	return u
}

// dialOptions tune a test client.
type dialOptions struct {
	// Path is the endpoint, default "/ws".
	Path string
	// Query is the URL query without '?', e.g. "channel=a&channel=b".
	Query string
	// Header is sent with the handshake (Origin, for example).
	Header http.Header
	// ReadBuffer, when > 0, caps the client socket's kernel receive buffer
	// (SO_RCVBUF): a client on a slow link, whose kernel buffers do not
	// hide that it stopped reading.
	ReadBuffer int
	// Compression offers permessage-deflate.
	Compression bool
}

// dial connects a client to the node's /ws with query (may be "").
func (n *testNode) dial(query string) *wsClient {
	n.t.Helper()
	return n.dialWith(dialOptions{Query: query})
}

// dialWith connects a client with options.
func (n *testNode) dialWith(o dialOptions) *wsClient {
	n.t.Helper()
	c, resp, err := n.tryDial(o)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		n.t.Fatalf("dial %s?%s: %v (HTTP %d)", o.Path, o.Query, err, status)
	}
	return c
}

// tryDial is dialWith that returns the error (and the handshake response,
// when there was one) instead of failing the test.
func (n *testNode) tryDial(o dialOptions) (*wsClient, *http.Response, error) {
	if o.Path == "" {
		o.Path = "/ws"
	}
	tr := &http.Transport{}
	if o.ReadBuffer > 0 {
		d := &net.Dialer{}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if tc, ok := c.(*net.TCPConn); ok {
				if err := tc.SetReadBuffer(o.ReadBuffer); err != nil {
					c.Close()
					return nil, err
				}
			}
			return c, nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	mode := websocket.CompressionDisabled
	if o.Compression {
		mode = websocket.CompressionContextTakeover
	}
	conn, resp, err := websocket.Dial(ctx, n.wsURL(o.Path, o.Query), &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: tr},
		HTTPHeader:      o.Header,
		CompressionMode: mode,
	})
	if err != nil {
		return nil, resp, err
	}
	// Herald's own cap on a message is 64 KiB by default but tests raise it;
	// the client must not be the one to refuse a frame.
	conn.SetReadLimit(64 << 20)
	c := &wsClient{t: n.t, conn: conn, resp: resp, timeout: readTimeout}
	n.t.Cleanup(func() { _ = conn.CloseNow() })
	return c, resp, nil
}

// frame is any server -> client frame, decoded loosely: fields a frame
// type does not have stay zero. Raw keeps the bytes as received.
type frame struct {
	Type        string          `json:"type"`
	ID          json.Number     `json:"id"`
	Channel     string          `json:"channel"`
	Epoch       string          `json:"epoch"`
	Offset      uint64          `json:"offset"`
	Recovered   *bool           `json:"recovered"`
	Snapshot    bool            `json:"snapshot"`
	Skipped     uint64          `json:"skipped"`
	TS          int64           `json:"ts"`
	Data        json.RawMessage `json:"data"`
	Code        string          `json:"code"`
	Message     string          `json:"message"`
	Reason      string          `json:"reason"`
	Client      string          `json:"client"`
	Node        string          `json:"node"`
	HeartbeatMS int64           `json:"heartbeat_ms"`
	Batch       bool            `json:"batch"`
	Complete    bool            `json:"complete"`
	Server      bool            `json:"server"`
	Messages    []frame         `json:"messages"`

	Raw []byte `json:"-"`
}

func (f frame) String() string { return string(f.Raw) }

// wsClient is a test WebSocket client. Its helpers fail the test on any
// unexpected frame, error or timeout.
type wsClient struct {
	t       testing.TB
	conn    *websocket.Conn
	resp    *http.Response // the handshake's
	timeout time.Duration
	nextID  int
}

// in returns the same connection with its helpers failing t (for
// subtests). Use one of the two at a time: they share the connection.
func (c *wsClient) in(t testing.TB) *wsClient {
	d := *c
	d.t = t
	return &d
}

// id returns a fresh command id.
func (c *wsClient) id() int {
	c.nextID++
	return c.nextID
}

// sendRaw writes one frame of type typ.
func (c *wsClient) sendRaw(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := c.conn.Write(ctx, typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// sendText writes s as one text frame.
func (c *wsClient) sendText(s string) {
	c.t.Helper()
	c.sendRaw(websocket.MessageText, []byte(s))
}

// send writes v as a JSON text frame.
func (c *wsClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatalf("encode command: %v", err)
	}
	c.sendRaw(websocket.MessageText, b)
}

// readRaw reads one frame with the client's deadline. A deadline that
// passes closes the connection (coder/websocket's rule), which is fine:
// the test is failing anyway.
func (c *wsClient) readRaw() (websocket.MessageType, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return c.conn.Read(ctx)
}

// pingRoundTrip sends a WebSocket ping and waits for its pong. The client
// library reads the pong inside a Read, so one runs meanwhile; it may take
// a frame, and ending it ends the connection: call this last.
func (c *wsClient) pingRoundTrip() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	read := make(chan error, 1)
	go func() {
		_, _, err := c.conn.Read(ctx) // returns when the test ends the context
		read <- err
	}()
	if err := c.conn.Ping(ctx); err != nil {
		c.t.Fatalf("ping: %v", err)
	}
	cancel()
	<-read
}

// read reads and decodes one JSON text frame.
func (c *wsClient) read() frame {
	c.t.Helper()
	typ, b, err := c.readRaw()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		c.t.Fatalf("read: got a %v frame, want text: %q", typ, b)
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		c.t.Fatalf("read: frame is not one JSON object: %v: %q", err, b)
	}
	f.Raw = b
	return f
}

// expect reads one frame and fails unless it has type typ. A server
// ping in between is skipped: with the short heartbeats some tests use,
// one can come between any two frames on a loaded machine.
func (c *wsClient) expect(typ string) frame {
	c.t.Helper()
	f := c.read()
	for f.Type == "ping" && typ != "ping" {
		f = c.read()
	}
	if f.Type != typ {
		c.t.Fatalf("got frame %s, want type %q", f, typ)
	}
	return f
}

// expectError reads one frame and fails unless it is an error with code
// and a non-empty message.
func (c *wsClient) expectError(code string) frame {
	c.t.Helper()
	f := c.expect("error")
	if f.Code != code {
		c.t.Fatalf("got error %s, want code %q", f, code)
	}
	if f.Message == "" {
		c.t.Fatalf("error frame without a message: %s", f)
	}
	return f
}

// expectMessage reads one frame and fails unless it is a message on
// channel whose data equals want (compared as JSON).
func (c *wsClient) expectMessage(channel string, want any) frame {
	c.t.Helper()
	f := c.expect("message")
	if f.Channel != channel {
		c.t.Fatalf("message on %q, want %q: %s", f.Channel, channel, f)
	}
	if !jsonEqual(c.t, f.Data, want) {
		c.t.Fatalf("message data %s, want %s", f.Data, mustJSON(c.t, want))
	}
	return f
}

// welcome reads the welcome frame every connection starts with.
func (c *wsClient) welcome() frame {
	c.t.Helper()
	return c.expect("welcome")
}

// subscribe sends a subscribe command with a fresh id and returns the
// "subscribed" reply, which must echo the id and name the channel.
func (c *wsClient) subscribe(channel string) frame {
	c.t.Helper()
	id := c.id()
	c.send(map[string]any{"type": "subscribe", "id": id, "channel": channel})
	f := c.expect("subscribed")
	if f.ID.String() != fmt.Sprint(id) || f.Channel != channel {
		c.t.Fatalf("subscribed reply %s, want id %d and channel %q", f, id, channel)
	}
	if f.Epoch == "" {
		c.t.Fatalf("subscribed reply without an epoch: %s", f)
	}
	return f
}

// expectClose reads until the connection ends and fails unless the server
// closed it with code and a non-empty reason. It returns the reason and
// the frames read before the close (a slow consumer still has its backlog
// to read).
func (c *wsClient) expectClose(code websocket.StatusCode) (reason string, before [][]byte) {
	c.t.Helper()
	for {
		_, b, err := c.readRaw()
		if err == nil {
			before = append(before, b)
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			c.t.Fatalf("connection ended without a close frame (want %d) after %d frames: %v", code, len(before), err)
		}
		if ce.Code != code {
			c.t.Fatalf("closed with %d %q, want %d", ce.Code, ce.Reason, code)
		}
		if ce.Reason == "" {
			c.t.Fatalf("close %d without a reason", code)
		}
		return ce.Reason, before
	}
}

// httpResult is an HTTP answer, body read.
type httpResult struct {
	Status int
	Header http.Header
	Body   []byte
}

// apiErrorBody is the shape of every HTTP error.
type apiErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// request sends method path with body (nil, []byte, string, or a value
// encoded as JSON). With a nil header the node's first API key, if it has
// one, is sent as a Bearer token; otherwise exactly header is sent, so that
// tests of authentication control it.
func (n *testNode) request(method, path string, body any, header http.Header) httpResult {
	n.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		rd = bytes.NewReader(mustJSON(n.t, b))
	}
	req, err := http.NewRequest(method, n.base+path, rd)
	if err != nil {
		n.t.Fatalf("request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if header == nil {
		if cfg := n.Config(); len(cfg.Keys()) > 0 {
			req.Header.Set("Authorization", "Bearer "+cfg.Keys()[0])
		}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := n.client.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		n.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// publishResult is one channel's answer to a publish.
type publishResult struct {
	Channel string `json:"channel"`
	Epoch   string `json:"epoch"`
	Offset  uint64 `json:"offset"`
}

// publish publishes data to channel with POST /api/publish and returns
// the position the broker gave it.
func (n *testNode) publish(channel string, data any) publishResult {
	n.t.Helper()
	r := n.request("POST", "/api/publish", map[string]any{"channel": channel, "data": data}, nil)
	if r.Status != http.StatusOK {
		n.t.Fatalf("publish to %q: HTTP %d: %s", channel, r.Status, r.Body)
	}
	var res publishResult
	decodeJSON(n.t, r.Body, &res)
	if res.Channel != channel || res.Epoch == "" || res.Offset == 0 {
		n.t.Fatalf("publish to %q: incomplete answer %s", channel, r.Body)
	}
	return res
}

// batchItem is one entry of POST /api/batch.
type batchItem struct {
	Channel  string   `json:"channel,omitempty"`
	Channels []string `json:"channels,omitempty"`
	Data     any      `json:"data"`
}

// batch publishes items in order with POST /api/batch and returns the
// results, one per channel published to.
func (n *testNode) batch(items []batchItem) []publishResult {
	n.t.Helper()
	r := n.request("POST", "/api/batch", map[string]any{"messages": items}, nil)
	if r.Status != http.StatusOK {
		n.t.Fatalf("batch: HTTP %d: %s", r.Status, r.Body)
	}
	var res struct {
		Results []publishResult `json:"results"`
	}
	decodeJSON(n.t, r.Body, &res)
	return res.Results
}

// expectAPIError fails unless r is an error answer with status and code,
// in the documented {"error": {"code", "message"}} shape.
func expectAPIError(t testing.TB, r httpResult, status int, code string) apiErrorBody {
	t.Helper()
	if r.Status != status {
		t.Fatalf("HTTP %d, want %d: %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type %q, want application/json: %s", ct, r.Body)
	}
	var body apiErrorBody
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body is not {\"error\":{\"code\",\"message\"}}: %v: %s", err, r.Body)
	}
	if body.Error.Code != code || body.Error.Message == "" {
		t.Fatalf("error body %s, want code %q and a message", r.Body, code)
	}
	return body
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

func decodeJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// jsonEqual reports whether got and want encode the same JSON value.
func jsonEqual(t testing.TB, got json.RawMessage, want any) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		return false
	}
	decodeJSON(t, mustJSON(t, want), &b)
	return bytes.Equal(mustJSON(t, a), mustJSON(t, b))
}

// query builds a URL query from key, value pairs.
func query(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}
