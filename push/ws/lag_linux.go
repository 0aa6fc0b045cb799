package ws

import (
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// windowProbe reads a socket's TCP_INFO up to tcpi_snd_wnd, the receive
// window its peer last advertised (Linux 5.4 on). One is borrowed per
// probe, its callback bound once, so that a probe allocates nothing.
type windowProbe struct {
	fn   func(fd uintptr)
	info unix.TCPInfo
	n    uint32 // bytes of info the kernel filled
}

var windowProbes = sync.Pool{New: func() any {
	p := new(windowProbe)
	p.fn = p.do
	return p
}}

// sndWndEnd is how much of struct tcp_info a probe asks for: through
// tcpi_snd_wnd, and no more.
const sndWndEnd = uint32(unsafe.Offsetof(unix.TCPInfo{}.Snd_wnd) + unsafe.Sizeof(unix.TCPInfo{}.Snd_wnd))

func (p *windowProbe) do(fd uintptr) {
	p.n = sndWndEnd
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&p.info)), uintptr(unsafe.Pointer(&p.n)), 0)
	if e != 0 {
		p.n = 0
	}
}

// peerWindow returns the receive window the client of rc last advertised;
// ok is false where the kernel does not tell it (before Linux 5.4).
func peerWindow(rc syscall.RawConn) (wnd uint32, ok bool) {
	p := windowProbes.Get().(*windowProbe)
	defer windowProbes.Put(p)
	if rc.Control(p.fn) != nil || p.n < sndWndEnd {
		return 0, false
	}
	return p.info.Snd_wnd, true
}
