package push

import (
	"strconv"

	"github.com/heraldpush/herald/broker"
)

// ParsePosition parses "epoch:offset" (an SSE event id, a long-poll's
// since) or a bare offset.
func ParsePosition(v string) (broker.Position, error) {
	epoch, off, ok := cutLast(v, ':')
	if !ok {
		epoch, off = "", v
	}
	n, err := strconv.ParseUint(off, 10, 64)
	if err != nil {
		return broker.Position{}, Errorf(CodeBadRequest, `since must be "epoch:offset" or an offset`)
	}
	return broker.Position{Epoch: epoch, Offset: n}, nil
}

func cutLast(s string, sep byte) (before, after string, ok bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
