package ws

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"

	"github.com/heraldpush/herald/push"
)

// frameGuard checks the header of every frame a client sends before gws
// reads it, and fails the connection with 1002 (1009 for a length past
// the limit) at the first header gws could mishandle.
//
// Why: gws v1.8.9 reads a 64-bit payload length into an int, so a length
// with its top bit set is negative, passes its "too large" check and makes
// it panic slicing a buffer with it (reader.go:104), on the connection's
// read goroutine, which takes the whole process down (docs/security.md).
// Rather than trust each of gws's checks, every rule of RFC 6455 §5.2 that
// a header can break is checked here, in the byte stream, before gws sees
// a byte of the frame: reserved bits and opcodes, the mask, the length
// (its top bit, the limit, a fragmented message's total) and the rules of
// control frames and fragments.
//
// It parses incrementally: headers may be split across reads, payloads
// are skipped without being looked at. The guard sits between the socket
// and gws's buffered reader and is only used by the connection's read
// goroutine (gws's ReadLoop), which owns it.
type frameGuard struct {
	net.Conn
	// raw reads the socket's descriptor directly when the socket has one
	// (see read); nil: reads go through Conn.
	raw     syscall.RawConn
	rawN    int   // what the last raw read took, for read's closure
	rawErr  error // and how it failed
	rawBuf  []byte
	rawFn   func(fd uintptr) bool // made once: no allocation per read
	max     uint64                // largest payload of one message (max_frame_bytes)
	deflate bool                  // permessage-deflate negotiated: RSV1 marks a compressed message
	// fail closes the connection with code and reason; set before the
	// read goroutine starts. nil: the guard only reports the error.
	fail func(code uint16, reason string)

	err        error    // sticky: the connection has failed
	hdr        [10]byte // the header so far, up to the extended length
	have       int      // header bytes collected
	left       uint64   // payload bytes of the current frame still to pass
	maskLeft   int      // mask key bytes still to pass
	fragmented bool     // a message was started without FIN; continuations follow
	total      uint64   // payload bytes of the fragmented message so far
}

// frameError is why the guard failed a connection: the close code sent and
// its reason.
type frameError struct {
	code   uint16
	reason string
}

func (e *frameError) Error() string  { return "websocket: " + e.reason }
func (e *frameError) Uint16() uint16 { return e.code }

// Read reads from the socket and checks the frame headers in what came.
// On a violation nothing of this read is passed on: the connection is
// failing, the frames before the bad one do not matter any more.
func (g *frameGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	// The raw read is written out here rather than in a function of its
	// own: one frame fewer under every parked read (see useRaw).
	var n int
	var err error
	if g.raw != nil {
		g.rawBuf = p
		if err = g.raw.Read(g.rawFn); err == nil {
			n, err = g.rawN, g.rawErr
		}
		g.rawBuf = nil
	} else {
		n, err = g.Conn.Read(p)
	}
	if n > 0 {
		if verr := g.scan(p[:n]); verr != nil {
			return 0, g.failWith(verr)
		}
	}
	return n, err
}

// failWith makes the connection's failure sticky and closes it. Kept out
// of Read, which is on the stack of every parked read goroutine, so that
// Read's frame stays small (issue 14: idle connections park in 2 KB).
//
//go:noinline
func (g *frameGuard) failWith(verr *frameError) error {
	g.err = verr
	if g.fail != nil {
		g.fail(verr.code, verr.reason)
	}
	return verr
}

// scan advances the parser over b.
func (g *frameGuard) scan(b []byte) *frameError {
	for len(b) > 0 {
		switch {
		case g.left > 0:
			k := uint64(len(b))
			if k > g.left {
				k = g.left
			}
			g.left -= k
			b = b[k:]
		case g.maskLeft > 0:
			k := min(len(b), g.maskLeft)
			g.maskLeft -= k
			b = b[k:]
			if g.maskLeft == 0 && g.payload() > 0 {
				g.left = g.payload()
			}
		default:
			g.hdr[g.have] = b[0]
			g.have++
			b = b[1:]
			if g.have == 2 {
				if err := g.checkFirst(); err != nil {
					return err
				}
			}
			if g.have < 2 || g.have < g.headerLen() {
				continue
			}
			if err := g.checkLength(); err != nil {
				return err
			}
			g.have = 0
			g.maskLeft = 4 // checkFirst made sure the frame is masked
		}
	}
	return nil
}

