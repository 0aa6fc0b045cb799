package ws

import (
	"bytes"
	"compress/flate"
	"sync"

	"github.com/heraldpush/herald/push"
)

// permessage-deflate (RFC 7692), written by Herald rather than by gws.
//
// Why: gws deflates each message on each connection, so a broadcast to
// 10,000 compressing subscribers was deflated 10,000 times, one frame at a
// time through gws's write queue. Here a frame is deflated once per node,
// the first time a compressing connection writes it (push.Frame's
// Compressed), and the same bytes go to every compressing subscriber
// behind a header with RSV1 set, through the writer path of plain frames
// (one write(2) per flush, never waiting for a slow client).
//
// Sharing the bytes needs every message compressed on its own, with no
// window carried over from the message before: the server negotiates
// server_no_context_takeover. It asks client_no_context_takeover too, so
// that a connection keeps no inflate window between the client's frames
// (32 KiB each otherwise); gws inflates what clients send.

// extensionAnswer is what the handshake answers a client that offers
// permessage-deflate (gws writes it from deflateOption).
const extensionAnswer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// compressMin is the smallest frame worth deflating: below it the
// deflate block's own bytes outweigh what it saves (a ping, an ack), and
// the frame goes out plain, as RFC 7692 allows per message.
const compressMin = 128

// compressLevel favours speed: a frame is deflated on the writer
// goroutine of the first connection that sends it.
const compressLevel = flate.BestSpeed

// deflaters are reused: a flate.Writer holds about 1 MiB of tables.
var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, compressLevel)
	return &deflater{w: w}
}}

type deflater struct {
	w   *flate.Writer
	buf bytes.Buffer
}

// deflateMessage returns p compressed as one permessage-deflate message
// with no context takeover: a sync-flushed deflate stream without its
// final 0x00 0x00 0xff 0xff (RFC 7692 §7.2.1). The result is new memory,
// kept by the frame for every connection.
func deflateMessage(p []byte) []byte {
	d := deflaters.Get().(*deflater)
	defer deflaters.Put(d)
	d.buf.Reset()
	d.w.Reset(&d.buf)
	_, _ = d.w.Write(p) // writes to a bytes.Buffer do not fail
	_ = d.w.Flush()
	out := d.buf.Bytes()
	out = out[:len(out)-4] // the sync flush's empty stored block
	if d.buf.Cap() > maxPooledBuf {
		d.buf = bytes.Buffer{}
	}
	return append(make([]byte, 0, len(out)), out...)
}

// compressedPayload is what a compressing connection sends for f: its
// deflated bytes (rsv1 set), or the plain ones for a small frame.
func compressedPayload(f *push.Frame) (p []byte, rsv1 bool) {
	if len(f.Bytes) < compressMin {
		return f.Bytes, false
	}
	return f.Compressed(deflateMessage), true
}
