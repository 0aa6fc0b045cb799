package heraldclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"
)

// Publishes carry an idempotency key and are retried while their outcome
// is unknown or nothing was published: on HTTP 503 (unavailable) and 504
// (outcome_unknown), their WebSocket error codes, and a broken connection.
// The server publishes a key once per channel within the namespace's
// idempotency_window (default 5m), so a retry never publishes twice as
// long as it comes within the window: retries stop after RetryFor (1m by
// default), well inside it.

// DefaultRetryFor is how long a publish is retried when Publisher.RetryFor
// (or the context) does not say.
const DefaultRetryFor = time.Minute

// NewIdempotencyKey returns a random key (32 hex digits).
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// retrier paces the attempts of one publish.
type retrier struct {
	deadline time.Time
	wait     time.Duration
}

func newRetrier(retryFor time.Duration) *retrier {
	if retryFor <= 0 {
		retryFor = DefaultRetryFor
	}
	return &retrier{deadline: time.Now().Add(retryFor), wait: 50 * time.Millisecond}
}

// again waits before the next attempt and reports whether there is one:
// not after the deadline, nor once ctx is done.
func (r *retrier) again(ctx context.Context) bool {
	if time.Now().Add(r.wait).After(r.deadline) {
		return false
	}
	t := time.NewTimer(r.wait)
	defer t.Stop()
	r.wait = min(2*r.wait, 2*time.Second)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// retryable reports whether a failed publish may be sent again with its
// key: the server said nothing was published (unavailable) or that it
// cannot tell (outcome_unknown), or no answer came (a broken connection,
// a timeout). A refusal (400, 401, 403, 413, 429) is final.
func retryable(err error) bool {
	var api *APIError
	if errors.As(err, &api) {
		return api.Status == 503 || api.Status == 504 || api.Status == 502
	}
	var se *ServerError
	if errors.As(err, &se) {
		return se.Code == "unavailable" || se.Code == "outcome_unknown"
	}
	var ce *CloseError
	if errors.As(err, &ce) {
		return false // the client has stopped for good
	}
	return !errors.Is(err, ErrClosed) && !errors.Is(err, context.Canceled)
}
