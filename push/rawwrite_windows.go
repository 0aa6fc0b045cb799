package push

import "syscall"

// rawSocketWrites is false on Windows: its sockets are overlapped handles,
// which a plain WriteFile must not be used on, so every session writes
// through gws there (slower, same behaviour).
const rawSocketWrites = false

func sysWrite(fd uintptr, p []byte) (int, error) { return 0, syscall.EWINDOWS }
