package api

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/heraldpush/herald/push"
	"github.com/labstack/echo/v4"
)

// recoverPanics ends a request whose handler panicked with a 500 (or, for
// a stream already under way, by dropping it) instead of the process: a
// request's goroutine is one connection's, like a WebSocket's read loop
// (push/recover.go). net/http would recover too, but silently for
// metrics; here the panic is counted (herald_panics_recovered_total) and
// logged with its stack. http.ErrAbortHandler is net/http's own way to
// abort a response and passes through.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if e, ok := v.(error); ok && errors.Is(e, http.ErrAbortHandler) {
				panic(v)
			}
			push.CountPanic()
			s.opts.Logger.Error("panic recovered: the request is failed with 500, the node goes on",
				"method", c.Request().Method, "path", c.Request().URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if c.Response().Committed {
				panic(http.ErrAbortHandler) // mid-stream: net/http drops the connection quietly
			}
			err = newError(push.CodeInternal, "internal error")
		}()
		return next(c)
	}
}
