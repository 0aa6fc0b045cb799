//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris || illumos

package redisbroker

import (
	"errors"
	"io"
	"syscall"
)

// connCheck reports why the connection of raw (rawConn) is no longer fit to carry a pipeline: the
// peer closed it (a Redis that restarted or was killed), or something
// is waiting to be read, which Redis never sends unasked. go-redis's pool
// checks a connection the same way before it hands it out; a publish on a
// connection found dead here is never written, and goes out on a new
// one. Like go-redis's, it looks at the outer connection only (a TLS
// connection is not checked).
func connCheck(raw syscall.RawConn) error {
	if raw == nil {
		return nil
	}
	var cerr error
	if err := raw.Read(func(fd uintptr) bool {
		var buf [1]byte
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n == 0 && err == nil:
			cerr = io.EOF
		case n > 0:
			cerr = errors.New("redis: unexpected data on the publish connection")
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		default:
			cerr = err
		}
		return true // never wait for readiness
	}); err != nil {
		return err
	}
	return cerr
}
