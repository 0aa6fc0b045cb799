package push

import (
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/heraldpush/herald/broker"
)

// Frame is a server frame queued for a session: the JSON text the core
// encoded, once, and what the transports need to know of it besides, so
// that none of them parses the JSON back (an SSE stream names its events
// and ids, a long-poll builds its answer from these fields). A frame
// queued to many sessions (a broadcast message, the ping) is shared:
// nobody modifies it after it is queued.
type Frame struct {
	// Type is the frame's "type": "message", "subscribed", "error", ...
	Type string
	// Bytes is the JSON text, or for a Raw frame the transport's own bytes.
	Bytes []byte
	// Raw frames are a transport's own (a WebSocket ping or pong, as a
	// complete WebSocket frame): queued by that transport, in order with
	// the messages, and written by it as they are.
	Raw bool
	// Channel is the channel of a message, subscribed or unsubscribed
	// frame (an error's channel, when it names one).
	Channel string
	// Position is a message's epoch and offset, or the channel's position
	// in a subscribed reply.
	Position broker.Position
	// Recovered is a subscribed reply's "recovered" (nil: no since was
	// given).
	Recovered *bool
	// Err is an error frame's code and message.
	Err *Error

	// compressed caches Compressed's result: a broadcast is deflated once
	// per node, by the first writer that needs it. A pointer, set on first
	// use, because most frames are never compressed and every message
	// frame carries this header (a sync.Once and a slice inline cost 40
	// bytes a message, this 8).
	compressed atomic.Pointer[deflated]
}

// deflated is a Frame's compressed bytes, computed once.
type deflated struct {
	once sync.Once
	b    []byte
}

// Compressed returns the frame's bytes as compress turns them out (a
// WebSocket's permessage-deflate), computing them once per frame: every
// connection that compresses gets the same bytes. compress must not keep
// its argument.
func (f *Frame) Compressed(compress func(p []byte) []byte) []byte {
	d := f.compressed.Load()
	if d == nil {
		// Two writers may race here; the loser takes the winner's, so
		// that compress still runs once.
		if d = new(deflated); !f.compressed.CompareAndSwap(nil, d) {
			d = f.compressed.Load()
		}
	}
	d.once.Do(func() { d.b = compress(f.Bytes) })
	return d.b
}

// Frame types the transports tell apart.
const (
	TypeMessage      = "message"
	TypeSubscribed   = "subscribed"
	TypeUnsubscribed = "unsubscribed"
	TypeError        = "error"
	TypePing         = "ping"
)

// pingFrame is shared by every session: it never changes.
var pingFrame = &Frame{Type: TypePing, Bytes: []byte(`{"type":"ping"}`)}

// RawFrame is a transport's own frame b (see Frame.Raw).
func RawFrame(b []byte) *Frame { return &Frame{Raw: true, Bytes: b} }

// messageFrame encodes m's "message" frame (AppendMessage): the one
// allocation of a broadcast. Up to a few KiB the bytes live in the same
// object as the Frame (newFrame); a larger message takes a second one.
func messageFrame(m *broker.Message, snapshot bool) *Frame {
	f := newFrame(messageCap(m))
	f.Type, f.Channel = TypeMessage, m.Channel
	f.Position = broker.Position{Epoch: m.Epoch, Offset: m.Offset}
	f.Bytes = AppendMessage(f.Bytes, m, snapshot)
	return f
}

// Frames with their bytes in the same allocation. Each array is sized so
// that header and array (and the runtime's malloc header past 512 bytes)
// fill one of the runtime's size classes (256, 320, 384, 512, 1024, 2048,
// 4096 bytes) with nothing left over: a message
// costs the size class its frame needs, not the next array up plus the
// header (TestFrameSizesFillSizeClasses checks the sizes).
type (
	frameS struct {
		Frame
		b [256 - frameHeader]byte
	}
	frameM struct {
		Frame
		b [320 - frameHeader]byte
	}
	frameL struct {
		Frame
		b [384 - frameHeader]byte
	}
	frameXL struct {
		Frame
		b [512 - frameHeader]byte
	}
	frame1k struct {
		Frame
		b [1024 - frameHeader - mallocHeader]byte
	}
	frame2k struct {
		Frame
		b [2048 - frameHeader - mallocHeader]byte
	}
	frame4k struct {
		Frame
		b [4096 - frameHeader - mallocHeader]byte
	}
)

// frameHeader is unsafe.Sizeof(Frame{}) on 64-bit platforms (a test
// checks it; on 32-bit ones the header is smaller and the arrays leave a
// little unused). mallocHeader is the word the runtime puts in front of
// an object of more than 512 bytes that holds pointers (Go 1.22 on).
const (
	frameHeader  = 112
	mallocHeader = 8
)

// newFrame returns a Frame whose Bytes is empty with room for n bytes.
func newFrame(n int) *Frame {
	switch {
	case n <= len(frameS{}.b):
		x := new(frameS)
		x.Bytes = x.b[:0]
		return &x.Frame
	case n <= len(frameM{}.b):
		x := new(frameM)
		x.Bytes = x.b[:0]
		return &x.Frame
	case n <= len(frameL{}.b):
		x := new(frameL)
		x.Bytes = x.b[:0]
		return &x.Frame
	case n <= len(frameXL{}.b):
		x := new(frameXL)
		x.Bytes = x.b[:0]
		return &x.Frame
	case n <= len(frame1k{}.b):
		x := new(frame1k)
		x.Bytes = x.b[:0]
		return &x.Frame
	case n <= len(frame2k{}.b):
		x := new(frame2k)
		x.Bytes = x.b[:0]
		return &x.Frame
	case n <= len(frame4k{}.b):
		x := new(frame4k)
		x.Bytes = x.b[:0]
		return &x.Frame
	}
	return &Frame{Bytes: make([]byte, 0, n)}
}

// described is a frame struct of protocol.go: it fills in what the
// transports read of it.
type described interface{ describe(f *Frame) }

// encode encodes v, one of the frame structs, with encoding/json: they
// are rare next to messages.
func encode(v described) *Frame {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own frame types are encoded here; a failure is a bug.
		panic("push: encode frame: " + err.Error())
	}
	f := &Frame{Bytes: b}
	v.describe(f)
	return f
}

func errFrame(id json.Number, code, msg, channel string) *Frame {
	return encode(errorFrame{Type: TypeError, ID: id, Code: code, Message: msg, Channel: channel})
}

func (v welcomeFrame) describe(f *Frame) { f.Type = v.Type }
func (v ackFrame) describe(f *Frame)     { f.Type, f.Channel = v.Type, v.Channel }
func (v historyFrame) describe(f *Frame) { f.Type, f.Channel = v.Type, v.Channel }
func (v presenceFrame) describe(f *Frame) {
	f.Type, f.Channel = v.Type, v.Channel
}
func (v joinLeaveFrame) describe(f *Frame) { f.Type, f.Channel = v.Type, v.Channel }
func (v unsubscribedFrame) describe(f *Frame) {
	f.Type, f.Channel = v.Type, v.Channel
}
func (v subscribedFrame) describe(f *Frame) {
	f.Type, f.Channel, f.Recovered = v.Type, v.Channel, v.Recovered
	f.Position = broker.Position{Epoch: v.Epoch, Offset: v.Offset}
}
func (v errorFrame) describe(f *Frame) {
	f.Type, f.Channel = v.Type, v.Channel
	f.Err = &Error{Code: v.Code, Message: v.Message}
}
