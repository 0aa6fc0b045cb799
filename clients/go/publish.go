package heraldclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Publisher publishes through Herald's HTTP API (POST /api/publish,
// docs/http-api.md): what a backend uses, with the API key.
type Publisher struct {
	// URL is the server's base URL, e.g. http://localhost:8080.
	URL string
	// APIKey is sent as a bearer token; "" for none (loopback only).
	APIKey string
	// Client makes the requests; nil uses http.DefaultClient. Give it a
	// timeout: a request that gets no answer in time is retried.
	Client *http.Client
	// RetryFor is how long a publish whose outcome is unknown (HTTP 504,
	// a broken connection, a timeout) or that was not published (503) is
	// retried with the same idempotency key; 0 means DefaultRetryFor.
	// Keep it under the namespace's idempotency_window (default 5m).
	RetryFor time.Duration
}

// APIError is an HTTP answer other than 2xx, with the server's error
// code and message when it sent them.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// Publish sends data (JSON) to channel with a fresh idempotency key and
// returns the server's answer: the message's position as JSON
// ({"channel","epoch","offset",...}). It retries 503, 504 and broken
// connections with the same key, so the message is published once
// (docs/guarantees.md); an answer with "duplicate": true is a retry that
// found its first attempt published.
func (p *Publisher) Publish(ctx context.Context, channel string, data json.RawMessage) (json.RawMessage, error) {
	return p.PublishKeyed(ctx, channel, NewIdempotencyKey(), data)
}

// PublishKeyed is Publish with the caller's idempotency key (1-128
// bytes): the same key on the same channel within the namespace's
// idempotency_window publishes once, across retries and processes.
func (p *Publisher) PublishKeyed(ctx context.Context, channel, key string, data json.RawMessage) (json.RawMessage, error) {
	body, err := json.Marshal(struct {
		Channel        string          `json:"channel"`
		Data           json.RawMessage `json:"data"`
		IdempotencyKey string          `json:"idempotency_key,omitempty"`
	}{channel, data, key})
	if err != nil {
		return nil, err
	}
	r := newRetrier(p.RetryFor)
	for {
		ans, err := p.post(ctx, body)
		if err == nil || !retryable(err) || ctx.Err() != nil || !r.again(ctx) {
			return ans, err
		}
	}
}

// post makes one attempt.
func (p *Publisher) post(ctx context.Context, body []byte) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(p.URL, "/")+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.APIKey)
	}
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Status: resp.StatusCode, Message: string(bytes.TrimSpace(b))}
		var v struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(b, &v) == nil && v.Error.Code != "" {
			e.Code, e.Message = v.Error.Code, v.Error.Message
		}
		return nil, e
	}
	return bytes.TrimSpace(b), nil
}
