//go:build !windows

package ws

import "syscall"

// rawSocketIO: sessions read and write their sockets' descriptors
// directly (wsframe.go, wsguard.go).
const rawSocketIO = true

func sysWrite(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }

func sysRead(fd uintptr, p []byte) (int, error) { return syscall.Read(int(fd), p) }
