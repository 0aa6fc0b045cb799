package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/heraldpush/herald/push"
)

// TestBadInput sends one bad frame after another on one connection: each
// is answered with its documented error, and the connection is otherwise
// unharmed (a valid command after each works, and a subscription made
// before them all still delivers).
func TestBadInput(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	c := n.dial(query("channel", "stocks:OK"))
	c.welcome()
	c.expect("subscribed")

	cases := []struct {
		name    string
		binary  bool
		frame   string
		code    string
		id      string // echoed id; "" when the frame could not be decoded
		channel string // channel named in the error, if any
	}{
		{name: "malformed JSON", frame: `{"type":"subscribe","id":1,`, code: push.CodeBadRequest},
		{name: "not an object", frame: `["subscribe","news"]`, code: push.CodeBadRequest},
		{name: "not JSON", frame: `subscribe news`, code: push.CodeBadRequest},
		{name: "unknown type", frame: `{"type":"dance","id":3}`, code: push.CodeUnknownType, id: "3"},
		{name: "missing type", frame: `{"id":4,"channel":"news"}`, code: push.CodeBadRequest, id: "4"},
		{name: "subscribe without channel", frame: `{"type":"subscribe","id":5}`, code: push.CodeBadRequest, id: "5"},
		{name: "unsubscribe without channel", frame: `{"type":"unsubscribe","id":6}`, code: push.CodeBadRequest, id: "6"},
		{name: "publish without data", frame: `{"type":"publish","id":7,"channel":"chat:room"}`, code: push.CodeBadRequest, id: "7", channel: "chat:room"},
		{name: "publish without channel", frame: `{"type":"publish","id":8,"data":1}`, code: push.CodeBadRequest, id: "8"},
		{name: "invalid channel name", frame: `{"type":"subscribe","id":9,"channel":"no spaces!"}`, code: push.CodeInvalidChannel, id: "9"},
		{name: "channel name too long", frame: fmt.Sprintf(`{"type":"subscribe","id":10,"channel":%q}`, strings.Repeat("a", push.MaxChannelLen+1)), code: push.CodeInvalidChannel, id: "10"},
		{name: "publish to invalid channel", frame: `{"type":"publish","id":11,"channel":"a/b","data":1}`, code: push.CodeInvalidChannel, id: "11"},
		{name: "unknown namespace", frame: `{"type":"subscribe","id":12,"channel":"nope:x"}`, code: push.CodeUnknownNS, id: "12", channel: "nope:x"},
		{name: "publish forbidden", frame: `{"type":"publish","id":13,"channel":"stocks:OK","data":1}`, code: push.CodeForbidden, id: "13", channel: "stocks:OK"},
		{name: "publish forbidden in default namespace", frame: `{"type":"publish","id":14,"channel":"news","data":1}`, code: push.CodeForbidden, id: "14", channel: "news"},
		{name: "client publish too large", frame: fmt.Sprintf(`{"type":"publish","id":15,"channel":"chat:room","data":%q}`, strings.Repeat("x", 300)), code: push.CodeTooLarge, id: "15", channel: "chat:room"},
		{name: "binary frame", binary: true, frame: `{"type":"subscribe","id":16,"channel":"news"}`, code: push.CodeBadRequest},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := c.in(t)
			if tc.binary {
				c.sendRaw(websocket.MessageBinary, []byte(tc.frame))
			} else {
				c.sendText(tc.frame)
			}
			e := c.expectError(tc.code)
			if e.ID.String() != tc.id || e.Channel != tc.channel {
				t.Errorf("error %s: want id %q and channel %q", e, tc.id, tc.channel)
			}
			// A valid command right after works.
			c.subscribe(fmt.Sprintf("after-%d", i))
		})
	}
	// The subscription made before it all still delivers, and clients may
	// still publish where they are allowed to.
	n.publish("stocks:OK", "fine")
	c.expectMessage("stocks:OK", "fine")
	c.send(map[string]any{"type": "publish", "id": 99, "channel": "chat:room", "data": strings.Repeat("x", 200)})
	if ack := c.expect("ack"); ack.ID != "99" {
		t.Errorf("ack %s, want id 99", ack)
	}
}

// TestOversizedFrame: a frame over max_frame_bytes closes the connection
// with 1009; one of exactly max_frame_bytes is served.
func TestOversizedFrame(t *testing.T) {
	const limit = 4 << 10
	cfg := e2eConfig()
	cfg.MaxFrameBytes = limit
	n := startTestNode(t, cfg)

	c := n.dial("")
	c.welcome()
	// JSON allows whitespace: pad a valid command to exactly the limit.
	cmd := `{"type":"subscribe","id":1,"channel":"edge"}`
	c.sendText(cmd[:len(cmd)-1] + strings.Repeat(" ", limit-len(cmd)) + "}")
	c.expect("subscribed")

	// The server closes as soon as it has read the frame's header, so the
	// rest of the write may meet a reset: its error does not matter, the
	// close frame already sent does.
	big := cmd[:len(cmd)-1] + strings.Repeat(" ", limit+1-len(cmd)) + "}"
	_ = c.conn.Write(context.Background(), websocket.MessageText, []byte(big))
	c.expectClose(websocket.StatusMessageTooBig)

	// Other connections are unaffected.
	d := n.dial(query("channel", "edge"))
	d.welcome()
	d.expect("subscribed")
}
