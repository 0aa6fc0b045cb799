package push

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// Reason names why a connection, frame or command was refused or a
// connection closed by a limit. Each is counted (Hub.Rejections) so that
// operators see limits being hit.
type Reason int

// Reasons.
const (
	ReasonOrigin       Reason = iota // foreign Origin refused
	ReasonIPLimit                    // too many connections from one address
	ReasonToken                      // bad token
	ReasonTokenExpired               // token expired and not refreshed
	ReasonForbidden                  // channel not granted / namespace refuses
	ReasonChannelLimit               // too many channels on one connection
	ReasonFrameTooBig                // frame over max_frame_bytes
	ReasonRateLimited                // client publish over publish_rate
	ReasonFlood                      // too many rejected frames
	ReasonSlowConsumer               // send queue overflow
	ReasonNoPong                     // heartbeat timeout
	ReasonBadFrame                   // frame header against RFC 6455 (wsguard.go)
	numReasons
)

var reasonNames = [numReasons]string{
	"origin", "ip_limit", "token", "token_expired", "forbidden", "channel_limit",
	"frame_too_big", "rate_limited", "flood", "slow_consumer", "no_pong",
	"bad_frame",
}

func (r Reason) String() string { return reasonNames[r] }

// reject counts r.
func (h *Hub) reject(r Reason) { h.rejected[r].Add(1) }

// Rejections returns the count of each reason.
func (h *Hub) Rejections() map[string]uint64 {
	out := make(map[string]uint64, numReasons)
	for i := range h.rejected {
		out[reasonNames[i]] = h.rejected[i].Load()
	}
	return out
}

// ipLimiter caps the connections open from one client address.
type ipLimiter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func (l *ipLimiter) acquire(ip string) bool {
	if l.max <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip] >= l.max {
		return false
	}
	l.n[ip]++
	return true
}

func (l *ipLimiter) release(ip string) {
	if l.max <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip]--; l.n[ip] <= 0 {
		delete(l.n, ip)
	}
}

// ClientIP returns the address a request came from. Behind a trusted
// proxy (its address is in trusted), it is the right-most X-Forwarded-For
// entry that is not itself a trusted proxy; otherwise the TCP peer, so
// that clients cannot forge their address.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(trusted) == 0 || !inPrefixes(host, trusted) {
		return host
	}
	hops := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		if !inPrefixes(hop, trusted) {
			return hop
		}
	}
	return host
}

func inPrefixes(ip string, ps []netip.Prefix) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
