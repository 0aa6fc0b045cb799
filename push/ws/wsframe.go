package ws

import (
	"encoding/binary"
	"io"
	"sync"
	"syscall"
	"unicode/utf8"

	"github.com/heraldpush/herald/push"
)

// The WebSocket transport writes frames itself instead of through gws,
// compressed or not (deflate.go): every queued frame of a connection goes
// out in one write(2), the shared message bytes are copied once into a
// writer's buffer behind a 2-10 byte header, and a write never waits for
// a slow client (see push.TryWriter). Server frames are not masked,
// so the header is all there is to it.

// Control frames travel in a session's queue as raw frames (push.Frame's
// Raw), complete WebSocket frames, so that they keep their place among
// the messages.
var wsPingFrame = push.RawFrame([]byte{0x89, 0x00})

// wsPongFrame answers a client's ping with its payload (at most 125
// bytes: gws refuses longer control frames).
func wsPongFrame(payload []byte) []byte {
	return append([]byte{0x8A, byte(len(payload))}, payload...)
}

// wsCloseFrame carries code and as much of reason as a control frame
// holds, cut at a rune boundary (close reasons must be UTF-8).
func wsCloseFrame(code uint16, reason string) []byte {
	const maxReason = 125 - 2
	if len(reason) > maxReason {
		n := maxReason
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	f := append([]byte{0x88, byte(2 + len(reason))}, byte(code>>8), byte(code))
	return append(f, reason...)
}

// appendTextHeader appends the header of an unmasked, final text frame
// of n bytes.
func appendTextHeader(b []byte, n int) []byte { return appendHeader(b, 0x81, n) }

// appendHeader appends a server frame's header: first byte b0 (FIN,
// RSV1, opcode), then the length n.
func appendHeader(b []byte, b0 byte, n int) []byte {
	switch {
	case n < 126:
		return append(b, b0, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, b0, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, b0, 127), uint64(n))
	}
}

// finalTextCompressed is FIN, RSV1 (permessage-deflate) and text.
const finalTextCompressed = 0x81 | 0x40

// appendFrames appends frames as WebSocket frames: one text frame each,
// or, for a batch connection, each run of messages packed into one text
// frame, '\n'-separated. Control frames go as they are. On a connection
// that compresses (deflate), every message is a frame of its own, with the
// deflated bytes its frame shares with every compressing connection
// (deflate.go): a packed run would be this connection's own bytes to
// deflate.
func appendFrames(b []byte, frames []*push.Frame, batch, deflate bool) []byte {
	for i := 0; i < len(frames); {
		if frames[i].Raw {
			b = append(b, frames[i].Bytes...)
			i++
			continue
		}
		if deflate {
			p, rsv1 := compressedPayload(frames[i])
			b0 := byte(0x81)
			if rsv1 {
				b0 = finalTextCompressed
			}
			b = append(appendHeader(b, b0, len(p)), p...)
			i++
			continue
		}
		j, n := i+1, len(frames[i].Bytes)
		for batch && j < len(frames) && !frames[j].Raw {
			n += 1 + len(frames[j].Bytes)
			j++
		}
		b = appendTextHeader(b, n)
		for k := i; k < j; k++ {
			if k > i {
				b = append(b, '\n')
			}
			b = append(b, frames[k].Bytes...)
		}
		i = j
	}
	return b
}

// frameEnd returns where the frame holding byte at of b ends: b holds
// whole server frames (unmasked) from its start; at itself when a frame
// starts there.
func frameEnd(b []byte, at int) int {
	pos := 0
	for pos < at && pos+2 <= len(b) {
		n, h := int(b[pos+1]&0x7F), 2
		switch n {
		case 126:
			if pos+4 > len(b) {
				return len(b)
			}
			n, h = int(binary.BigEndian.Uint16(b[pos+2:])), 4
		case 127:
			if pos+10 > len(b) {
				return len(b)
			}
			n, h = int(min(binary.BigEndian.Uint64(b[pos+2:]), uint64(len(b)))), 10
		}
		pos += h + n
	}
	return min(max(pos, at), len(b))
}

// unsentHead is how many bytes of out, of which taken went out, belong to
// a frame the client already has part of: out's first head bytes end one,
// whole frames follow.
func unsentHead(out []byte, head, taken int) int {
	if taken < head {
		return head - taken
	}
	return frameEnd(out[head:], taken-head) - (taken - head)
}

// rawWrite writes to a socket through its syscall.RawConn, which holds
// the descriptor's write lock (gws's own writes, the close it answers a
// client's close with, take the same lock) and keeps it from being closed
// and reused under the call. One is borrowed from rawWrites per write so
// the callback is bound once and its buffer reused.
type rawWrite struct {
	fn   func(fd uintptr) bool // w.do
	p    []byte                // what is left to write
	wait bool                  // wait for the socket instead of giving up
	err  error
	buf  []byte // frames being written, reused
}

var rawWrites = sync.Pool{New: func() any {
	w := new(rawWrite)
	w.fn = w.do
	return w
}}

// maxPooledBuf keeps one burst's huge buffer from staying in the pool.
const maxPooledBuf = 256 << 10

func getRawWrite() *rawWrite { return rawWrites.Get().(*rawWrite) }

func putRawWrite(w *rawWrite) {
	if cap(w.buf) > maxPooledBuf {
		w.buf = nil
	}
	rawWrites.Put(w)
}

func (w *rawWrite) do(fd uintptr) bool {
	for len(w.p) > 0 {
		n, err := sysWrite(fd, w.p)
		if n > 0 {
			w.p = w.p[n:]
		}
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			// Returning false has the runtime wait until the socket
			// takes more (or the write deadline passes) and call again.
			return !w.wait
		case err != nil:
			w.err = err
			return true
		case n <= 0:
			w.err = io.ErrShortWrite
			return true
		}
	}
	return true
}

// write writes p to rc and returns what the socket did not take: nothing
// when wait is set, unless err says why.
func (w *rawWrite) write(rc syscall.RawConn, p []byte, wait bool) (rest []byte, err error) {
	w.p, w.wait, w.err = p, wait, nil
	err = rc.Write(w.fn)
	rest, w.p = w.p, nil
	if err == nil {
		err = w.err
	}
	return rest, err
}
