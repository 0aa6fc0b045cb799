package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
	"github.com/labstack/echo/v4"
)

// apiError is an error with its HTTP status and machine-readable code.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Message }

func newError(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

// classify turns any error into an apiError. It is the one place where
// errors become HTTP statuses.
func classify(err error) *apiError {
	var ae *apiError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, push.ErrInvalidChannel):
		return newError(http.StatusBadRequest, push.CodeInvalidChannel, err.Error())
	case errors.Is(err, push.ErrUnknownNamespace):
		return newError(http.StatusBadRequest, push.CodeUnknownNS, err.Error())
	case errors.Is(err, push.ErrNoStore):
		return newError(http.StatusNotImplemented, "not_supported", err.Error())
	case errors.Is(err, broker.ErrUncertain):
		return newError(http.StatusGatewayTimeout, "outcome_unknown", "the broker did not answer in time: the message may or may not have been published; retrying may duplicate it: "+err.Error())
	case errors.Is(err, broker.ErrUnavailable), errors.Is(err, broker.ErrClosed),
		errors.Is(err, context.DeadlineExceeded):
		return newError(http.StatusServiceUnavailable, push.CodeUnavailable, "broker unavailable, nothing was published; retry later: "+err.Error())
	case errors.As(err, &he):
		msg, _ := he.Message.(string)
		if msg == "" {
			msg = http.StatusText(he.Code)
		}
		code := "http_error"
		switch he.Code {
		case http.StatusNotFound:
			code = "not_found"
		case http.StatusMethodNotAllowed:
			code = "method_not_allowed"
		case http.StatusRequestEntityTooLarge:
			code = push.CodeTooLarge
		}
		return newError(he.Code, code, msg)
	default:
		return newError(http.StatusInternalServerError, push.CodeInternal, err.Error())
	}
}

// errorHandler writes every error as {"error": {"code", "message"}}.
func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ae := classify(err)
	if ae.Status == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", "1")
	}
	_ = c.JSON(ae.Status, map[string]any{"error": ae})
}
