package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
	"github.com/labstack/echo/v4"
)

type publishRequest struct {
	Channel  string          `json:"channel"`
	Channels []string        `json:"channels"`
	Data     json.RawMessage `json:"data"`
	// IdempotencyKey applies to each channel of the request: a retry with
	// the same key publishes nothing and answers duplicate.
	IdempotencyKey string `json:"idempotency_key"`
}

type publishResult struct {
	Channel   string `json:"channel"`
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// appendJSON appends r as c.JSON writes it, newline included.
func (r publishResult) appendJSON(b []byte) []byte {
	b = append(b, `{"channel":`...)
	b = appendJSONString(b, r.Channel)
	b = append(b, `,"epoch":`...)
	b = appendJSONString(b, r.Epoch)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, r.Offset, 10)
	if r.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
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

// expand turns one request into its publications, one per channel; the
// node validates them.
func expand(req publishRequest) ([]push.Publication, error) {
	if req.Channel != "" && len(req.Channels) > 0 {
		return nil, newError(push.CodeBadRequest, `give "channel" or "channels", not both`)
	}
	if req.Channel == "" && len(req.Channels) == 0 {
		return nil, newError(push.CodeBadRequest, `missing "channel" (or "channels")`)
	}
	if req.Channel != "" {
		return []push.Publication{{Channel: req.Channel, Data: req.Data, IdempotencyKey: req.IdempotencyKey}}, nil
	}
	if err := checkFanIn(len(req.Channels)); err != nil { // fanin.go
		return nil, err
	}
	pubs := make([]push.Publication, len(req.Channels))
	for i, name := range req.Channels {
		pubs[i] = push.Publication{Channel: name, Data: req.Data, IdempotencyKey: req.IdempotencyKey}
	}
	return pubs, nil
}

// results pairs the publications with the positions the node answered.
func results(pubs []push.Publication, pos []push.Published) []publishResult {
	out := make([]publishResult, len(pos))
	for i, p := range pos {
		out[i] = publishResult{Channel: pubs[i].Channel, Epoch: p.Epoch, Offset: p.Offset, Duplicate: p.Duplicate}
	}
	return out
}

func (s *Server) answer(c echo.Context, start time.Time, single bool, results []publishResult, err error) error {
	if m := s.opts.Metrics; m != nil {
		m.Publish.Observe(time.Since(start).Seconds())
		code := "2xx"
		if err != nil {
			code = strconv.Itoa(classify(err).status/100) + "xx"
		}
		m.PublishRequests.WithLabelValues(code).Inc()
	}
	if err != nil {
		ae := classify(err)
		if ae.status == http.StatusServiceUnavailable {
			c.Response().Header().Set("Retry-After", "1")
		}
		body := map[string]any{"error": ae.err}
		if len(results) > 0 {
			// Part of a multi-channel request went through: say which.
			body["results"] = results
		}
		return c.JSON(ae.status, body)
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
	if req.Channel != "" && len(req.Channels) == 0 {
		pos, err := s.node.Publish(c.Request().Context(), push.Publication{Channel: req.Channel, Data: req.Data, IdempotencyKey: req.IdempotencyKey})
		var res []publishResult
		if err == nil {
			res = []publishResult{{Channel: req.Channel, Epoch: pos.Epoch, Offset: pos.Offset, Duplicate: pos.Duplicate}}
		}
		return s.answer(c, start, true, res, err)
	}
	pubs, err := expand(req)
	if err != nil {
		return err
	}
	pos, err := s.node.PublishBatch(c.Request().Context(), pubs)
	return s.answer(c, start, false, results(pubs, pos), err)
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
		return newError(push.CodeBadRequest, `"messages" is empty`)
	}
	if err := checkFanIn(batchFanIn(req.Messages)); err != nil { // fanin.go: entries x channels
		return err
	}
	var pubs []push.Publication
	var from []int // the index in messages of each publication
	for i, m := range req.Messages {
		p, err := expand(m)
		if err != nil {
			return messageError(i, err)
		}
		pubs = append(pubs, p...)
		for range p {
			from = append(from, i)
		}
	}
	pos, err := s.node.PublishBatch(c.Request().Context(), pubs)
	var inv *push.InvalidPublication
	if errors.As(err, &inv) {
		return messageError(from[inv.Index], inv.Err)
	}
	return s.answer(c, start, false, results(pubs, pos), err)
}

// messageError names the batch entry i that err refused.
func messageError(i int, err error) error {
	e := push.AsError(err)
	return newError(e.Code, fmt.Sprintf("messages[%d]: %s", i, e.Message))
}

// history handles GET /api/channels/:channel/history?since=epoch:offset&limit=N.
func (s *Server) history(c echo.Context) error {
	channel, _, err := s.pathChannel(c)
	if err != nil {
		return err
	}
	limit := -1 // as many as the node allows
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return newError(push.CodeBadRequest, "limit must be a non-negative integer")
		}
		limit = n
	}
	var since broker.Position
	if v := c.QueryParam("since"); v != "" {
		pos, err := push.ParsePosition(v)
		if err != nil {
			return err
		}
		since = pos
	}
	hist, err := s.node.History(c.Request().Context(), channel, since, limit)
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
