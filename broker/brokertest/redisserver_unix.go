//go:build unix

package brokertest

import "syscall"

// Pause stops the server with SIGSTOP, as a hung or swapped-out Redis
// would: connections stay open and nothing is answered. Resume undoes it.
// Both do nothing on a stopped server.
func (s *RedisServer) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *RedisServer) Resume() { s.signal(syscall.SIGCONT) }

func (s *RedisServer) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}
