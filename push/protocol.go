package push

import (
	"encoding/json"
	"strconv"

	"github.com/heraldpush/herald/broker"
)

// Close codes (docs/protocol.md). 1000-1011 are RFC 6455's; 4000-4999 are
// Herald's own, so a client can tell why it was closed and what to do.
const (
	CloseNormal       = 1000
	CloseGoingAway    = 1001 // server draining: reconnect, elsewhere if need be
	CloseProtocol     = 1002 // the client broke RFC 6455's framing rules (§7.4.1)
	ClosePolicy       = 1008 // bad token, forbidden origin
	CloseTooBig       = 1009 // frame over max_frame_bytes
	CloseInternal     = 1011
	CloseSlowConsumer = 4001 // fell behind its send queue: reconnect with since
	CloseNoPong       = 4002 // answered no ping for heartbeat_timeout
	CloseTokenExpired = 4003 // token expired and was not refreshed in time
	CloseKicked       = 4004 // disconnected through the API
	CloseFlood        = 4005 // too many invalid or rate-limited frames
)

// Error codes carried in "error" frames and HTTP error bodies.
const (
	CodeBadRequest     = "bad_request"
	CodeUnknownType    = "unknown_type"
	CodeInvalidChannel = "invalid_channel"
	CodeUnknownNS      = "unknown_namespace"
	CodeForbidden      = "forbidden"
	CodeNotSubscribed  = "not_subscribed"
	CodeAlreadySub     = "already_subscribed"
	CodeTooLarge       = "too_large"
	CodeRateLimited    = "rate_limited"
	CodeUnavailable    = "unavailable"
	CodeUncertain      = "outcome_unknown"
	CodeLimit          = "limit_exceeded"
	CodeUnauthorized   = "unauthorized"
	CodeTokenExpired   = "token_expired"
	CodeInternal       = "internal"
)

// command is a client -> server frame.
type command struct {
	Type    string           `json:"type"`
	ID      json.Number      `json:"id,omitempty"`
	Channel string           `json:"channel,omitempty"`
	Since   *broker.Position `json:"since,omitempty"`
	MaxRate float64          `json:"max_rate,omitempty"`
	Data    json.RawMessage  `json:"data,omitempty"`
	Limit   int              `json:"limit,omitempty"`
	Cursor  string           `json:"cursor,omitempty"` // presence pages
	Token   string           `json:"token,omitempty"`
	Key     string           `json:"key,omitempty"` // auth as admin with an API key
	// IdempotencyKey of a publish: a retry with the same key publishes
	// nothing and is acked duplicate.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// Server -> client frames other than "message", encoded with encoding/json:
// they are rare next to messages.
type (
	welcomeFrame struct {
		Type        string `json:"type"`
		Client      string `json:"client"`
		Node        string `json:"node"`
		HeartbeatMS int64  `json:"heartbeat_ms"`
		Batch       bool   `json:"batch,omitempty"`
		User        string `json:"user,omitempty"`
	}
	subscribedFrame struct {
		Type      string      `json:"type"`
		ID        json.Number `json:"id,omitempty"`
		Channel   string      `json:"channel"`
		Epoch     string      `json:"epoch"`
		Offset    uint64      `json:"offset"`
		Recovered *bool       `json:"recovered,omitempty"`
		Server    bool        `json:"server,omitempty"` // a server-side subscription (serversub.go)
	}
	unsubscribedFrame struct {
		Type    string      `json:"type"`
		ID      json.Number `json:"id,omitempty"`
		Channel string      `json:"channel"`
		Reason  string      `json:"reason,omitempty"`
		Server  bool        `json:"server,omitempty"`
	}
	ackFrame struct {
		Type    string      `json:"type"`
		ID      json.Number `json:"id,omitempty"`
		Channel string      `json:"channel,omitempty"`
		Epoch   string      `json:"epoch,omitempty"`
		Offset  uint64      `json:"offset,omitempty"`
		// Duplicate: a publish whose idempotency key was seen; the
		// position is the first publish's.
		Duplicate bool `json:"duplicate,omitempty"`
	}
	historyFrame struct {
		Type     string          `json:"type"`
		ID       json.Number     `json:"id,omitempty"`
		Channel  string          `json:"channel"`
		Epoch    string          `json:"epoch"`
		Offset   uint64          `json:"offset"`
		Complete bool            `json:"complete"`
		Messages []messageObject `json:"messages"`
	}
	errorFrame struct {
		Type    string      `json:"type"`
		ID      json.Number `json:"id,omitempty"`
		Code    string      `json:"code"`
		Message string      `json:"message"`
		Channel string      `json:"channel,omitempty"`
	}
	messageObject struct {
		Channel string          `json:"channel"`
		Offset  uint64          `json:"offset"`
		Epoch   string          `json:"epoch"`
		TS      int64           `json:"ts,omitempty"`
		Data    json.RawMessage `json:"data"`
	}
)

// messageCap is the most bytes AppendMessage writes for m: the hub sizes
// each frame with it, so that encoding allocates once. The constant is the
// frame's fixed text plus room for the offset and ts digits.
func messageCap(m *broker.Message) int {
	const fixed = len(`{"type":"message","channel":"","offset":,"epoch":"","ts":,"snapshot":true,"data":null}`)
	return fixed + 2*20 + len(m.Channel) + len(m.Epoch) + len(m.Data)
}

// AppendMessage appends m's "message" frame to dst. It is the one encoding
// per node per message: every local subscriber gets the same bytes.
// Channel names and epochs need no escaping (their alphabets exclude '"'
// and '\\'), and Data is JSON checked at publish time.
func AppendMessage(dst []byte, m *broker.Message, snapshot bool) []byte {
	dst = append(dst, `{"type":"message","channel":"`...)
	dst = append(dst, m.Channel...)
	dst = append(dst, `","offset":`...)
	dst = strconv.AppendUint(dst, m.Offset, 10)
	dst = append(dst, `,"epoch":"`...)
	dst = append(dst, m.Epoch...)
	dst = append(dst, '"')
	if m.Time != 0 {
		dst = append(dst, `,"ts":`...)
		dst = strconv.AppendInt(dst, m.Time, 10)
	}
	if snapshot {
		dst = append(dst, `,"snapshot":true`...)
	}
	dst = append(dst, `,"data":`...)
	if len(m.Data) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, m.Data...)
	}
	return append(dst, '}')
}

