package heraldclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// serverFrame is any server -> client frame.
type serverFrame struct {
	Type        string          `json:"type"`
	ID          uint64          `json:"id,omitempty"`
	Channel     string          `json:"channel,omitempty"`
	Offset      uint64          `json:"offset,omitempty"`
	Epoch       string          `json:"epoch,omitempty"`
	TS          int64           `json:"ts,omitempty"`
	Snapshot    bool            `json:"snapshot,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`
	Recovered   *bool           `json:"recovered,omitempty"`
	Code        string          `json:"code,omitempty"`
	Message     string          `json:"message,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	HeartbeatMS int64           `json:"heartbeat_ms,omitempty"`
}

// ServerError is an error frame answering a command.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string { return fmt.Sprintf("herald: %s: %s", e.Code, e.Message) }

var pong = []byte(`{"type":"pong"}`)

// connHandler handles the events of one connection.
type connHandler struct {
	gws.BuiltinEventHandler
	c        *Client
	conn     *gws.Conn
	closed   chan Event
	lastSeen atomic.Int64
	stop     chan struct{}
}

func (h *connHandler) OnOpen(conn *gws.Conn) {
	h.lastSeen.Store(time.Now().UnixNano())
	h.stop = make(chan struct{})
}

func (h *connHandler) OnClose(conn *gws.Conn, err error) {
	c := h.c
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
	}
	for id, w := range c.waiters {
		w <- reply{err: errors.New("heraldclient: connection lost")}
		delete(c.waiters, id)
	}
	clear(c.subIDs) // unanswered: the next welcome subscribes again
	c.mu.Unlock()
	close(h.stop)
	ev := Event{State: Disconnected, Err: err}
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		ev.Code, ev.Reason, ev.Err = ce.Code, string(ce.Reason), nil
	}
	h.closed <- ev
}

func (h *connHandler) OnMessage(conn *gws.Conn, m *gws.Message) {
	defer m.Close()
	h.lastSeen.Store(time.Now().UnixNano())
	var f serverFrame
	if err := json.Unmarshal(m.Bytes(), &f); err != nil {
		h.c.log.Debug("bad frame from server", "err", err)
		return
	}
	h.handle(conn, &f)
}

func (h *connHandler) handle(conn *gws.Conn, f *serverFrame) {
	c := h.c
	switch f.Type {
	case "ping":
		_ = conn.WriteMessage(gws.OpcodeText, pong)
	case "welcome":
		c.mu.Lock()
		c.conn = conn
		clear(c.subIDs) // frames made while disconnected were never sent
		frames := make([][]byte, 0, len(c.subs))
		for name, s := range c.subs {
			frames = append(frames, c.subscribeFrameLocked(name, s))
		}
		c.mu.Unlock()
		for _, b := range frames {
			_ = conn.WriteMessage(gws.OpcodeText, b)
		}
		if f.HeartbeatMS > 0 {
			go h.watchdog(conn, time.Duration(f.HeartbeatMS)*time.Millisecond)
		}
		c.state(Event{State: Connected})
	case "message":
		c.mu.Lock()
		s := c.subs[f.Channel]
		// A snapshot is the latest message at or before the subscribe
		// position, which is already s.pos: it is never a duplicate.
		if s == nil || (!f.Snapshot && s.hasPos && s.pos.Epoch == f.Epoch && f.Offset <= s.pos.Offset) {
			c.mu.Unlock()
			return // unsubscribed, or already delivered
		}
		if !s.hasPos || s.pos.Epoch != f.Epoch || f.Offset > s.pos.Offset {
			s.pos, s.hasPos = Position{Epoch: f.Epoch, Offset: f.Offset}, true
		}
		c.mu.Unlock()
		s.handler(Message{Channel: f.Channel, Offset: f.Offset, Epoch: f.Epoch, TS: f.TS, Snapshot: f.Snapshot, Data: f.Data})
	case "subscribed":
		at := Position{Epoch: f.Epoch, Offset: f.Offset}
		c.mu.Lock()
		delete(c.subIDs, f.ID)
		s := c.subs[f.Channel]
		if s == nil {
			c.mu.Unlock()
			return
		}
		lost := f.Recovered != nil && !*f.Recovered
		if lost || !s.hasPos {
			// A new starting point: nothing before it will come.
			s.pos, s.hasPos = at, true
		}
		c.mu.Unlock()
		if lost && s.opts.OnReset != nil {
			s.opts.OnReset(f.Channel, at)
		}
		if s.opts.OnSubscribed != nil {
			s.opts.OnSubscribed(f.Channel, at, f.Recovered == nil || *f.Recovered)
		}
	case "ack", "error", "history", "presence":
		if f.Type == "error" && h.subError(f) {
			return
		}
		if f.ID == 0 {
			if f.Type == "error" {
				c.log.Warn("herald error", "code", f.Code, "message", f.Message, "channel", f.Channel)
			}
			return
		}
		c.mu.Lock()
		w := c.waiters[f.ID]
		delete(c.waiters, f.ID)
		c.mu.Unlock()
		if w != nil {
			r := reply{frame: *f}
			if f.Type == "error" {
				r.err = &ServerError{Code: f.Code, Message: f.Message}
			}
			w <- r
		}
	}
}

// watchdog closes a connection that has been silent for three heartbeat
// intervals: the server pings every interval, so silence means a dead path.
func (h *connHandler) watchdog(conn *gws.Conn, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			if now.Sub(time.Unix(0, h.lastSeen.Load())) > 3*every {
				h.c.log.Debug("heartbeat watchdog: server silent, reconnecting")
				_ = conn.NetConn().Close()
				return
			}
		}
	}
}

// subError hands an error answering a subscribe to its subscription and
// reports whether f was one. A refused subscription is dropped, but for
// "unavailable" (the broker is down for now): the next connection
// subscribes it again.
func (h *connHandler) subError(f *serverFrame) bool {
	c := h.c
	c.mu.Lock()
	channel, ok := c.subIDs[f.ID]
	if !ok {
		c.mu.Unlock()
		return false
	}
	delete(c.subIDs, f.ID)
	s := c.subs[channel]
	if s != nil && f.Code != "unavailable" && f.Code != "already_subscribed" {
		delete(c.subs, channel)
	}
	c.mu.Unlock()
	err := &ServerError{Code: f.Code, Message: f.Message}
	switch {
	case s == nil:
	case s.opts.OnError != nil:
		s.opts.OnError(channel, err)
	default:
		c.log.Warn("herald refused a subscription", "channel", channel, "code", f.Code, "message", f.Message)
	}
	return true
}
