//go:build !linux

package ws

import "net"

// setNotSentLowat does nothing here: the unsent-bytes bound is Linux's
// (other systems rely on send_buffer_bytes alone).
func setNotSentLowat(*net.TCPConn, int) {}
