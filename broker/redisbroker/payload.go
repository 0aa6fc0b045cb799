package redisbroker

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/heraldpush/herald/broker"
)

var errPayload = errors.New("malformed payload")

// decodePayload reads one pub/sub message as publishScript sends it: the
// consecutive messages of one channel, "<epoch> <ts> <first offset>
// <len>:<data><len>:<data>...". The channel is the caller's to set (the
// pub/sub channel names it). A payload starting with "{" is the JSON of
// one broker.Message, as versions before this format published it, so
// that a node reads what an older node still publishes during a rolling
// upgrade. The messages' data share one copy of the payload.
func decodePayload(p string) ([]*broker.Message, error) {
	if strings.HasPrefix(p, "{") {
		msg := new(broker.Message)
		if err := json.Unmarshal([]byte(p), msg); err != nil {
			return nil, err
		}
		return []*broker.Message{msg}, nil
	}
	epoch, rest, ok1 := strings.Cut(p, " ")
	ts, rest, ok2 := strings.Cut(rest, " ")
	first, rest, ok3 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !ok3 || epoch == "" {
		return nil, errPayload
	}
	off, err := strconv.ParseUint(first, 10, 64)
	if err != nil {
		return nil, errPayload
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, errPayload
	}
	buf := []byte(rest)
	var out []*broker.Message
	for len(buf) > 0 {
		data, next, ok := nextFrame(buf)
		if !ok {
			return nil, errPayload
		}
		out = append(out, &broker.Message{Offset: off, Epoch: epoch, Time: ms, Data: json.RawMessage(data)})
		off++
		buf = next
	}
	if len(out) == 0 {
		return nil, errPayload
	}
	return out, nil
}

// nextFrame cuts the first "<len>:<data>" frame off buf: its data (capped
// at its length, so that appending to it copies) and what follows.
func nextFrame(buf []byte) (data, rest []byte, ok bool) {
	colon := -1
	for i := 0; i < len(buf) && i < 12; i++ {
		if buf[i] == ':' {
			colon = i
			break
		}
	}
	if colon <= 0 {
		return nil, nil, false
	}
	n, err := strconv.Atoi(string(buf[:colon]))
	if err != nil || n <= 0 || n > len(buf)-colon-1 {
		return nil, nil, false
	}
	end := colon + 1 + n
	return buf[colon+1 : end : end], buf[end:], true
}
