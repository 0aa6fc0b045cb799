package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// cmdHealthcheck asks the local node whether it is ready (GET /readyz) and
// exits 0 only when it is. It exists because the distroless image has no
// shell or curl: the image's HEALTHCHECK and compose run the binary itself.
//
//	herald healthcheck                       # http://127.0.0.1:8080/readyz, or HERALD_LISTEN's port
//	herald healthcheck --listen :9000        # the node's listen address, as given to serve
//	herald healthcheck --url http://10.0.0.5:8080
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defListen := os.Getenv("HERALD_LISTEN")
	if defListen == "" {
		defListen = ":8080" // serve's default listen address
	}
	listen := fs.String("listen", defListen, "the node's listen address (env HERALD_LISTEN); probed on loopback when it names no host")
	base := fs.String("url", "", "the node's base URL (overrides --listen)")
	path := fs.String("path", "/readyz", "what to probe: /readyz (ready for clients) or /healthz (process alive)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("healthcheck: unexpected argument %q", fs.Arg(0))
	}
	u := strings.TrimRight(*base, "/")
	if u != "" && !strings.Contains(u, "://") {
		u = "http://" + u
	}
	if u == "" {
		host, err := probeHost(*listen)
		if err != nil {
			return fmt.Errorf("healthcheck: %w", err)
		}
		u = "http://" + host
	}
	u += *path

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	// No proxy from the environment: the probe is for this node, not for
	// whatever HTTP_PROXY points at.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %s: not reachable: %w", u, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: %s: %s", u, resp.Status, reason(body))
	}
	var ok struct {
		Status string `json:"status"`
		Node   string `json:"node"`
	}
	if err := json.Unmarshal(body, &ok); err != nil || ok.Status == "" {
		ok.Status = strings.TrimSpace(string(body)) // /healthz of another server, say
	}
	_, err = fmt.Fprintf(stdout, "%s: %s %s\n", u, ok.Status, ok.Node)
	return err
}

// probeHost turns a listen address into one to dial: ":8080" and
// "0.0.0.0:8080" listen everywhere, so probe loopback.
func probeHost(listen string) (string, error) {
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

// reason is the server's error message in a Herald error body
// ({"error":{"code":...,"message":...}}), or the body itself.
func reason(body []byte) string {
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
