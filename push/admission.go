package push

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
)

// Admission decides who may connect, for every transport: a browser's
// Origin, the client's address behind trusted proxies, and the cap on
// connections per address. One is shared by the node's transports
// (push/ws, push/sse, push/poll), so that the cap counts a client's
// connections on all of them.
type Admission struct {
	// Origins allowed to connect from a browser, besides the server's own
	// host. "*" allows any.
	origins map[string]bool
	anyOrig bool
	trusted []netip.Prefix
	ips     *ipLimiter
}

// AdmissionOptions are the rules of an Admission.
type AdmissionOptions struct {
	// AllowedOrigins lists origins ("https://app.example.com") allowed
	// besides the request's own host; "*" allows every origin.
	AllowedOrigins []string
	// MaxConnsPerIP caps the open connections from one client address
	// (0: no cap).
	MaxConnsPerIP int
	// TrustedProxies are the proxies whose X-Forwarded-For is believed
	// when finding a client's address.
	TrustedProxies []netip.Prefix
}

// NewAdmission returns the admission rules of o.
func NewAdmission(o AdmissionOptions) *Admission {
	a := &Admission{
		origins: make(map[string]bool), trusted: o.TrustedProxies,
		ips: &ipLimiter{max: o.MaxConnsPerIP, n: make(map[string]int)},
	}
	for _, o := range o.AllowedOrigins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" {
			a.anyOrig = true
		} else if o != "" {
			a.origins[strings.ToLower(o)] = true
		}
	}
	return a
}

// Admit checks r's origin and takes a connection slot for its client
// address, counting a refusal on n. The caller releases ip (Release) when
// the connection ends.
func (a *Admission) Admit(n *Node, r *http.Request) (ip string, err *Error) {
	if !a.checkOrigin(r.Header.Get("Origin"), r.Host) {
		n.countRejection(ReasonOrigin)
		return "", Errorf(CodeForbidden, "origin not allowed: add it to allowed_origins")
	}
	ip = clientIP(r, a.trusted)
	if !a.ips.acquire(ip) {
		n.countRejection(ReasonIPLimit)
		return "", Errorf(CodeLimit, "too many connections from your address")
	}
	return ip, nil
}

// Release gives back the connection slot Admit took for ip.
func (a *Admission) Release(ip string) { a.ips.release(ip) }

// checkOrigin reports whether a browser on origin may connect to a server
// reached at host. Requests without an Origin header (non-browser clients)
// are allowed: Origin only protects browsers' ambient credentials.
func (a *Admission) checkOrigin(origin, host string) bool {
	if origin == "" || a.anyOrig {
		return true
	}
	if a.origins[strings.ToLower(strings.TrimRight(origin, "/"))] {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, host)
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

// clientIP returns the address a request came from. Behind a trusted
// proxy (its address is in trusted), it is the right-most X-Forwarded-For
// entry that is not itself a trusted proxy; otherwise the TCP peer, so
// that clients cannot forge their address.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
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
