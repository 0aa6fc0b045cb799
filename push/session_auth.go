package push

import (
	"encoding/json"
	"fmt"
	"time"
)

// SetClaims makes c (nil: anonymous) the session's identity and grants:
// the token a transport authenticated (Node.Authenticate) at connect.
func (s *Session) SetClaims(c *Claims) {
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
		s.node.countRejection(ReasonForbidden)
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
	s.node.countRejection(ReasonForbidden)
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
	c, err := s.node.Authenticate(token)
	if err != nil {
		e := AsError(err)
		s.reject(id, e.Code, e.Message, "")
		return
	}
	s.mu.Lock()
	user := s.user
	s.mu.Unlock()
	if user != "" && user != c.Subject {
		s.node.countRejection(ReasonToken)
		s.reject(id, CodeForbidden, fmt.Sprintf("token is for %q, this connection is %q", c.Subject, user), "")
		return
	}
	s.SetClaims(c)
	s.node.connectUser(s) // an anonymous connection that became a user
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
	grace := s.node.opts.TokenGrace
	if now.UnixNano() >= exp+grace.Nanoseconds() {
		if s.closeAsync(CloseTokenExpired, "token expired") {
			s.node.countRejection(ReasonTokenExpired)
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
	if !s.node.CheckAPIKey(key) {
		s.node.countRejection(ReasonToken)
		s.reject(id, CodeUnauthorized, "invalid API key", "")
		return
	}
	s.mu.Lock()
	s.admin = true
	s.mu.Unlock()
	s.send(encode(ackFrame{Type: "ack", ID: id}))
}

// Authenticate verifies a connection token, bans included: the one check
// for the WebSocket handshake, the auth frame, SSE and long-poll. A
// refusal is counted (ReasonToken) and is an *Error: unauthorized for a
// token that does not verify, forbidden for a banned user.
func (n *Node) Authenticate(token string) (*Claims, error) {
	c, err := n.opts.Verifier.Verify(token)
	if err != nil {
		n.countRejection(ReasonToken)
		return nil, &Error{Code: CodeUnauthorized, Message: err.Error(), Err: err}
	}
	if n.banned(c.Subject) {
		n.countRejection(ReasonToken)
		return nil, &Error{Code: CodeForbidden, Message: "this user is banned", Err: ErrToken}
	}
	return c, nil
}
