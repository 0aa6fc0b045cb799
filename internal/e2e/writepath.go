package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// lineReader reads a connection frame by frame, or, for a batch=1
// connection, message by message out of its '\n'-separated frames.
type lineReader struct {
	c     *wsClient
	batch bool
	lines []string
}

func (r *lineReader) next(t *testing.T) frame {
	t.Helper()
	for len(r.lines) == 0 {
		typ, b, err := r.c.readRaw()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ != websocket.MessageText {
			t.Fatalf("read: %v frame", typ)
		}
		if !r.batch && strings.Contains(string(b), "\n") {
			t.Fatalf("a batch frame on a plain connection: %.120q", b)
		}
		r.lines = strings.Split(string(b), "\n")
	}
	var f frame
	if err := json.Unmarshal([]byte(r.lines[0]), &f); err != nil {
		t.Fatalf("frame is not JSON (%v): %.120q", err, r.lines[0])
	}
	f.Raw = []byte(r.lines[0])
	r.lines = r.lines[1:]
	return f
}

func (r *lineReader) expect(t *testing.T, typ string) frame {
	t.Helper()
	f := r.next(t)
	if f.Type != typ {
		t.Fatalf("got %s frame %.120s, want %s", f.Type, f.Raw, typ)
	}
	return f
}

// A client that stops reading for a while fills its socket: the server's
// non-blocking write keeps what the socket did not take (often half a
// frame) and a goroutine of the session's own finishes it. The client
// must then read every frame whole and in order, in plain and batch mode,
// while a fast client on the same channel keeps receiving meanwhile.
func TestFullSocketLosesNothing(t *testing.T) {
	const (
		// 200 x 32 KiB = 6.4 MiB: past the largest send buffer Linux
		// grows to (tcp_wmem 4 MiB) plus the client's small one.
		msgs     = 200
		padBytes = 32 << 10
	)
	cfg := e2eConfig()
	// This test is about a full socket, not a full queue or a write that
	// times out (publishing takes a while under -race).
	cfg.MaxQueueBytes = 64 << 20
	cfg.WriteTimeout = time.Minute
	n := startTestNode(t, cfg)

	stalled := map[string]*lineReader{}
	for _, mode := range []string{"plain", "batch"} {
		q := query("channel", "stocks:FULL")
		if mode == "batch" {
			q += "&batch=1"
		}
		c := &lineReader{c: n.dialWith(dialOptions{Query: q, ReadBuffer: 32 << 10}), batch: mode == "batch"}
		c.expect(t, "welcome")
		c.expect(t, "subscribed")
		stalled[mode] = c
	}
	fast := n.dial(query("channel", "stocks:FULL"))
	fast.welcome()
	fast.expect("subscribed")

	pad := strings.Repeat("y", padBytes)
	for i := range msgs {
		n.publish("stocks:FULL", map[string]any{"seq": i, "pad": pad})
		// The fast client reads as it goes: the stalled ones hold no one up.
		if _, b, err := fast.readRaw(); err != nil || !strings.Contains(string(b), fmt.Sprintf(`"seq":%d}`, i)) {
			t.Fatalf("fast client, message %d: %.80q %v", i, b, err)
		}
	}
	n.publish("stocks:FULL", map[string]any{"seq": msgs, "end": true})

	for mode, c := range stalled {
		for next := 0; next <= msgs; {
			m := c.next(t)
			if m.Type == "ping" {
				continue
			}
			var d struct{ Seq int }
			if err := json.Unmarshal(m.Data, &d); err != nil || m.Type != "message" || d.Seq != next {
				t.Fatalf("%s client: got %s %.80s, want message %d", mode, m.Type, m.Data, next)
			}
			next++
		}
	}
	if got := n.core.Rejections()["slow_consumer"]; got != 0 {
		t.Errorf("%d clients closed as slow consumers, want 0", got)
	}
}

