package push

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
)

// A panic on a goroutine that serves one connection must end that
// connection, not the process: an unrecovered panic on any goroutine exits
// the program and drops every client of the node. Each per-connection
// goroutine (the WebSocket read loop with the handlers it calls, the
// session's writer, the HTTP handlers of SSE and long-poll through the
// api package's middleware) recovers, closes its connection with 1011,
// counts the panic and logs it with its stack. docs/security.md says why.

// recoveredPanics counts the panics recovered on connection goroutines,
// process-wide (the /echo endpoint has no node): a process health figure,
// like the goroutine count. It should stay 0; anything else is a bug to
// report.
var recoveredPanics atomic.Uint64

// RecoveredPanics returns how many panics on connection goroutines were
// recovered since the process started (metric herald_panics_recovered_total).
func RecoveredPanics() uint64 { return recoveredPanics.Load() }

// CountPanic counts a panic recovered outside this package (the api
// package's HTTP handlers).
func CountPanic() { recoveredPanics.Add(1) }

// InternalErrorReason is the close reason sent with 1011.
const InternalErrorReason = "internal error"

// LogPanic counts and logs a recovered panic with its stack: every
// transport's recovery calls it.
func LogPanic(log *slog.Logger, where string, v any, attrs ...any) {
	recoveredPanics.Add(1)
	attrs = append(attrs, "where", where, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	log.Error("panic recovered: the connection is closed with 1011, the node goes on", attrs...)
}

// Aborter is a transport that can end its connection at once, without a
// close frame: what is left when its Close panicked.
type Aborter interface{ Abort() }

// catchWriterPanic is deferred by the session's writer (writeOut). The
// writer holds the transport, so it is what closes it: the session is
// marked closed, then the transport sends 1011 and ends the connection; its
// reader side sees the socket close and cleans up as always.
func (s *Session) catchWriterPanic() {
	v := recover()
	if v == nil {
		return
	}
	LogPanic(s.node.log, "writer", v, "client", s.id)
	s.mu.Lock()
	s.closed, s.closing = true, false
	s.mu.Unlock()
	s.closeCode.CompareAndSwap(0, CloseInternal)
	defer func() {
		if v := recover(); v != nil {
			LogPanic(s.node.log, "writer close", v, "client", s.id)
			if a, ok := s.t.(Aborter); ok {
				a.Abort()
			}
		}
	}()
	s.t.Close(CloseInternal, InternalErrorReason)
}
