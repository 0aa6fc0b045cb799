// Package healthcheck is the probe behind `herald healthcheck`: one GET of
// a node's /readyz (or /healthz) that succeeds only on 200. It exists
// because the distroless image has no shell or curl: the image's
// HEALTHCHECK and compose run the binary itself.
package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// URL is the address to probe: base (a node's base URL, a bare host:port
// gets http://) when given, else the loopback form of listen (the node's
// listen address, as given to serve), followed by path.
func URL(base, listen, path string) (string, error) {
	u := strings.TrimRight(base, "/")
	if u != "" && !strings.Contains(u, "://") {
		u = "http://" + u
	}
	if u == "" {
		host, err := ProbeHost(listen)
		if err != nil {
			return "", err
		}
		u = "http://" + host
	}
	return u + path, nil
}

// Result is what a node answered with 200.
type Result struct {
	Status string // "ready", "ok", or the body of a non-Herald server
	Node   string // the node's name, "" when it gave none
}

// Probe GETs u and returns nil only on 200; any other answer is an error
// carrying the status and the server's reason (a 503 from a draining node
// says "draining").
func Probe(ctx context.Context, u string) (Result, error) {
	var r Result
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return r, err
	}
	// No proxy from the environment: the probe is for this node, not for
	// whatever HTTP_PROXY points at.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return r, fmt.Errorf("%s: not reachable: %w", u, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("%s: %s: %s", u, resp.Status, Reason(body))
	}
	var ok struct {
		Status string `json:"status"`
		Node   string `json:"node"`
	}
	if err := json.Unmarshal(body, &ok); err != nil || ok.Status == "" {
		ok.Status = strings.TrimSpace(string(body)) // /healthz of another server, say
	}
	return Result{Status: ok.Status, Node: ok.Node}, nil
}

// ProbeHost turns a listen address into one to dial: ":8080" and
// "0.0.0.0:8080" listen everywhere, so probe loopback.
func ProbeHost(listen string) (string, error) {
	host, port, err := net.SplitHostPort(strings.TrimSpace(listen))
	if err != nil {
		return "", fmt.Errorf("--listen %q: want host:port or :port", listen)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}

// Reason is the server's error message in a Herald error body
// ({"error":{"code":...,"message":...}}), or the body itself.
func Reason(body []byte) string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return e.Error.Code + ": " + e.Error.Message
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		return s
	}
	return "empty response"
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	if ue.Timeout() {
		return errors.New("timed out")
	}
	return ue.Err
}
