package push

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/heraldpush/herald/broker"
)

// Error is the one error type of Herald's operations: a machine-readable
// code (docs/protocol.md, docs/http-api.md) and a message for people.
// Every transport turns it into its own form through the one table below:
// an "error" frame on a WebSocket, an HTTP status and JSON body on the
// API, SSE and long-poll, a close code where the error ends a connection.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Err is the cause, if any, for errors.Is (broker.ErrUncertain...).
	Err error `json:"-"`
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error { return e.Err }

// Status is the HTTP status for the error's code.
func (e *Error) Status() int { return HTTPStatus(e.Code) }

// Errorf returns an Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// More error codes, used by the HTTP API only.
const (
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeNotSupported     = "not_supported"
	CodeDraining         = "draining"
	CodePubSubStalled    = "pubsub_stalled" // /readyz: the pub/sub canary is not coming back (canary.go)
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeRequestTimeout   = "request_timeout"
)

// codeInfo is what a code means to each transport.
type codeInfo struct {
	status int    // HTTP status
	close  uint16 // close code when the error ends a connection; 0: it does not
}

// codes is the one table from error code to HTTP status and close code.
// A code not in it is a bug; it answers 500.
var codes = map[string]codeInfo{
	CodeBadRequest:       {http.StatusBadRequest, 0},
	CodeUnknownType:      {http.StatusBadRequest, 0},
	CodeInvalidChannel:   {http.StatusBadRequest, 0},
	CodeUnknownNS:        {http.StatusBadRequest, 0},
	CodeNotSubscribed:    {http.StatusBadRequest, 0},
	CodeAlreadySub:       {http.StatusConflict, 0},
	CodeUnauthorized:     {http.StatusUnauthorized, ClosePolicy},
	CodeTokenExpired:     {http.StatusUnauthorized, CloseTokenExpired},
	CodeForbidden:        {http.StatusForbidden, ClosePolicy},
	CodeNotFound:         {http.StatusNotFound, 0},
	CodeMethodNotAllowed: {http.StatusMethodNotAllowed, 0},
	CodeTooLarge:         {http.StatusRequestEntityTooLarge, CloseTooBig},
	CodeUnsupportedMedia: {http.StatusUnsupportedMediaType, 0},
	CodeRequestTimeout:   {http.StatusRequestTimeout, 0},
	CodeRateLimited:      {http.StatusTooManyRequests, CloseFlood},
	CodeLimit:            {http.StatusTooManyRequests, ClosePolicy},
	CodeInternal:         {http.StatusInternalServerError, CloseInternal},
	CodeNotSupported:     {http.StatusNotImplemented, 0},
	CodeUnavailable:      {http.StatusServiceUnavailable, CloseInternal},
	CodeDraining:         {http.StatusServiceUnavailable, CloseGoingAway},
	CodePubSubStalled:    {http.StatusServiceUnavailable, 0},
	CodeUncertain:        {http.StatusGatewayTimeout, 0},
}

// HTTPStatus is the HTTP status for an error code.
func HTTPStatus(code string) int {
	if c, ok := codes[code]; ok {
		return c.status
	}
	return http.StatusInternalServerError
}

// CloseCode is the WebSocket close code for an error that ends a
// connection (a refused handshake token is 1008).
func CloseCode(code string) uint16 {
	if c, ok := codes[code]; ok && c.close != 0 {
		return c.close
	}
	return CloseInternal
}

// AsError turns any error of Herald's packages into an *Error: the code is
// decided here, once, for every transport. Node's publishes wrap broker
// errors themselves (publishError), to say that nothing was published.
func AsError(err error) *Error {
	var e *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrInvalidChannel):
		return &Error{Code: CodeInvalidChannel, Message: err.Error(), Err: err}
	case errors.Is(err, ErrUnknownNamespace):
		return &Error{Code: CodeUnknownNS, Message: err.Error(), Err: err}
	case errors.Is(err, ErrNoStore):
		return &Error{Code: CodeNotSupported, Message: err.Error(), Err: err}
	case errors.Is(err, ErrToken):
		return &Error{Code: CodeUnauthorized, Message: err.Error(), Err: err}
	case errors.Is(err, broker.ErrUncertain):
		return &Error{Code: CodeUncertain, Err: err, Message: "the broker did not answer in time: the message may or may not have been published; retrying may duplicate it: " + err.Error()}
	case errors.Is(err, broker.ErrUnavailable), errors.Is(err, broker.ErrClosed),
		errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeUnavailable, Err: err, Message: "broker unavailable, retry later: " + err.Error()}
	default:
		return &Error{Code: CodeInternal, Message: err.Error(), Err: err}
	}
}
