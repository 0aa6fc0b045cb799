package bench

// The load generator's subscribing connections, kept lean: a goroutine
// per connection, woken and making a read syscall for every frame, cost
// the client as much CPU as the server spent writing, so the figures
// measured the load generator. Here a connection is dialed and upgraded
// synchronously, then its socket moves to one of GOMAXPROCS epoll loops,
// which read whatever is ready into one shared buffer and parse the
// frames in place. A connection keeps only its counters and the start of
// a frame split across reads.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/heraldpush/herald/push"
	"golang.org/x/sys/unix"
)

// WebSocket opcodes the load generator reads or writes.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// maxLoadFrame bounds a frame's announced length: past it the stream is
// taken for garbage rather than buffered.
const maxLoadFrame = 64 << 20

// loadConn is one subscribing connection. Once its socket is in the
// poller, its fields are used by its epoll loop only.
type loadConn struct {
	run     *loadRun
	i       int        // connection index
	fd      int        // the socket, owned by the poller once added
	epfd    int        // its loop's epoll set
	ready   chan error // the subscribe reply, or why it did not come
	pending []byte     // the start of a frame split across reads
	next    uint64     // next expected offset
	started bool
	dead    bool        // ended: out of the epoll set, read no more
	dropped atomic.Bool // given up by its dialer: its end is not the server's doing
}

var loadPong = []byte(`{"type":"pong"}`)

// poller runs the epoll loops that read every connection. Each epoll set
// is itself in Go's netpoller (an epoll descriptor is readable while it
// has ready events): a loop waits for its set like a goroutine waits for a
// socket, instead of holding a thread in epoll_wait, which the runtime
// would take the loop's P from and give back at every wake.
type poller struct {
	sets  []*os.File                 // the epoll sets, non-blocking
	epfds []int                      // their descriptors (File.Fd would make them blocking)
	wake  int                        // an eventfd in every set, written to stop the loops
	conns []atomic.Pointer[loadConn] // by connection index, the events' Pad
	wg    sync.WaitGroup
}

// newPoller starts GOMAXPROCS loops for up to n connections.
func newPoller(n int) (*poller, error) {
	p := &poller{conns: make([]atomic.Pointer[loadConn], n)}
	var err error
	if p.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("bench: eventfd: %w", err)
	}
	for range runtime.GOMAXPROCS(0) {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err == nil {
			// Non-blocking first: os.NewFile puts only those in the netpoller.
			if err = unix.SetNonblock(epfd, true); err != nil {
				_ = unix.Close(epfd)
			}
		}
		if err == nil {
			p.sets = append(p.sets, os.NewFile(uintptr(epfd), "epoll"))
			p.epfds = append(p.epfds, epfd)
			err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, p.wake, &unix.EpollEvent{Events: unix.EPOLLIN, Pad: -1})
		}
		if err != nil {
			p.close()
			return nil, fmt.Errorf("bench: epoll: %w", err)
		}
		p.wg.Add(1)
		go p.loop(p.sets[len(p.sets)-1])
	}
	return p, nil
}

// close stops the loops, then closes every socket: no loop can be
// reading a descriptor when it is closed, nor one that was reused.
func (p *poller) close() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(p.wake, one[:]) // never read: it wakes every loop for good
	p.wg.Wait()
	for i := range p.conns {
		if c := p.conns[i].Load(); c != nil {
			_ = unix.Close(c.fd)
		}
	}
	for _, set := range p.sets {
		_ = set.Close()
	}
	_ = unix.Close(p.wake)
}

// add hands c's socket to a loop, which owns it from now on, even if
// adding fails: the poller closes it when it closes.
func (p *poller) add(c *loadConn) error {
	c.epfd = p.epfds[c.i%len(p.epfds)]
	p.conns[c.i].Store(c)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Pad: int32(c.i)}
	return unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev)
}

// drop gives c up from another goroutine: shutting the socket down makes
// its loop read the end; the descriptor stays open until close, so it
// cannot have been reused.
func (p *poller) drop(c *loadConn) {
	c.dropped.Store(true)
	_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
}

