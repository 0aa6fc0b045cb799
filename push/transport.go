package push

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"
)

// What the transport packages (push/ws, push/sse, push/poll) use of a
// session and a node, besides Transport, TryWriter and NewSession
// (session.go). The core's own code calls the unexported forms.

// Pinger is a transport with a ping of its own, sent after each JSON ping:
// a WebSocket's protocol ping, which browsers answer by themselves.
type Pinger interface {
	// PingFrame is the frame queued for the transport's own ping.
	PingFrame() *Frame
}

// Send queues frame for the client without blocking (a WebSocket's pong,
// its welcome). frame may be shared and must not be modified.
func (s *Session) Send(frame *Frame) { s.send(frame) }

// Handle decodes and runs one command frame from the client.
func (s *Session) Handle(raw []byte) { s.handle(raw) }

// Touch records that the client sent something: it is alive.
func (s *Session) Touch() { s.touch() }

// Welcome is the first frame of a WebSocket session; batch says that the
// connection packs messages into frames.
func (s *Session) Welcome(batch bool) *Frame { return s.welcome(batch) }

// Reject answers a frame from the client with an error and counts it
// against the flood limit.
func (s *Session) Reject(id json.Number, code, msg, channel string) { s.reject(id, code, msg, channel) }

// CloseAsync has the session's writer send the close (code, reason) and
// end the connection after what it is writing now; it reports whether this
// call closed the session.
func (s *Session) CloseAsync(code uint16, reason string) bool { return s.closeAsync(code, reason) }

// IsClosed reports whether the session is closed or closing.
func (s *Session) IsClosed() bool { return s.isClosed() }

// Opened is when the session was created.
func (s *Session) Opened() time.Time { return time.Unix(0, s.opened) }

// Logger is the node's logger, for transports.
func (n *Node) Logger() *slog.Logger { return n.log }

// CountRejection counts a refusal seen by a transport (origin, address
// limit, a bad frame).
func (n *Node) CountRejection(r Reason) { n.countRejection(r) }

// MaxRejectedFrames is how many rejected frames a session may send between
// two heartbeats before it is closed as a flood (4005).
const MaxRejectedFrames = maxErrors

// AuthenticateQuery checks the token query parameter of r, for the event
// streams (EventSource cannot send headers): no token is anonymous (nil
// claims), a bad one is unauthorized.
func (n *Node) AuthenticateQuery(r *http.Request) (*Claims, error) {
	tok := r.URL.Query().Get("token")
	if tok == "" {
		return nil, nil
	}
	claims, err := n.Authenticate(tok)
	if err != nil {
		return nil, &Error{Code: CodeUnauthorized, Message: err.Error(), Err: err}
	}
	return claims, nil
}

// WriteHTTPError answers err as {"error": {"code", "message"}} with the
// status of its code (HTTPStatus), as the HTTP API does, for handlers
// outside Echo (the transports).
func WriteHTTPError(w http.ResponseWriter, err error) {
	e := AsError(err)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.Status() == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(e.Status())
	b, _ := json.Marshal(map[string]*Error{"error": e})
	_, _ = w.Write(append(b, '\n'))
}
