package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/heraldpush/herald/push"
	"github.com/labstack/echo/v4"
)

// body is a request body read into a buffer that is reused across
// requests. Nothing decoded from it may keep pointing into it:
// encoding/json copies strings and RawMessages, and so does
// parsePublish.
type body struct {
	buf bytes.Buffer
	lr  io.LimitedReader // here so that reading allocates nothing
}

// maxPooledBody keeps one large batch from pinning megabytes in the pool.
const maxPooledBody = 64 << 10

var bodies = sync.Pool{New: func() any { return new(body) }}

func (b *body) free() {
	if b.buf.Cap() > maxPooledBody {
		return
	}
	b.buf.Reset()
	bodies.Put(b)
}

// readBody reads the request body, answering 413 past the size cap. The
// caller frees it.
func (s *Server) readBody(c echo.Context) (*body, error) {
	b := bodies.Get().(*body)
	b.lr = io.LimitedReader{R: c.Request().Body, N: s.opts.MaxRequestBytes + 1}
	lift := s.bodyDeadline(c) // body_deadline.go
	_, err := b.buf.ReadFrom(&b.lr)
	lift(err == nil && int64(b.buf.Len()) <= s.opts.MaxRequestBytes)
	b.lr.R = nil
	if err != nil {
		b.free()
		return nil, bodyReadError(err)
	}
	if int64(b.buf.Len()) > s.opts.MaxRequestBytes {
		b.free()
		return nil, newError(push.CodeTooLarge, fmt.Sprintf("request body over %d bytes", s.opts.MaxRequestBytes))
	}
	return b, nil
}

// readJSON decodes the body into v, answering 413 past the size cap and
// 400 for anything that is not one JSON object.
func (s *Server) readJSON(c echo.Context, v any) error {
	b, err := s.readBody(c)
	if err != nil {
		return err
	}
	defer b.free()
	return decodeJSON(b.buf.Bytes(), v)
}

// decodeJSON decodes one JSON value into v. json.Unmarshal is the cheap
// way (no Decoder, no second copy of the body); when it fails, the
// Decoder decides, so that the answer (its error text, and the trailing
// '}' or ']' that it lets through) stays what it always was.
func decodeJSON(data []byte, v any) error {
	if json.Unmarshal(data, v) == nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return newError(push.CodeBadRequest, "malformed JSON body: "+err.Error())
	}
	if dec.More() {
		return newError(push.CodeBadRequest, "malformed JSON body: more than one value")
	}
	return nil
}
