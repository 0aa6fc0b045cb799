//go:build !linux

package ws

import "syscall"

// peerWindow: only Linux tells the window a peer advertised
// (TCP_INFO's tcpi_snd_wnd); elsewhere no client is found to lag, and a
// stalled one is found out when its socket is full (lag.go).
func peerWindow(syscall.RawConn) (uint32, bool) { return 0, false }
