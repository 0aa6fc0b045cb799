package redisbroker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The little of RESP2 that the Cluster pub/sub connections (nodeconn.go)
// speak. Herald runs those connections itself because go-redis's PubSub
// resubscribes all its channels in one command after a reconnect, which
// Redis refuses (CROSSSLOT) on a connection carrying several slots.

// errIdle is a read deadline passing before a reply began: the connection
// was quiet, not broken.
var errIdle = errors.New("no reply before the read deadline")

// respError is an error reply, such as "MOVED 3999 127.0.0.1:6381".
type respError string

func (e respError) Error() string { return string(e) }

// RedisError makes a respError a redis.Error, as go-redis's own error
// replies are: the engine classifies both alike (unavailable,
// publishError, redis.HasErrorPrefix).
func (e respError) RedisError() {}

// Bounds on what a reply may claim, so that a corrupt stream fails the
// connection instead of allocating without limit. Redis's own bulk limit
// is 512 MB.
const (
	maxBulk  = 512 << 20
	maxArray = 1 << 20
	maxDepth = 4
)

// writeCommand appends one command to w.
func writeCommand(w *bufio.Writer, args ...string) {
	_, _ = w.Write(appendCommand(w.AvailableBuffer(), args...))
}

// appendCommand appends one command to buf.
func appendCommand(buf []byte, args ...string) []byte {
	buf = appendLen(buf, '*', len(args))
	for _, a := range args {
		buf = appendBulk(buf, a)
	}
	return buf
}

// appendLen appends a RESP length line: "<kind><n>\r\n".
func appendLen(buf []byte, kind byte, n int) []byte {
	buf = append(buf, kind)
	buf = strconv.AppendInt(buf, int64(n), 10)
	return append(buf, '\r', '\n')
}

// appendBulk appends s as a bulk string.
func appendBulk(buf []byte, s string) []byte {
	buf = appendLen(buf, '$', len(s))
	buf = append(buf, s...)
	return append(buf, '\r', '\n')
}

// appendBulkInt appends n in decimal as a bulk string, as go-redis sends
// a number.
func appendBulkInt(buf []byte, n int64) []byte {
	var d [20]byte
	num := strconv.AppendInt(d[:0], n, 10)
	buf = appendLen(buf, '$', len(num))
	buf = append(buf, num...)
	return append(buf, '\r', '\n')
}

// readReply reads one reply: a string, an int64, a respError, nil or a
// []any of those. It returns errIdle when the read deadline passed before
// the reply's first byte; a deadline passing inside a reply is an error
// like any other, since the stream can no longer be parsed.
func readReply(r *bufio.Reader) (any, error) {
	kind, err := r.ReadByte()
	if err != nil {
		if idle(err) {
			return nil, errIdle
		}
		return nil, err
	}
	return readValue(r, kind, 0)
}

func readValue(r *bufio.Reader, kind byte, depth int) (any, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("redis: malformed reply line %q", line)
	}
	text := string(line[:len(line)-2])
	switch kind {
	case '+':
		return text, nil
	case '-':
		return respError(text), nil
	case ':':
		return strconv.ParseInt(text, 10, 64)
	case '$':
		n, err := strconv.Atoi(text)
		if err != nil || n > maxBulk {
			return nil, fmt.Errorf("redis: bad bulk length %q", text)
		}
		if n < 0 {
			return nil, nil
		}
		v, err := readBulk(r, n)
		if err != nil {
			return nil, err
		}
		return v, nil
	case '*', '>': // '>' is RESP3's push, should a server send one
		n, err := strconv.Atoi(text)
		if err != nil || n > maxArray || depth >= maxDepth {
			return nil, fmt.Errorf("redis: bad array length %q at depth %d", text, depth)
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			k, err := r.ReadByte()
			if err != nil {
				return nil, err
			}
			if out[i], err = readValue(r, k, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("redis: unexpected reply type %q", kind)
}

// pushKinds are the strings every push starts with, returned without an
// allocation each.
var pushKinds = []string{"smessage", "ssubscribe", "sunsubscribe", "pong"}

// readBulk reads a bulk string of n bytes and its CRLF, copying it once.
func readBulk(r *bufio.Reader, n int) (string, error) {
	var buf []byte
	if n+2 <= r.Size() {
		// Within the reader's buffer: no copy besides the string's own.
		p, err := r.Peek(n + 2)
		if err != nil {
			return "", err
		}
		buf = p
	} else {
		buf = make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
	}
	if buf[n] != '\r' || buf[n+1] != '\n' {
		return "", errors.New("redis: bulk string not terminated by CRLF")
	}
	var s string
	for _, k := range pushKinds {
		if string(buf[:n]) == k {
			s = k
			break
		}
	}
	if s == "" && n > 0 {
		s = string(buf[:n])
	}
	if n+2 <= r.Size() {
		_, _ = r.Discard(n + 2)
	}
	return s, nil
}

// respArgs is a callWriter (calls.go) that encodes a script call's keys
// and arguments as RESP, into buffers it reuses: pubConn's pipelines.
type respArgs struct {
	keys, args []byte
	nk, na     int
}

func (a *respArgs) reset() { a.keys, a.args, a.nk, a.na = a.keys[:0], a.args[:0], 0, 0 }

func (a *respArgs) key(k string) { a.keys = appendBulk(a.keys, k); a.nk++ }
func (a *respArgs) str(s string) { a.args = appendBulk(a.args, s); a.na++ }
func (a *respArgs) num(n int64)  { a.args = appendBulkInt(a.args, n); a.na++ }

// frames writes no sent mark: pubConn marks what its write passed.
func (a *respArgs) frames(items []*pubItem) {
	n := 0
	for _, it := range items {
		n += len(it.wire)
	}
	a.args = appendLen(a.args, '$', n)
	for _, it := range items {
		a.args = append(a.args, it.wire...)
	}
	a.args = append(a.args, '\r', '\n')
	a.na++
}

// appendTo appends the call to out as one command: name (EVALSHA or
// EVAL), script (its hash or source), the key count, keys, arguments.
func (a *respArgs) appendTo(out []byte, name, script string) []byte {
	out = appendLen(out, '*', 3+a.nk+a.na)
	out = appendBulk(out, name)
	out = appendBulk(out, script)
	out = appendBulkInt(out, int64(a.nk))
	out = append(out, a.keys...)
	return append(out, a.args...)
}

// trim lets go of buffers one large call grew.
func (a *respArgs) trim() {
	if cap(a.keys)+cap(a.args) > maxKeptBuffer {
		a.keys, a.args = nil, nil
	}
}
