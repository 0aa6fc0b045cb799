package api

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/heraldpush/herald/push"
)

// Without an API key the publisher API serves loopback clients only: a
// fresh install is usable with curl on the machine and closed to the
// network. A browser on that machine is on loopback too, though, and any
// page it opens can send requests there: a form or a no-cors fetch
// (text/plain, form-encoded, multipart), a beacon, or, after rebinding its
// own DNS name to 127.0.0.1, same-origin requests to a host name that is
// not Herald's. None of those can carry an API key, which is why keyed
// mode needs nothing more; keyless mode refuses what they can send:
//
//   - a Host that is not a loopback name or address (DNS rebinding: the
//     page's own name, resolved to 127.0.0.1);
//   - Sec-Fetch-Site other than same-origin or none (the browser says the
//     request comes from another origin), and an Origin other than the
//     server's own (for browsers without Fetch Metadata);
//   - a body that is not application/json: a page can only send JSON
//     cross-origin after a CORS preflight, which Herald never grants.
//
// Herald's own pages (the admin page) are same-origin and send JSON, so
// they keep working; curl and backends send no Origin or Sec-Fetch-Site.

// keylessCheck returns why r is refused in keyless mode, or nil.
func keylessCheck(r *http.Request) *push.Error {
	const hint = "no api_key is configured: the publisher API only takes requests made on this machine, not by web pages; "
	if !loopbackHost(r.Host) {
		return newError(push.CodeForbidden, hint+"reach it as localhost or 127.0.0.1, not as "+r.Host)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return newError(push.CodeForbidden, hint+"this request came from a "+site+" page")
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
			return newError(push.CodeForbidden, hint+"this request came from the page "+origin)
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" && !isJSONMediaType(ct) {
			return newError(push.CodeUnsupportedMedia,
				"send the body as JSON with Content-Type: application/json (without an api_key nothing else is taken, so that web pages cannot publish)")
		}
	}
	return nil
}

// loopbackHost reports whether the Host header names this machine's
// loopback: localhost (or a name under .localhost, which resolvers must
// keep on loopback, RFC 6761) or a loopback address.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isJSONMediaType reports whether ct names application/json, with
// parameters or in other cases (the exact spelling, the usual one, is
// checked before this, without parsing).
func isJSONMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}