// With compression on, a client that offers permessage-deflate is written
// through gws (which keeps the compression state), one that does not
// through the raw writer: both get the same frames, pings included.
func TestCompressedAndPlainClients(t *testing.T) {
	cfg := e2eConfig()
	cfg.Compression = true
	n := startTestNode(t, cfg)

	plain := n.dial(query("channel", "stocks:Z"))
	compressed := n.dialWith(dialOptions{Query: query("channel", "stocks:Z"), Compression: true})
	if ext := compressed.resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("compression not negotiated: Sec-WebSocket-Extensions %q", ext)
	}
	if ext := plain.resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("plain client got Sec-WebSocket-Extensions %q", ext)
	}
	big := strings.Repeat("compressible ", 2000)
	for _, c := range []*wsClient{plain, compressed} {
		c.welcome()
		c.expect("subscribed")
	}
	n.publish("stocks:Z", map[string]any{"text": big})
	for _, c := range []*wsClient{plain, compressed} {
		c.expectMessage("stocks:Z", map[string]any{"text": big})
		// A WebSocket ping is answered through the same queue.
		c.pingRoundTrip()
	}
}

// Invalid UTF-8 passes encoding/json but would make every browser drop
// the connection it arrives on: it is refused at publish.
func TestInvalidUTF8Refused(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	r := n.request("POST", "/api/publish", []byte("{\"channel\":\"news\",\"data\":\"\xff\xfe\"}"), http.Header{"Content-Type": {"application/json"}})
	expectAPIError(t, r, http.StatusBadRequest, "bad_request")
}

// A client whose socket is full and that then sends a close frame: gws
// answers the close by itself and then closes the socket. The answer must
// not wait on the full socket (the session's Drain holds its write lock
// while waiting, for up to write_timeout): the client goes at once, and
// the clients sharing its writer goroutine never wait.
func TestCloseFromStalledClientStallsNoOne(t *testing.T) {
	cfg := e2eConfig()
	cfg.MaxQueueBytes = 64 << 20
	cfg.WriteTimeout = time.Minute // only the lock could hold the writers up
	n := startTestNode(t, cfg)

	// The stalled client: a bare socket with a small receive buffer that
	// reads only the handshake answer.
	nc, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.(*net.TCPConn).SetReadBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(nc, "GET /ws?channel=stocks:STALL HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(nc)
	if status, err := br.ReadString('\n'); err != nil || !strings.Contains(status, " 101 ") {
		t.Fatalf("handshake: %q %v", status, err)
	}

	// Enough fast clients that some share the stalled one's writer (they
	// are dealt out in turn, one per CPU).
	var fast []*wsClient
	for range 4 {
		c := n.dial(query("channel", "stocks:STALL"))
		c.welcome()
		c.expect("subscribed")
		fast = append(fast, c)
	}
	waitFor(t, readTimeout, "all 5 subscribed", func() bool { _, _, subs := n.core.Counts(); return subs == 5 })

	// 6 MB: past the largest send buffer Linux grows to (tcp_wmem 4 MB).
	pad := strings.Repeat("z", 60<<10)
	for i := range 100 {
		n.publish("stocks:STALL", map[string]any{"seq": i, "pad": pad})
		for _, c := range fast {
			if _, b, err := c.readRaw(); err != nil || !strings.HasPrefix(string(b), `{"type":"message"`) {
				t.Fatalf("fast client, message %d: %.80q %v", i, b, err)
			}
		}
	}
	// A masked close frame, code 1000.
	mask := [4]byte{1, 2, 3, 4}
	if _, err := nc.Write([]byte{0x88, 0x82, mask[0], mask[1], mask[2], mask[3], 0x03 ^ mask[0], 0xE8 ^ mask[1]}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, readTimeout, "the stalled client to be gone", func() bool { _, _, subs := n.core.Counts(); return subs == 4 })
	for i := range 20 {
		n.publish("stocks:STALL", map[string]any{"after": i})
		for _, c := range fast {
			c.expectMessage("stocks:STALL", map[string]any{"after": i})
		}
	}
}