func messageObjects(ms []broker.Message) []messageObject {
	out := make([]messageObject, len(ms))
	for i, m := range ms {
		out[i] = messageObject{Channel: m.Channel, Offset: m.Offset, Epoch: m.Epoch, TS: m.Time, Data: m.Data}
	}
	return out
}

// FrameType returns the "type" of a server frame without decoding it, for
// clients as MessageHead is: every server frame starts with
// {"type":"<type>".
func FrameType(frame []byte) string {
	const prefix = `{"type":"`
	if len(frame) < len(prefix) || string(frame[:len(prefix)]) != prefix {
		return ""
	}
	rest := frame[len(prefix):]
	for i, c := range rest {
		if c == '"' {
			return string(rest[:i])
		}
	}
	return ""
}

// MessageHead reads the channel, epoch and offset of a frame written by
// AppendMessage, without decoding its data: for clients that read frames
// off the wire (herald bench). The transports never need it: a queued
// Frame carries these fields.
func MessageHead(frame []byte) (channel, epoch string, offset uint64, ok bool) {
	const prefix = `{"type":"message","channel":"`
	if len(frame) < len(prefix) || string(frame[:len(prefix)]) != prefix {
		return "", "", 0, false
	}
	rest := frame[len(prefix):]
	i := indexByte(rest, '"')
	if i < 0 {
		return "", "", 0, false
	}
	channel, rest = string(rest[:i]), rest[i:]
	const offKey = `","offset":`
	if len(rest) < len(offKey) || string(rest[:len(offKey)]) != offKey {
		return "", "", 0, false
	}
	rest = rest[len(offKey):]
	for len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
		offset = offset*10 + uint64(rest[0]-'0')
		rest = rest[1:]
	}
	const epochKey = `,"epoch":"`
	if len(rest) < len(epochKey) || string(rest[:len(epochKey)]) != epochKey {
		return "", "", 0, false
	}
	rest = rest[len(epochKey):]
	if i = indexByte(rest, '"'); i < 0 {
		return "", "", 0, false
	}
	return channel, string(rest[:i]), offset, true
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}
