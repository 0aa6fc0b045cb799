package e2e

import "syscall"

// setRecvBuffer sets a socket's receive buffer (SO_RCVBUF) before it connects.
func setRecvBuffer(fd uintptr, n int) {
	_ = syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
}
