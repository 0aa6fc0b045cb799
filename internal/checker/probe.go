package checker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// probe asks the node at base, before any subscriber waits for a
// confirmation, whether the check can run there: the namespace exists,
// the API key is accepted, and the namespace keeps history (a subscriber
// that reconnects recovers what it missed from it). It publishes one
// message without a seq to channel (subscribers would ignore it; none
// subscribe to channel anyway) and reads it back from history. The
// error carries the server's code and message.
func probe(ctx context.Context, cfg Config, base, channel string) error {
	ns := fmt.Sprintf("namespace %q", cfg.Namespace)
	if cfg.Namespace == "" {
		ns = "the default namespace (default_namespace)"
	}
	c := &http.Client{Timeout: 10 * time.Second}
	status, body, err := call(ctx, c, http.MethodPost, base+"/api/publish", cfg.APIKey,
		fmt.Appendf(nil, `{"channel":%q,"data":{"probe":true}}`, channel))
	if err != nil {
		return fmt.Errorf("checker: probe publish to %s: %w", base, err)
	}
	if status/100 != 2 {
		code, msg := apiError(body)
		if code == "unknown_namespace" {
			return fmt.Errorf("checker: %s is not configured on %s: add it to namespaces with history_size >= %d and a history_ttl (server: %s)", ns, base, cfg.Messages, msg)
		}
		return fmt.Errorf("checker: probe publish to %s on %s: HTTP %d %s: %s", channel, base, status, code, msg)
	}
	status, body, err = call(ctx, c, http.MethodGet, base+"/api/channels/"+url.PathEscape(channel)+"/history", cfg.APIKey, nil)
	if err != nil {
		return fmt.Errorf("checker: probe history on %s: %w", base, err)
	}
	if status != http.StatusOK {
		code, msg := apiError(body)
		return fmt.Errorf("checker: probe history of %s on %s: HTTP %d %s: %s", channel, base, status, code, msg)
	}
	var h struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return fmt.Errorf("checker: probe history on %s: %w", base, err)
	}
	if len(h.Messages) == 0 {
		return fmt.Errorf("checker: %s keeps no history on %s: set its history_size (>= %d) and history_ttl, or reconnecting subscribers cannot recover", ns, base, cfg.Messages)
	}
	return nil
}

// call makes one API request and returns the status and body.
func call(ctx context.Context, c *http.Client, method, u, key string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// apiError reads {"error":{"code","message"}}, the shape of every HTTP
// error (docs/http-api.md).
func apiError(body []byte) (code, message string) {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
		return "", string(bytes.TrimSpace(body))
	}
	return e.Error.Code, e.Error.Message
}
