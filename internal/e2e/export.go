package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/heraldpush/herald/internal/server"
)

// The harness for other packages' tests (cmd/herald's command tests):
// the same helpers the suite uses, exported. Nodes come from server.Start
// outside Run.

type (
	// Node is a running node with helpers to reach it.
	Node = testNode
	// Client is a WebSocket client of a Node.
	Client = wsClient
	// Frame is a decoded server frame.
	Frame = frame
	// PublishResult is the answer to an HTTP publish.
	PublishResult = publishResult
	// CutProxy is a TCP proxy that can cut and refuse connections.
	CutProxy = cutProxy
)

// ReadTimeout bounds one read of a Client; a good deadline for WaitFor.
const ReadTimeout = readTimeout

// Config is the default configuration on a random loopback port.
func Config() server.Config { return testConfig() }

// Start starts a node from cfg and stops it when the test ends.
func Start(t testing.TB, cfg server.Config) *Node { return startTestNode(t, cfg) }

// StartCluster starts n nodes sharing the Redis at redisURL, with API key
// "cluster-key".
func StartCluster(t *testing.T, redisURL string, n int) []*Node {
	return startCluster(t, redisURL, n)
}

// URLs lists the nodes' WebSocket and HTTP base URLs.
func URLs(nodes []*Node) (ws, http []string) { return urls(nodes) }

// NewCutProxy forwards to target until told to cut or refuse.
func NewCutProxy(t testing.TB, target string) *CutProxy { return newCutProxy(t, target) }

// WaitFor polls cond until it holds, failing t after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitFor(t, timeout, what, cond)
}

// DecodeJSON decodes b into v or fails t.
func DecodeJSON(t testing.TB, b []byte, v any) { t.Helper(); decodeJSON(t, b, v) }

// JSONEqual reports whether got is the JSON encoding of want.
func JSONEqual(t testing.TB, got json.RawMessage, want any) bool { return jsonEqual(t, got, want) }

// Query builds a URL query from key, value pairs.
func Query(kv ...string) string { return query(kv...) }

// URL is the node's base URL, http://host:port.
func (n *testNode) URL() string { return n.base }

// Publish publishes data to channel through the HTTP API, failing the
// test unless it is accepted.
func (n *testNode) Publish(channel string, data any) PublishResult {
	n.t.Helper()
	return n.publish(channel, data)
}

// Dial connects a client to /ws with query (may be "").
func (n *testNode) Dial(query string) *Client { n.t.Helper(); return n.dial(query) }

// Welcome reads the welcome frame.
func (c *wsClient) Welcome() Frame { c.t.Helper(); return c.welcome() }

// Expect reads the next frame, failing unless its type is typ.
func (c *wsClient) Expect(typ string) Frame { c.t.Helper(); return c.expect(typ) }

// ExpectMessage reads a message of channel with data want.
func (c *wsClient) ExpectMessage(channel string, want any) Frame {
	c.t.Helper()
	return c.expectMessage(channel, want)
}

// Addr is the proxy's address.
func (p *cutProxy) Addr() string { return p.addr() }

// Hold makes the proxy refuse new connections (true) or accept them.
func (p *cutProxy) Hold(refuse bool) { p.hold(refuse) }

// Cut resets every connection through the proxy.
func (p *cutProxy) Cut() { p.cut() }

// Post sends body to path with the node's first API key, failing t
// unless the answer is 2xx.
func (n *testNode) Post(t testing.TB, path, body string) {
	t.Helper()
	r := n.in(t).request("POST", path, json.RawMessage(body), nil)
	if r.Status/100 != 2 {
		t.Fatalf("POST %s: HTTP %d %s", path, r.Status, r.Body)
	}
}
