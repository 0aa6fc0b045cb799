package push

import "time"

// tokenExpired reports whether the session's token has expired. During
// token_grace the connection stays, to send a fresh token, and keeps what
// it has; it may not use its expired grants for anything new (subscribe,
// history, presence, publish in private or token-only namespaces): the
// grace is for refreshing, not for access.
func (s *Session) tokenExpired(now time.Time) bool {
	exp := s.expires.Load()
	return exp != 0 && now.UnixNano() >= exp
}