// loop reads the connections of one epoll set, level-triggered: one read
// per ready socket per wait, and what a read leaves comes back next wait.
func (p *poller) loop(set *os.File) {
	defer p.wg.Done()
	rc, err := set.SyscallConn()
	if err != nil {
		panic("bench: epoll set: " + err.Error()) // only a closed file: a bug
	}
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for {
		var n int
		var werr error
		// rc.Read parks the goroutine until the set is readable while the
		// function returns false.
		err := rc.Read(func(epfd uintptr) bool {
			n, werr = unix.EpollWait(int(epfd), events, 0)
			return n > 0 || (werr != nil && werr != unix.EINTR)
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			panic("bench: epoll_wait: " + err.Error()) // only a bad set: a bug
		}
		for _, ev := range events[:n] {
			if ev.Pad < 0 {
				return
			}
			p.conns[ev.Pad].Load().readable(buf)
		}
	}
}

// readable reads what the socket has, after any pending bytes, and
// parses it.
func (c *loadConn) readable(buf []byte) {
	k := 0
	if len(c.pending) <= len(buf)/2 {
		k = copy(buf, c.pending)
	}
	n, err := unix.Read(c.fd, buf[k:])
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return
	case err != nil:
		c.end(err)
		return
	case n == 0:
		c.end(io.EOF)
		return
	}
	data := buf[:k+n]
	if k < len(c.pending) { // a long frame: it grows in pending
		c.pending = append(c.pending, buf[:n]...)
		data = c.pending
	}
	c.consume(data, time.Now().UnixNano())
}

// consume handles the complete frames in data and keeps the rest in
// pending. data may be pending itself.
func (c *loadConn) consume(data []byte, now int64) {
	for !c.dead {
		op, payload, n, err := nextFrame(data)
		if err != nil {
			c.end(err)
			return
		}
		if n == 0 {
			break
		}
		c.handle(op, payload, now)
		data = data[n:]
	}
	if len(data) == 0 && cap(c.pending) > 4<<10 {
		c.pending = nil // do not keep a long frame's buffer
		return
	}
	c.pending = append(c.pending[:0], data...)
}

// nextFrame parses the frame at the start of b: its opcode, its payload
// (within b) and its length, or n == 0 while b holds only part of it.
// Herald sends final, unmasked frames, uncompressed unless asked to.
func nextFrame(b []byte) (op byte, payload []byte, n int, err error) {
	if len(b) < 2 {
		return 0, nil, 0, nil
	}
	if b[0]&0xf0 != 0x80 || b[1]&0x80 != 0 {
		return 0, nil, 0, fmt.Errorf("unexpected frame header %#02x %#02x (fragmented, compressed or masked)", b[0], b[1])
	}
	size, h := uint64(b[1]&0x7f), 2
	switch size {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0, nil
		}
		size, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil, 0, nil
		}
		size, h = binary.BigEndian.Uint64(b[2:]), 10
	}
	if size > maxLoadFrame {
		return 0, nil, 0, fmt.Errorf("frame of %d bytes", size)
	}
	if uint64(len(b)-h) < size {
		return 0, nil, 0, nil
	}
	n = h + int(size)
	return b[0] & 0x0f, b[h:n], n, nil
}

func (c *loadConn) handle(op byte, payload []byte, now int64) {
	switch op {
	case opText:
		for len(payload) > 0 {
			// A batch=1 frame holds several frames, '\n'-separated.
			frame := payload
			if i := bytes.IndexByte(payload, '\n'); i >= 0 {
				frame, payload = payload[:i], payload[i+1:]
			} else {
				payload = nil
			}
			c.frame(frame, now)
		}
	case opPing:
		c.write(opPong, payload)
	case opClose:
		c.end(errors.New("close frame"))
	}
}

func (c *loadConn) frame(frame []byte, now int64) {
	_, _, offset, ok := push.MessageHead(frame)
	if !ok {
		switch push.FrameType(frame) {
		case "subscribed":
			const key = `"offset":`
			if i := bytes.Index(frame, []byte(key)); i >= 0 {
				c.next = parseUint(frame[i+len(key):]) + 1
			}
			c.started = true
			c.signal(nil)
		case "ping":
			c.write(opText, loadPong)
		case "error", "unsubscribed":
			c.signal(fmt.Errorf("server said: %s", frame))
		}
		return
	}
	c.run.delivered.Add(1)
	switch {
	case !c.started:
	case offset > c.next:
		// A throttled subscription says how many it skipped: only the
		// rest of the jump is lost.
		gap := offset - c.next
		if s := skippedOf(frame); s > 0 {
			c.run.skipped.Add(min(s, gap))
			gap -= min(s, gap)
		}
		if gap > 0 {
			c.run.lost.Add(gap)
		}
		c.next = offset + 1
	case offset < c.next:
		c.run.dups.Add(1)
	default:
		c.next++
	}
	const key = `"data":{"t":`
	if i := bytes.Index(frame, []byte(key)); i >= 0 {
		if sent := int64(parseUint(frame[i+len(key):])); sent > 0 {
			c.run.record(time.Duration(now - sent))
		}
	}
}

