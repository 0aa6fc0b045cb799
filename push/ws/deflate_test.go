package ws

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
)

// compressingNode is a node whose /ws offers permessage-deflate.
func compressingNode(t *testing.T) (*push.Node, string) {
	t.Helper()
	h := push.NewNode(push.Options{Node: "t"})
	b := broker.NewMemory(h)
	h.Start(context.Background(), b)
	srv := httptest.NewServer(NewServer(h, ServerOptions{HandshakeTimeout: 5 * time.Second, Compression: true}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Close(ctx, push.CloseGoingAway, "test over")
		_ = b.Close(ctx)
	})
	return h, srv.Listener.Addr().String()
}

// dialDeflate opens /ws?channel=news, offering permessage-deflate when
// offer is set, and returns the client and the extension answered.
func dialDeflate(t *testing.T, addr string, offer bool) (*rawWS, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /ws?channel=news HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if offer {
		// What Chromium offers.
		req += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	ws := &rawWS{Conn: c}
	ws.br = bufio.NewReader(c)
	resp, err := http.ReadResponse(ws.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return ws, resp.Header.Get("Sec-WebSocket-Extensions")
}

// readData reads frames up to the next text frame and returns its first
// byte (FIN, RSV1, opcode) and payload as sent.
func (c *rawWS) readData(t *testing.T) (b0 byte, payload []byte) {
	t.Helper()
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			t.Fatal(err)
		}
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			var b [2]byte
			_, _ = io.ReadFull(c.br, b[:])
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			_, _ = io.ReadFull(c.br, b[:])
			n = binary.BigEndian.Uint64(b[:])
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c.br, p); err != nil {
			t.Fatal(err)
		}
		if h[0]&0x0F == 0x1 {
			return h[0], p
		}
	}
}

// inflate undoes permessage-deflate (RFC 7692 §7.2.2: append the tail).
func inflate(t *testing.T, p []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff}))))
	if err != nil && err != io.ErrUnexpectedEOF {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

// A broadcast goes deflated, once: two compressing subscribers get the
// very same compressed bytes, RSV1 set, which inflate to the message a
// plain subscriber beside them gets as it is. The handshake negotiates no
// context takeover either way; small frames go plain.
func TestCompressedBroadcastIsDeflatedOnce(t *testing.T) {
	h, addr := compressingNode(t)
	a, extA := dialDeflate(t, addr, true)
	b, _ := dialDeflate(t, addr, true)
	plain, extPlain := dialDeflate(t, addr, false)
	if extA != extensionAnswer || extPlain != "" {
		t.Fatalf("extensions answered %q and %q, want %q and none", extA, extPlain, extensionAnswer)
	}
	for _, c := range []*rawWS{a, b, plain} {
		for _, want := range []string{"welcome", "subscribed"} {
			b0, p := c.readData(t)
			if b0&0x40 != 0 || push.FrameType(p) != want { // small: plain
				t.Fatalf("frame %x %q, want a plain %s", b0, p, want)
			}
		}
	}
	data := `{"text":"` + strings.Repeat("compressible ", 200) + `"}`
	if _, err := h.Publish(context.Background(), push.Publication{Channel: "news", Data: json.RawMessage(data)}); err != nil {
		t.Fatal(err)
	}
	b0a, pa := a.readData(t)
	b0b, pb := b.readData(t)
	b0p, pp := plain.readData(t)
	if b0a != 0xC1 || b0b != 0xC1 || b0p != 0x81 {
		t.Fatalf("first bytes %x %x %x, want c1 c1 81", b0a, b0b, b0p)
	}
	if !bytes.Equal(pa, pb) {
		t.Fatal("the compressing subscribers got different bytes: the message was deflated per subscriber")
	}
	if len(pa) >= len(pp)/4 {
		t.Errorf("compressed %d bytes of %d", len(pa), len(pp))
	}
	if got := inflate(t, pa); !bytes.Equal(got, pp) {
		t.Fatalf("inflated %q, want %q", got, pp)
	}
	// The connection reads compressed frames too (gws inflates them): a
	// deflated subscribe is answered.
	cmd := deflateMessage([]byte(`{"type":"subscribe","channel":"other","id":7,"pad":"` + strings.Repeat("p", 200) + `"}`))
	if _, err := a.Write(maskedFrame(0xC1, cmd)); err != nil {
		t.Fatal(err)
	}
	if _, p := a.readData(t); push.FrameType(p) != "subscribed" || !strings.Contains(string(p), `"other"`) {
		t.Fatalf("answer to a compressed subscribe: %q", p)
	}
}
