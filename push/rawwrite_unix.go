//go:build !windows

package push

import "syscall"

// rawSocketWrites: sessions write to their sockets directly (wsframe.go).
const rawSocketWrites = true

func sysWrite(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }
