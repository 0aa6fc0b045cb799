package ws

import (
	"bytes"
	"errors"
	"github.com/heraldpush/herald/push"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// FuzzWSReadPath drives raw bytes through a real socket into a running
// node's WebSocket read path (the frame guard, gws's parser, the session's
// handlers), after a real handshake, split in two writes as partial reads
// would deliver them. It checks what the node may never do: crash (the
// fuzz worker would die), recover a panic (a bug the recovery hid), leave
// the connection open once the client is done, or answer with anything
// but well-formed frames ending in a close code of the protocol.
func FuzzWSReadPath(f *testing.F) {
	seeds := [][]byte{
		negativeLengthFrame,
		maskedFrame(0x81, []byte(`{"type":"subscribe","channel":"news","id":1}`)),
		maskedFrame(0x81, []byte(`{"type":"publish","channel":"news","data":1}`)),
		maskedFrame(0x81, []byte(`{"type":"history","channel":"news","since":{"epoch":"x","offset":1}}`)),
		append(maskedFrame(0x01, []byte(`{"type":`)), maskedFrame(0x80, []byte(`"pong"}`))...),
		append(maskedFrame(0x01, []byte(`{"ty`)), append(maskedFrame(0x89, nil), maskedFrame(0x80, []byte(`pe":"pong"}`))...)...),
		maskedFrame(0x89, []byte("ping")),
		maskedFrame(0x8A, nil),
		maskedFrame(0x88, []byte{0x03, 0xE8, 'b', 'y', 'e'}),
		maskedFrame(0x88, []byte{0x03}),
		maskedFrame(0x82, []byte{0xFF, 0xFE}),
		maskedFrame(0x81, []byte{0xC3, 0x28}),
		maskedFrame(0xC1, []byte("x")),
		{0x81, 0xFE, 0xFF, 0xFF, 1, 2, 3, 4},
		{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, '"', 'a', 'b', '"'},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	n := startTestNode(f, push.Options{MaxFrameBytes: 4096})
	addr := n.srv.Listener.Addr().String()
	f.Fuzz(func(t *testing.T, in []byte) {
		before := push.RecoveredPanics()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ws := n.handshake(t, c, "/ws?channel=news")
		half := len(in) / 2
		_, err = c.Write(in[:half])
		if err == nil {
			_, err = c.Write(in[half:])
		}
		_ = c.(*net.TCPConn).CloseWrite() // the client is done: the node must end it
		for {
			op, p, rerr := ws.readFrame()
			if rerr != nil {
				if errors.Is(rerr, os.ErrDeadlineExceeded) {
					t.Fatalf("the node kept the connection open: %v", rerr)
				}
				break // the node closed it (a reset after its close is fine)
			}
			if op == 0x8 && len(p) >= 2 {
				code := uint16(p[0])<<8 | uint16(p[1])
				switch {
				case code == push.CloseNormal, code == push.CloseGoingAway, code == push.CloseProtocol, code == 1007,
					code == push.ClosePolicy, code == push.CloseTooBig, code == push.CloseFlood:
				case echoable(code) && bytes.IndexByte(in, 0x88) >= 0:
					// The input may hold a close frame of the client's, whose
					// code gws answers with (RFC 6455 §5.5.1: an endpoint
					// typically echoes the status code it received).
				default:
					t.Fatalf("closed with %d %q", code, p[2:])
				}
			}
		}
		if push.RecoveredPanics() != before {
			t.Fatal("a panic was recovered on this input: a bug")
		}
		_ = err
	})
}

// handshake sends the upgrade request for path on c and reads the 101.
func (n *testNode) handshake(t testing.TB, c net.Conn, path string) *rawWS {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return readUpgrade(t, c)
}

// echoable reports whether a client may send code in a close frame (RFC
// 6455 §7.4), so that the node's close may carry it back.
func echoable(code uint16) bool {
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
}
