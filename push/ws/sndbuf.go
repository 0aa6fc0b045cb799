package ws

import (
	"math/rand/v2"
	"net"
	"time"
)

// DefaultSendBuffer is the kernel send buffer (SO_SNDBUF) asked for each
// WebSocket connection. Left to itself Linux grows a connection's send
// buffer up to tcp_wmem's maximum (4 MiB), and that memory comes before
// max_queue_bytes starts counting: a client that stops reading held about
// 3.8 MiB of kernel memory, 10,000 of them 1.85 GB, and a busy node hit
// tcp_mem pressure, which slowed and cut clients that were reading
// (issue 12). A fixed buffer also turns off autotuning, so what a stalled
// client costs is bounded: the kernel's buffer (Linux doubles the value
// asked for: 64 KiB for this default) plus max_queue_bytes. 32 KiB keeps
// a LAN or a nearby browser at full speed for push traffic; a fast feed
// to far clients (high bandwidth x delay) may want more.
const DefaultSendBuffer = 32 << 10

// DefaultSendLowat bounds the bytes a WebSocket's kernel buffer holds
// *unsent* (TCP_NOTSENT_LOWAT, Linux): past it a write stops, the session
// counts as stalled and its own goroutine waits (Drain) until the kernel
// has sent most of it. Bytes in flight to a reading client are not
// unsent, so a far client keeps its full send buffer; a client that stops
// reading closes its window and is found out after about this many bytes
// (plus its window) instead of after the whole send buffer. Until then
// each message to it used to be one more write(2) in the writers' run
// queues, in front of the readers: 10,000 stalled clients took ~100
// writes each at 16 KiB (the value HTTP/2 servers use), ~57 at 4 KiB, and
// their readers' p99 followed (issue 12 item 4, docs/performance.md); a
// client whose window keeps shrinking now lags instead, and its writes
// are gathered behind the readers' (lag.go). A push feed's
// frames are small and seldom; a reading client whose burst does not fit
// waits on its own goroutine, not on the writers, and its kernel still
// sends what is unsent while it waits (it wakes once under half is left).
const DefaultSendLowat = 4 << 10

// stalledCloseLinger is how long a connection closed while its socket
// is full (a slow consumer) waits for the client to take the rest of the
// frame under way and the close frame, after the second the session's
// writer already waited (Interrupt). A client that resumes reading within
// that time reads what was buffered and then 4001; one that does not has
// its socket closed without a close frame. docs/protocol.md says so.
const stalledCloseLinger = 5 * time.Second

// lingerSpread and drainSpread spread in time what clients that stopped
// reading together go through: 10,000 of them on one channel (or behind
// one failed network) reach their write timeout, and then the end of
// their linger, within the same few milliseconds, and 10,000 closes in
// one burst held the readers' deliveries up 130-200 ms (issue 12 item
// 4). A linger lasts stalledCloseLinger plus up to a second, a Drain
// waits write_timeout less up to a quarter of it, at random.
func lingerSpread() time.Duration { return stalledCloseLinger + rand.N(time.Second) }

func drainSpread(timeout time.Duration) time.Duration { return timeout - rand.N(timeout/4+1) }

// setSendBuffer bounds nc's kernel send buffer: n > 0 bytes, n < 0 leaves
// the kernel's autotuning.
func setSendBuffer(nc net.Conn, n int) {
	if n == 0 {
		n = DefaultSendBuffer
	}
	if tc, ok := nc.(*net.TCPConn); ok && n > 0 {
		_ = tc.SetWriteBuffer(n)
	}
}

// setSendLowat bounds nc's unsent kernel bytes: n > 0 bytes, n < 0
// leaves the kernel's default (sndbuf_linux.go; elsewhere nothing).
func setSendLowat(nc net.Conn, n int) {
	if n == 0 {
		n = DefaultSendLowat
	}
	if tc, ok := nc.(*net.TCPConn); ok && n > 0 {
		setNotSentLowat(tc, n)
	}
}

// closeStalled sends out, the rest of the frames the socket had not
// taken followed by the close frame, waiting stalledCloseLinger (and up
// to a second more: lingerSpread) for the client to read, and then ends
// the connection as Close does. It runs on a goroutine of its own,
// started by Close, which owns the transport from then on: the session's
// writer is done, and a shared writer goroutine must not wait for one
// client.
func (t *wsTransport) closeStalled(out []byte) {
	_ = t.conn.SetWriteDeadline(time.Now().Add(lingerSpread()))
	w := getRawWrite()
	_, err := w.write(t.raw, out, true)
	putRawWrite(w)
	t.out = nil
	t.lingerClose(err == nil)
}

// lingerClose ends the connection after its close frame went out (sent):
// the socket stops sending and is closed when the client answers or after
// closeLinger (see Close); without the close frame, at once.
func (t *wsTransport) lingerClose(sent bool) {
	tc, ok := t.gwsConn.Conn.(*net.TCPConn)
	if sent && ok && tc.CloseWrite() == nil {
		time.AfterFunc(closeLinger, func() { _ = t.gwsConn.Close() })
		return
	}
	_ = t.gwsConn.Close()
}