// headerLen is the length of the header up to the mask key, once its
// second byte is known.
func (g *frameGuard) headerLen() int {
	switch g.hdr[1] & 0x7F {
	case 126:
		return 4
	case 127:
		return 10
	}
	return 2
}

// payload is the current frame's payload length (the header is complete).
func (g *frameGuard) payload() uint64 {
	switch n := g.hdr[1] & 0x7F; n {
	case 126:
		return uint64(binary.BigEndian.Uint16(g.hdr[2:4]))
	case 127:
		return binary.BigEndian.Uint64(g.hdr[2:10])
	default:
		return uint64(n)
	}
}

func protocolError(reason string) *frameError {
	return &frameError{code: push.CloseProtocol, reason: reason}
}

// checkFirst checks the first two bytes: flags, opcode, mask and the
// rules for control frames and fragments.
func (g *frameGuard) checkFirst() *frameError {
	b0, b1 := g.hdr[0], g.hdr[1]
	fin, opcode := b0&0x80 != 0, b0&0x0F
	if b0&0x30 != 0 {
		return protocolError("reserved bits RSV2/RSV3 set")
	}
	if b1&0x80 == 0 {
		return protocolError("client frames must be masked")
	}
	rsv1 := b0&0x40 != 0
	switch {
	case opcode >= 0x8: // control
		if opcode > 0xA {
			return protocolError("reserved opcode")
		}
		if !fin {
			return protocolError("fragmented control frame")
		}
		if b1&0x7F > 125 {
			return protocolError("control frame longer than 125 bytes")
		}
		if rsv1 {
			return protocolError("RSV1 set on a control frame")
		}
	case opcode == 0x0: // continuation
		if !g.fragmented {
			return protocolError("continuation frame without a message to continue")
		}
		if rsv1 {
			return protocolError("RSV1 set on a continuation frame")
		}
	case opcode <= 0x2: // text, binary
		if g.fragmented {
			return protocolError("new message inside a fragmented one")
		}
		if rsv1 && !g.deflate {
			return protocolError("RSV1 set without permessage-deflate")
		}
	default:
		return protocolError("reserved opcode")
	}
	return nil
}

// checkLength checks the complete length and tracks fragments.
func (g *frameGuard) checkLength() *frameError {
	if g.hdr[1]&0x7F == 127 && g.hdr[2]&0x80 != 0 {
		// RFC 6455 §5.2: "the most significant bit MUST be 0". This is
		// the frame that crashed gws v1.8.9.
		return protocolError("64-bit payload length with its top bit set")
	}
	n := g.payload()
	opcode := g.hdr[0] & 0x0F
	if opcode >= 0x8 {
		return nil // at most 125, checked
	}
	if opcode != 0 {
		g.total = 0
	}
	if n > g.max || g.total+n > g.max {
		return &frameError{code: push.CloseTooBig, reason: "gws: message too large"} // the reason gws gives for its own check
	}
	g.total += n
	g.fragmented = g.hdr[0]&0x80 == 0
	return nil
}

var _ io.Reader = (*frameGuard)(nil)

// useRaw switches reads to the socket's descriptor where it has one.
//
// Why: a parked read goroutine's stack holds every frame between gws's
// read loop and the poller, and a wrapper's Read on top of net.Conn's
// pushed it just past 2 KB, doubling each idle connection's stack to 4 KB
// (issue 14). Reading the descriptor through syscall.RawConn puts the
// guard in place of net.Conn's Read instead of above it: the same depth
// as gws reading the socket itself, deadlines kept (RawConn.Read waits in
// the poller as net.Conn.Read does).
func (g *frameGuard) useRaw() {
	sc, ok := g.Conn.(syscall.Conn)
	if !ok || !rawSocketIO {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	g.raw = raw
	g.rawFn = func(fd uintptr) bool {
		for {
			n, err := sysRead(fd, g.rawBuf)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return false // wait for the poller
			case err != nil:
				g.rawN, g.rawErr = 0, err
			case n == 0 && len(g.rawBuf) > 0:
				g.rawN, g.rawErr = 0, io.EOF
			default:
				g.rawN, g.rawErr = n, nil
			}
			return true
		}
	}
}
