package api

import (
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/labstack/echo/v4"
)

// DefaultBodyTimeout bounds reading one request body. The HTTP server's
// header timeout ends at the headers: a body trickled at a byte per
// 500 ms held its connection and handler for as long as the client liked
// (issue 12). 10 s takes the largest body (max_request_bytes, 4 MiB) at
// 400 KiB/s.
const DefaultBodyTimeout = 10 * time.Second

// bodyDeadline sets the connection's read deadline for the body. The
// function it returns is called once the read is over: with whole set
// (the body was read to its end) it lifts the deadline, which left in
// place would fail net/http's background read that watches for the client
// going away and so cancel the request's context mid-publish. Otherwise
// (timeout, body too large, broken connection) the deadline stays and the
// connection is closed after the answer: net/http would else read up to
// 256 KiB more of the body before answering, with no deadline at all.
func (s *Server) bodyDeadline(c echo.Context) (done func(whole bool)) {
	rc := http.NewResponseController(c.Response())
	if rc.SetReadDeadline(time.Now().Add(s.opts.BodyTimeout)) != nil {
		return func(bool) {} // not a connection that takes deadlines
	}
	return func(whole bool) {
		if whole {
			_ = rc.SetReadDeadline(time.Time{})
			return
		}
		c.Response().Header().Set("Connection", "close")
		_ = c.Request().Body.Close() // fails at once on the passed deadline: not reused
	}
}

// bodyReadError maps a failed body read: 408 when the deadline passed.
func bodyReadError(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return newError(push.CodeRequestTimeout, "the request body did not arrive within the body timeout; send it at once")
	}
	return newError(push.CodeBadRequest, "reading body: "+err.Error())
}
