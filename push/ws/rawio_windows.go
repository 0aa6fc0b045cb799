package ws

import "syscall"

// rawSocketIO is false on Windows: its sockets are overlapped handles,
// which plain ReadFile and WriteFile must not be used on, so every session
// reads and writes through net.Conn and gws there (slower, same
// behaviour). sysRead and sysWrite are never called.
const rawSocketIO = false

func sysWrite(fd uintptr, p []byte) (int, error) { return 0, syscall.EWINDOWS }

func sysRead(fd uintptr, p []byte) (int, error) { return 0, syscall.EWINDOWS }
