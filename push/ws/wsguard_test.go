package ws

import (
	"bufio"
	"context"
	"encoding/binary"
	"github.com/heraldpush/herald/push"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// testNode is a hub with a memory broker behind a real HTTP server that
// serves /ws and /echo, for tests that speak raw bytes to a socket.
type testNode struct {
	hub *push.Node
	srv *httptest.Server
}

func startTestNode(t testing.TB, o push.Options) *testNode {
	t.Helper()
	if o.Node == "" {
		o.Node = "t"
	}
	h := push.NewNode(o)
	h.Start(context.Background(), broker.NewMemory(h))
	mux := http.NewServeMux()
	mux.Handle("/ws", NewServer(h, ServerOptions{HandshakeTimeout: 5 * time.Second}))
	mux.Handle("/echo", NewEchoSocket(h.Options().MaxFrameBytes, 5*time.Second))
	n := &testNode{hub: h, srv: httptest.NewServer(mux)}
	t.Cleanup(func() {
		n.srv.CloseClientConnections()
		n.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Close(ctx, push.CloseGoingAway, "test over")
	})
	return n
}

// rawWS is a client WebSocket spoken byte by byte.
type rawWS struct {
	net.Conn
	br *bufio.Reader
}

// dialRaw opens a WebSocket on path and reads the 101.
func (n *testNode) dialRaw(t testing.TB, path string) *rawWS {
	t.Helper()
	c, err := net.Dial("tcp", n.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return n.handshake(t, c, path)
}

// readUpgrade reads the server's answer to a WebSocket handshake.
func readUpgrade(t testing.TB, c net.Conn) *rawWS {
	t.Helper()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return &rawWS{Conn: c, br: br}
}

// readFrame reads one server frame (servers do not mask).
func (c *rawWS) readFrame() (opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		_, err = io.ReadFull(c.br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		_, err = io.ReadFull(c.br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	if err != nil {
		return 0, nil, err
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return h[0] & 0x0F, payload, err
}

// closeCode reads frames until the close frame and returns its code and
// reason; ok is false when the connection ended without one.
func (c *rawWS) closeCode() (code uint16, reason string, ok bool) {
	for {
		op, p, err := c.readFrame()
		if err != nil {
			return 0, err.Error(), false
		}
		if op == 0x8 {
			if len(p) < 2 {
				return 0, "", true
			}
			return binary.BigEndian.Uint16(p), string(p[2:]), true
		}
	}
}

// maskedFrame builds a client frame: first byte b0, masked payload.
func maskedFrame(b0 byte, payload []byte) []byte {
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xFFFF:
		f = binary.BigEndian.AppendUint16(append(f, 0x80|126), uint16(n))
	default:
		f = binary.BigEndian.AppendUint64(append(f, 0x80|127), uint64(n))
	}
	key := [4]byte{1, 2, 3, 4}
	f = append(f, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

// The red team's frame: a 64-bit length with its top bit set. gws v1.8.9
// turns it into a negative length that passes its size check and panics
// slicing with it, on the connection's read goroutine: the process died.
var negativeLengthFrame = []byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0x01, 0x01, 0x02, 0x03, 0x04}

func TestNegativeLengthFrameClosesOnlyItsConnection(t *testing.T) {
	n := startTestNode(t, push.Options{})
	for _, path := range []string{"/ws?channel=news", "/echo"} {
		t.Run(path, func(t *testing.T) {
			bystander := n.dialRaw(t, path)
			attacker := n.dialRaw(t, path)
			if _, err := attacker.Write(negativeLengthFrame); err != nil {
				t.Fatal(err)
			}
			code, reason, ok := attacker.closeCode()
			if !ok || code != push.CloseProtocol {
				t.Fatalf("attacker: close %d %q (close frame: %v), want %d", code, reason, ok, push.CloseProtocol)
			}
			// The node and the other connection live on.
			bystander.alive(t)
		})
	}
}

// alive checks that the connection still answers: a ping (/ws answers
// pongs) and a text frame (/echo sends it back).
func (c *rawWS) alive(t testing.TB) {
	t.Helper()
	if _, err := c.Write(append(maskedFrame(0x89, []byte("still here")), maskedFrame(0x81, []byte(`"still here"`))...)); err != nil {
		t.Fatal(err)
	}
	for {
		op, p, err := c.readFrame()
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		if op == 0xA && string(p) == "still here" || op == 0x1 && string(p) == `"still here"` {
			return
		}
	}
}

// Every header rule gws could mishandle fails that connection alone:
// 1002 for the framing rules, 1009 past max_frame_bytes; the node and a
// bystander on the same node go on, and each failure is counted.
func TestFrameGuardRejectsBadHeaders(t *testing.T) {
	n := startTestNode(t, push.Options{MaxFrameBytes: 1024})
	maxLen := func(b0 byte, n uint64) []byte { // a masked header with a 64-bit length
		return append(binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, n), 1, 2, 3, 4)
	}
	cases := []struct {
		name  string
		bytes []byte
		code  uint16
	}{
		{"64-bit length, top bit set", negativeLengthFrame, push.CloseProtocol},
		{"64-bit length, all ones", maxLen(0x81, ^uint64(0)), push.CloseProtocol},
		{"64-bit length past the limit", maxLen(0x81, 1<<40), push.CloseTooBig},
		{"16-bit length past the limit", maskedFrame(0x81, make([]byte, 2000)), push.CloseTooBig},
		{"fragments past the limit", append(maskedFrame(0x01, make([]byte, 700)), maskedFrame(0x80, make([]byte, 700))...), push.CloseTooBig},
		{"RSV1 without deflate", maskedFrame(0xC1, []byte("{}")), push.CloseProtocol},
		{"RSV2", maskedFrame(0xA1, []byte("{}")), push.CloseProtocol},
		{"RSV3", maskedFrame(0x91, []byte("{}")), push.CloseProtocol},
		{"reserved data opcode", maskedFrame(0x83, nil), push.CloseProtocol},
		{"reserved control opcode", maskedFrame(0x8B, nil), push.CloseProtocol},
		{"unmasked", []byte{0x81, 0x02, '{', '}'}, push.CloseProtocol},
		{"fragmented ping", maskedFrame(0x09, nil), push.CloseProtocol},
		{"ping of 126 bytes", maskedFrame(0x89, make([]byte, 126)), push.CloseProtocol},
		{"ping with a 64-bit length", maxLen(0x89, 5), push.CloseProtocol},
		{"continuation first", maskedFrame(0x80, []byte("x")), push.CloseProtocol},
		{"text inside a fragmented text", append(maskedFrame(0x01, []byte("{")), maskedFrame(0x81, []byte("{}"))...), push.CloseProtocol},
	}
	bystander := n.dialRaw(t, "/ws?channel=news")
	before := n.hub.Rejections()["bad_frame"]
	protocol := 0
	for _, c := range cases {
		for _, path := range []string{"/ws", "/echo"} {
			for _, split := range []bool{false, true} {
				conn := n.dialRaw(t, path)
				if split { // one byte per write: the guard parses across reads
					for i := range c.bytes {
						if _, err := conn.Write(c.bytes[i : i+1]); err != nil {
							break // the server may fail the connection before the end
						}
					}
				} else if _, err := conn.Write(c.bytes); err != nil {
					t.Fatal(err)
				}
				code, reason, ok := conn.closeCode()
				if !ok || code != c.code {
					t.Errorf("%s on %s (split %v): close %d %q, want %d", c.name, path, split, code, reason, c.code)
				}
				if path == "/ws" && c.code == push.CloseProtocol {
					protocol++
				}
				conn.Close()
			}
		}
	}
	bystander.alive(t)
	if got := n.hub.Rejections()["bad_frame"] - before; got != uint64(protocol) {
		t.Errorf("bad_frame counted %d times, want %d", got, protocol)
	}
}

// Valid frames pass the guard untouched, however they are split: a
// fragmented message with a ping between its fragments, lengths in each
// encoding (a 64-bit one for a small payload too: not minimal, still
// valid for gws), a close with a code.
func TestFrameGuardPassesValidFrames(t *testing.T) {
	n := startTestNode(t, push.Options{MaxFrameBytes: 128 << 10})
	long := `"` + strings.Repeat("y", 70000-2) + `"`
	nonMinimal := append(binary.BigEndian.AppendUint64([]byte{0x81, 0x80 | 127}, 4), 0, 0, 0, 0)
	nonMinimal = append(nonMinimal, `"ab"`...) // mask key 0: the payload as is
	var stream []byte
	stream = append(stream, maskedFrame(0x01, []byte(`"frag`))...)
	stream = append(stream, maskedFrame(0x89, []byte("p"))...)
	stream = append(stream, maskedFrame(0x00, []byte(`men`))...)
	stream = append(stream, maskedFrame(0x80, []byte(`ted"`))...)
	stream = append(stream, maskedFrame(0x81, []byte(strings.Repeat("z", 200)))...)
	stream = append(stream, nonMinimal...)
	stream = append(stream, maskedFrame(0x81, []byte(long))...)
	want := []string{`"fragmented"`, strings.Repeat("z", 200), `"ab"`, long}
	for _, step := range []int{len(stream), 1, 7, 1000} {
		conn := n.dialRaw(t, "/echo")
		for i := 0; i < len(stream); i += step {
			if _, err := conn.Write(stream[i:min(i+step, len(stream))]); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		for len(got) < len(want) {
			op, p, err := conn.readFrame()
			if err != nil {
				t.Fatalf("step %d: after %d messages: %v", step, len(got), err)
			}
			if op == 0x1 {
				got = append(got, string(p))
			}
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("step %d: message %d is %.40q, want %.40q", step, i, got[i], want[i])
			}
		}
		_, _ = conn.Write(maskedFrame(0x88, []byte{0x03, 0xE8}))
		if code, _, ok := conn.closeCode(); !ok || code != push.CloseNormal {
			t.Fatalf("step %d: close answered %d (%v)", step, code, ok)
		}
		conn.Close()
	}
}

// A panic on a connection's read goroutine (here in a handler, through
// the broker hook a history command calls) closes that connection with
// 1011, is counted and leaves the node and the others alone.
func TestReaderPanicClosesOnlyItsConnection(t *testing.T) {
	var armed atomic.Bool
	ns := &push.Namespaces{Default: push.Namespace{HistorySize: 10}}
	n := startTestNode(t, push.Options{Namespaces: ns, ObserveBroker: func(op string, _ time.Duration, _ error) {
		if op == "history" && armed.Load() {
			panic("test: a bug in a handler")
		}
	}})
	bystander := n.dialRaw(t, "/ws?channel=news")
	attacker := n.dialRaw(t, "/ws?channel=news")
	before := push.RecoveredPanics()
	armed.Store(true)
	if _, err := attacker.Write(maskedFrame(0x81, []byte(`{"type":"history","channel":"news"}`))); err != nil {
		t.Fatal(err)
	}
	code, reason, ok := attacker.closeCode()
	if !ok || code != push.CloseInternal {
		t.Fatalf("close %d %q (%v), want %d", code, reason, ok, push.CloseInternal)
	}
	armed.Store(false)
	bystander.alive(t)
	if push.RecoveredPanics() == before {
		t.Error("the panic was not counted")
	}
	// The connection is cleaned up as if it had closed: one session left.
	deadline := time.Now().Add(5 * time.Second)
	for sessionCount(n.hub) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want 1 (the bystander)", sessionCount(n.hub))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := n.hub.Snapshot().Closes["internal_error"]; got != 1 {
		t.Errorf("internal_error closes: %d, want 1", got)
	}
}

// sessionCount is how many sessions n has open.
func sessionCount(n *push.Node) int {
	s, _, _ := n.Counts()
	return s
}
