package push

import (
	"encoding/json"
	"fmt"
	"time"
)

// setClaims makes c (nil: anonymous) the session's identity and grants.
func (s *Session) setClaims(c *Claims) {
	var exp int64
	s.mu.Lock()
	s.claims = c
	s.warned = false
	if c != nil {
		s.user = c.Subject
		if c.ExpiresAt != nil {
			exp = c.ExpiresAt.UnixNano()
		}
	}
	s.mu.Unlock()
	s.expires.Store(exp)
}

// authorize checks the namespace's access rules for channel, answering
// the refusal itself.
func (s *Session) authorize(id json.Number, ns *Namespace, channel string) bool {
	s.mu.Lock()
	c := s.claims
	s.mu.Unlock()
	if c != nil && (ns.Private || !ns.AllowsAnonymous()) && s.tokenExpired(time.Now()) { // session_grace.go
		s.hub.reject(ReasonForbidden)
		s.reject(id, CodeTokenExpired, "token expired: send an auth frame with a fresh token first", channel)
		return false
	}
	msg := ""
	switch {
	case c == nil && ns.Private:
		msg = "private namespace: connect with a token that grants this channel"
	case c == nil && !ns.AllowsAnonymous():
		msg = "this namespace needs a token"
	case ns.Private && !c.Allows(channel):
		msg = "your token does not grant this channel"
	default:
		return true
	}
	s.hub.reject(ReasonForbidden)
	s.reject(id, CodeForbidden, msg, channel)
	return false
}

// auth handles an auth frame: a first token for an anonymous connection,
// or a fresh one before the current one expires. The user may not change.
func (s *Session) auth(id json.Number, token string) {
	if token == "" {
		s.reject(id, CodeBadRequest, `missing "token"`, "")
		return
	}
	c, err := s.hub.opts.Verifier.Verify(token)
	if err != nil {
		s.hub.reject(ReasonToken)
		s.reject(id, CodeUnauthorized, err.Error(), "")
		return
	}
	if s.hub.banned(c.Subject) {
		s.hub.reject(ReasonToken)
		s.reject(id, CodeForbidden, "this user is banned", "")
		return
	}
	s.mu.Lock()
	user := s.user
	s.mu.Unlock()
	if user != "" && user != c.Subject {
		s.hub.reject(ReasonToken)
		s.reject(id, CodeForbidden, fmt.Sprintf("token is for %q, this connection is %q", c.Subject, user), "")
		return
	}
	s.setClaims(c)
	s.send(encode(ackFrame{Type: "ack", ID: id}))
}

// checkToken closes a session whose token expired more than the grace
// period ago, after telling it once at expiry. It reports whether the
// session stays open.
func (s *Session) checkToken(now time.Time) bool {
	exp := s.expires.Load()
	if exp == 0 || now.UnixNano() < exp {
		return true
	}
	grace := s.hub.opts.TokenGrace
	if now.UnixNano() >= exp+grace.Nanoseconds() {
		if s.closeAsync(CloseTokenExpired, "token expired") {
			s.hub.reject(ReasonTokenExpired)
		}
		return false
	}
	s.mu.Lock()
	warn := !s.warned
	s.warned = true
	s.mu.Unlock()
	if warn {
		s.send(errFrame("", CodeTokenExpired, fmt.Sprintf("token expired: send an auth frame with a fresh token within %s", grace), ""))
	}
	return true
}

// authAdmin makes the session an admin when key is an API key: it may
// then subscribe to herald:stats (the admin page does).
func (s *Session) authAdmin(id json.Number, key string) {
	if !s.hub.isAdminKey(key) {
		s.hub.reject(ReasonToken)
		s.reject(id, CodeUnauthorized, "invalid API key", "")
		return
	}
	s.mu.Lock()
	s.admin = true
	s.mu.Unlock()
	s.send(encode(ackFrame{Type: "ack", ID: id}))
}

// Authenticate verifies a token for a one-way transport (SSE, long-poll)
// the way a WebSocket handshake does, bans included.
func (h *Hub) Authenticate(token string) (*Claims, error) {
	c, err := h.opts.Verifier.Verify(token)
	if err != nil {
		h.reject(ReasonToken)
		return nil, err
	}
	if h.banned(c.Subject) {
		h.reject(ReasonToken)
		return nil, fmt.Errorf("%w: this user is banned", ErrToken)
	}
	return c, nil
}

// SetClaims gives a session opened by an HTTP transport its token's
// identity and grants (nil: anonymous).
func (s *Session) SetClaims(c *Claims) { s.setClaims(c) }
