package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
	"github.com/labstack/echo/v4"
)

type publishRequest struct {
	Channel  string          `json:"channel"`
	Channels []string        `json:"channels"`
	Data     json.RawMessage `json:"data"`
}

type publishResult struct {
	Channel string `json:"channel"`
	Epoch   string `json:"epoch"`
	Offset  uint64 `json:"offset"`
}

// appendJSON appends r as c.JSON writes it, newline included.
func (r publishResult) appendJSON(b []byte) []byte {
	b = append(b, `{"channel":`...)
	b = appendJSONString(b, r.Channel)
	b = append(b, `,"epoch":`...)
	b = appendJSONString(b, r.Epoch)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, r.Offset, 10)
	return append(b, "}\n"...)
}

// appendJSONString appends s quoted. Channel names and epochs never need
// escaping; anything that would goes through encoding/json, escaping as
// c.JSON does.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// publication is one validated (channel, data) pair ready for the broker.
type publication struct {
	channel string
	data    json.RawMessage
	ret     broker.Retention
}

// validate checks one channel and its data against the namespace rules.
func (s *Server) validate(channel string, data json.RawMessage) (publication, error) {
	if channel == "" {
		return publication{}, newError(http.StatusBadRequest, push.CodeBadRequest, `missing "channel" (or "channels")`)
	}
	ns, err := s.hub.Namespaces().Lookup(channel)
	if err != nil {
		return publication{}, err
	}
	if len(data) == 0 {
		return publication{}, newError(http.StatusBadRequest, push.CodeBadRequest, `missing "data"`)
	}
	// encoding/json lets invalid UTF-8 through, but a text frame carrying
	// it makes browsers drop the connection.
	if !utf8.Valid(data) {
		return publication{}, newError(http.StatusBadRequest, push.CodeBadRequest, "data is not valid UTF-8")
	}
	// Decoded data is one valid JSON value in a buffer of its own (the
	// decoders copy it), so it only needs compacting, which copies it
	// again, when it holds whitespace.
	if bytes.ContainsAny(data, " \t\r\n") {
		data, err = push.CompactData(data)
		if err != nil {
			return publication{}, newError(http.StatusBadRequest, push.CodeBadRequest, "data is not JSON: "+err.Error())
		}
	}
	if len(data) > ns.MessageLimit() {
		return publication{}, newError(http.StatusRequestEntityTooLarge, push.CodeTooLarge,
			fmt.Sprintf("data for %q is %d bytes, its namespace allows %d", channel, len(data), ns.MessageLimit()))
	}
	return publication{channel: channel, data: data, ret: ns.Retention()}, nil
}

func (s *Server) expand(req publishRequest) ([]publication, error) {
	if req.Channel != "" && len(req.Channels) > 0 {
		return nil, newError(http.StatusBadRequest, push.CodeBadRequest, `give "channel" or "channels", not both`)
	}
	names := req.Channels
	if req.Channel != "" || len(names) == 0 {
		names = []string{req.Channel}
	}
	if err := checkFanIn(len(names)); err != nil { // fanin.go
		return nil, err
	}
	pubs := make([]publication, 0, len(names))
	for _, name := range names {
		p, err := s.validate(name, req.Data)
		if err != nil {
			return nil, err
		}
		pubs = append(pubs, p)
	}
	return pubs, nil
}

// run publishes pubs in order. Everything was validated first, so a
// request is refused whole for bad input; only the broker can fail midway,
// and then the results so far are reported with the error.
func (s *Server) run(ctx context.Context, pubs []publication) ([]publishResult, error) {
	out := make([]publishResult, 0, len(pubs))
	for _, p := range pubs {
		pos, err := s.broker.Publish(ctx, p.channel, p.data, p.ret)
		if err != nil {
			return out, err
		}
		out = append(out, publishResult{Channel: p.channel, Epoch: pos.Epoch, Offset: pos.Offset})
	}
	return out, nil
}

