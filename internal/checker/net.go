package checker

import (
	"errors"
	"syscall"
)

// isRefused reports whether a request failed before reaching a server, so
// that retrying it cannot publish twice.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}
