package bench

// The pieces of "herald bench" between its flags and Run: list arguments
// parsed into their types and reports printed, so that cmd/herald only
// declares flags.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// SplitURLs splits a comma-separated --url into the servers' base URLs
// and their WebSocket endpoints (ws://host/ws), in the same order.
func SplitURLs(s string) (httpURLs, wsURLs []string) {
	for _, u := range strings.Split(s, ",") {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		if u == "" {
			continue
		}
		httpURLs = append(httpURLs, u)
		wsURLs = append(wsURLs, "ws"+strings.TrimPrefix(u, "http")+"/ws")
	}
	return httpURLs, wsURLs
}

// ParsePIDs parses a comma-separated --pid list.
func ParsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("bench: --pid: %q is not a pid", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// ParseSources parses a comma-separated --sources list of IP addresses.
func ParseSources(s string) ([]net.IP, error) {
	var ips []net.IP
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		ip := net.ParseIP(f)
		if ip == nil {
			return nil, fmt.Errorf("bench: --sources: %q is not an IP address", f)
		}
		ips = append(ips, ip)
	}
	return ips, nil
}

// RunPrint runs the load generator and prints its report, also when the
// run ended with an error after measuring something. A run in which no
// connection came up is an error.
func RunPrint(ctx context.Context, cfg Config, asJSON bool, w io.Writer) error {
	r, err := Run(ctx, cfg)
	if r == nil {
		return err
	}
	if perr := Print(w, r, asJSON); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	if r.Conns > 0 && r.ConnsUp == 0 {
		return fmt.Errorf("bench: no connection came up: %s", r.FirstError)
	}
	return nil
}

// Print writes a report (this package's or the checker's) as indented
// JSON or as its String form.
func Print(w io.Writer, r fmt.Stringer, asJSON bool) error {
	if !asJSON {
		_, err := fmt.Fprintln(w, r)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