func (s *Server) answer(c echo.Context, start time.Time, single bool, results []publishResult, err error) error {
	if m := s.opts.Metrics; m != nil {
		m.Publish.Observe(time.Since(start).Seconds())
		code := "2xx"
		if err != nil {
			code = strconv.Itoa(classify(err).Status/100) + "xx"
		}
		m.PublishRequests.WithLabelValues(code).Inc()
	}
	if err != nil {
		ae := classify(err)
		if ae.Status == http.StatusServiceUnavailable {
			c.Response().Header().Set("Retry-After", "1")
		}
		body := map[string]any{"error": ae}
		if len(results) > 0 {
			// Part of a multi-channel request went through: say which.
			body["results"] = results
		}
		return c.JSON(ae.Status, body)
	}
	if single {
		// c.JSON indents for ?pretty (an Echo feature): requests with a
		// query string keep it, the others skip its reflection.
		if c.Request().URL.RawQuery != "" {
			return c.JSON(http.StatusOK, results[0])
		}
		return c.JSONBlob(http.StatusOK, results[0].appendJSON(make([]byte, 0, 96)))
	}
	return c.JSON(http.StatusOK, map[string]any{"results": results})
}

// publish handles POST /api/publish.
func (s *Server) publish(c echo.Context) error {
	start := time.Now()
	b, err := s.readBody(c)
	if err != nil {
		return err
	}
	var req publishRequest
	if !parsePublish(b.buf.Bytes(), &req) {
		err = decodeJSON(b.buf.Bytes(), &req)
	}
	b.free()
	if err != nil {
		return err
	}
	pubs, err := s.expand(req)
	if err != nil {
		return err
	}
	results, err := s.run(c.Request().Context(), pubs)
	return s.answer(c, start, req.Channel != "", results, err)
}

// batch handles POST /api/batch: {"messages": [{"channel"|"channels", "data"}, ...]}.
func (s *Server) batch(c echo.Context) error {
	start := time.Now()
	var req struct {
		Messages []publishRequest `json:"messages"`
	}
	if err := s.readJSON(c, &req); err != nil {
		return err
	}
	if len(req.Messages) == 0 {
		return newError(http.StatusBadRequest, push.CodeBadRequest, `"messages" is empty`)
	}
	if err := checkFanIn(batchFanIn(req.Messages)); err != nil { // fanin.go: entries x channels
		return err
	}
	var pubs []publication
	for i, m := range req.Messages {
		p, err := s.expand(m)
		if err != nil {
			ae := classify(err)
			ae.Message = fmt.Sprintf("messages[%d]: %s", i, ae.Message)
			return ae
		}
		pubs = append(pubs, p...)
	}
	results, err := s.run(c.Request().Context(), pubs)
	return s.answer(c, start, false, results, err)
}

// history handles GET /api/channels/:channel/history?since=epoch:offset&limit=N.
func (s *Server) history(c echo.Context) error {
	channel, ns, err := s.pathChannel(c)
	if err != nil {
		return err
	}
	q := broker.HistoryQuery{Limit: max(ns.HistorySize, 0)}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return newError(http.StatusBadRequest, push.CodeBadRequest, "limit must be a non-negative integer")
		}
		q.Limit = min(n, q.Limit)
	}
	if v := c.QueryParam("since"); v != "" {
		pos, err := ParsePosition(v)
		if err != nil {
			return err
		}
		q.Since = pos
	}
	hist, err := s.broker.History(c.Request().Context(), channel, q)
	if err != nil {
		return err
	}
	msgs := hist.Messages
	if msgs == nil {
		msgs = []broker.Message{}
	}
	return c.JSON(http.StatusOK, map[string]any{
		"channel": channel, "epoch": hist.Position.Epoch, "offset": hist.Position.Offset,
		"complete": hist.Complete, "messages": msgs,
	})
}

// ParsePosition parses "epoch:offset" (the SSE id format) or a bare offset.
func ParsePosition(v string) (broker.Position, error) {
	epoch, off, ok := cutLast(v, ':')
	if !ok {
		epoch, off = "", v
	}
	n, err := strconv.ParseUint(off, 10, 64)
	if err != nil {
		return broker.Position{}, newError(http.StatusBadRequest, push.CodeBadRequest, `since must be "epoch:offset" or an offset`)
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
