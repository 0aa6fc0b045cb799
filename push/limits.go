package push

// Reason names why a connection, frame or command was refused or a
// connection closed by a limit. Each is counted (Node.Rejections) so that
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
	ReasonBadFrame                   // frame header against RFC 6455 (push/ws/wsguard.go)
	numReasons
)

var reasonNames = [numReasons]string{
	"origin", "ip_limit", "token", "token_expired", "forbidden", "channel_limit",
	"frame_too_big", "rate_limited", "flood", "slow_consumer", "no_pong",
	"bad_frame",
}

func (r Reason) String() string { return reasonNames[r] }

// countRejection counts r (Session.reject answers a client's command
// with an error frame; this only counts).
func (n *Node) countRejection(r Reason) { n.rejected[r].Add(1) }

// Rejections returns the count of each reason.
func (n *Node) Rejections() map[string]uint64 {
	out := make(map[string]uint64, numReasons)
	for i := range n.rejected {
		out[reasonNames[i]] = n.rejected[i].Load()
	}
	return out
}
