package api

import (
	"errors"
	"net/http"

	"github.com/heraldpush/herald/push"
	"github.com/labstack/echo/v4"
)

// newError is an API error: its HTTP status comes from push's one table
// of error codes (push.HTTPStatus), as for every transport.
func newError(code, msg string) *push.Error {
	return &push.Error{Code: code, Message: msg}
}

// apiError is an error ready to answer: its code, message and status.
type apiError struct {
	err    *push.Error
	status int
}

// classify turns any error into an apiError. Errors of Herald's packages
// take their status from push's table; Echo's own (no route, wrong
// method, body limit) keep the status Echo gave them.
func classify(err error) apiError {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg, _ := he.Message.(string)
		if msg == "" {
			msg = http.StatusText(he.Code)
		}
		code := "http_error"
		switch he.Code {
		case http.StatusNotFound:
			code = push.CodeNotFound
		case http.StatusMethodNotAllowed:
			code = push.CodeMethodNotAllowed
		case http.StatusRequestEntityTooLarge:
			code = push.CodeTooLarge
		}
		return apiError{newError(code, msg), he.Code}
	}
	e := push.AsError(err)
	return apiError{e, e.Status()}
}

// errorHandler writes every error as {"error": {"code", "message"}}.
func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ae := classify(err)
	if ae.status == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", "1")
	}
	_ = c.JSON(ae.status, map[string]any{"error": ae.err})
}