// skippedOf reads the "skipped" count the server appends last to a
// message frame (0 when there is none).
func skippedOf(frame []byte) uint64 {
	const key = `,"skipped":`
	if i := bytes.LastIndex(frame, []byte(key)); i >= 0 {
		return parseUint(frame[i+len(key):])
	}
	return 0
}

func parseUint(b []byte) uint64 {
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}

// signal tells the dialer, if it still waits, how the subscription went.
func (c *loadConn) signal(err error) {
	select {
	case c.ready <- err:
	default:
	}
}

// write sends a masked frame, as a client must. Its payload is a control
// frame's or the pong's: at most 125 bytes.
func (c *loadConn) write(op byte, payload []byte) {
	var f [6 + 125]byte
	f[0], f[1] = 0x80|op, 0x80|byte(len(payload))
	binary.NativeEndian.PutUint32(f[2:], rand.Uint32())
	for i, b := range payload {
		f[6+i] = b ^ f[2+i%4]
	}
	if err := writeAll(c.fd, f[:6+len(payload)]); err != nil {
		c.end(err)
	}
}

// writeAll writes b to the non-blocking socket fd, waiting for room if
// the socket buffer is full (a few bytes to a reading server: rare).
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EAGAIN {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if _, err = unix.Poll(pfd, 10_000); err == nil && pfd[0].Revents == 0 {
				err = errors.New("write: no room in 10s")
			}
		}
		if err != nil && err != unix.EINTR {
			return err
		}
		b = b[max(n, 0):]
	}
	return nil
}

// end takes c out of its epoll set and counts it closed, unless its dialer
// dropped it. The descriptor stays open until the poller closes.
func (c *loadConn) end(why error) {
	if c.dead {
		return
	}
	c.dead = true
	_ = unix.EpollCtl(c.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	if !c.dropped.Load() {
		c.run.closed.Add(1)
	}
	c.signal(fmt.Errorf("closed before subscribed: %v", why))
}

// dialLoad connects subscriber i (from source address i mod the sources),
// upgrades the connection, hands it to p and waits for the subscribe
// reply.
func dialLoad(ctx context.Context, cfg Config, p *poller, run *loadRun, wsURL string, i int) (*loadConn, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	if len(cfg.Sources) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: cfg.Sources[i%len(cfg.Sources)]}
	}
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	fd, early, err := upgrade(nc, u)
	if err != nil {
		return nil, err
	}
	c := &loadConn{run: run, i: i, fd: fd, epfd: -1, ready: make(chan error, 1)}
	// The frames that came with the handshake response, before the loop
	// owns c.
	c.consume(early, time.Now().UnixNano())
	if c.dead {
		_ = unix.Close(fd)
		return nil, errors.New("closed with the handshake")
	}
	if err := p.add(c); err != nil {
		return nil, err
	}
	select {
	case err = <-c.ready:
	case <-time.After(10 * time.Second):
		err = errors.New("no subscribe reply in 10s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		p.drop(c)
		return nil, err
	}
	return c, nil
}

// upgrade makes the WebSocket handshake on nc, then takes the socket from
// Go's netpoller: it returns a duplicate of nc's descriptor (closing nc
// takes the original out of the runtime's epoll set) and the bytes read
// past the response. The duplicate shares the original's O_NONBLOCK.
func upgrade(nc net.Conn, u *url.URL) (fd int, early []byte, err error) {
	defer nc.Close()
	var k [16]byte
	binary.NativeEndian.PutUint64(k[:], rand.Uint64())
	binary.NativeEndian.PutUint64(k[8:], rand.Uint64())
	key := base64.StdEncoding.EncodeToString(k[:])
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", u.RequestURI(), u.Host, key)
	if err != nil {
		return -1, nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return -1, nil, fmt.Errorf("handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return -1, nil, fmt.Errorf("handshake: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return -1, nil, errors.New("handshake: bad Sec-WebSocket-Accept")
	}
	early, _ = br.Peek(br.Buffered())
	early = bytes.Clone(early)
	sc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		return -1, nil, err
	}
	fd = -1
	if cerr := sc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return -1, nil, cerr
	}
	return fd, early, err
}
