package api

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
	"github.com/labstack/echo/v4"
)

// Long-poll timeouts: the default wait and the longest a client may ask
// for (proxies commonly cut idle requests at 60 s).
const (
	DefaultPollTimeout = 25 * time.Second
	MaxPollTimeout     = 55 * time.Second
)

// pollAnswer is the body of GET /api/poll.
type pollAnswer struct {
	Channel string `json:"channel"`
	// Epoch and Offset are the position to send as since next time.
	Epoch     string            `json:"epoch"`
	Offset    uint64            `json:"offset"`
	Recovered *bool             `json:"recovered,omitempty"`
	Messages  []json.RawMessage `json:"messages"`
}

// poll handles GET /api/poll?channel=&since=epoch:offset&timeout=25s, for
// clients moving off Ajax polling one step at a time. Without since it
// answers at once with the channel's position (and its snapshot, where the
// namespace keeps one). With since it answers at once when newer messages
// exist, else waits up to timeout for one and answers empty with the
// position. recovered:false means messages after since are gone: reload.
func (s *Server) poll(c echo.Context) error {
	channel := c.QueryParam("channel")
	if channel == "" {
		return newError(push.CodeBadRequest, "missing channel parameter")
	}
	if _, err := s.node.Namespaces().Lookup(channel); err != nil {
		return err
	}
	var since *broker.Position
	if v := c.QueryParam("since"); v != "" {
		p, err := ParsePosition(v)
		if err != nil {
			return err
		}
		since = &p
	}
	timeout := DefaultPollTimeout
	if v := c.QueryParam("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			// Plain seconds, as most polling clients send them.
			n, nerr := time.ParseDuration(v + "s")
			if nerr != nil {
				return newError(push.CodeBadRequest, `timeout must be a duration ("25s") or seconds`)
			}
			d = n
		}
		timeout = min(max(d, 0), MaxPollTimeout)
	}

	claims, err := s.authenticate(c)
	if err != nil {
		return err
	}
	t := &pollTransport{notify: make(chan func(), 1), done: make(chan struct{})}
	sess := s.node.NewSession(t, true)
	defer sess.Release()
	sess.SetClaims(claims)
	sess.Open([]string{channel}, []*broker.Position{since})

	ans := pollAnswer{Channel: channel, Messages: []json.RawMessage{}}
	subscribed := false
	// The wait starts once the subscribe is answered: a timer started
	// before raced the answer (timeout=0 answered an empty position, or
	// 200 where the channel is forbidden, about half the time).
	var timer *time.Timer
	var expired <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case f := <-t.notify:
			f()
		case <-expired:
			return c.JSON(http.StatusOK, ans)
		case <-c.Request().Context().Done():
			return nil
		case <-t.done:
			return newError(push.CodeUnavailable, "server shutting down")
		}
		for _, f := range t.take() {
			switch push.FrameType(f) {
			case "subscribed":
				var sf struct {
					Epoch     string `json:"epoch"`
					Offset    uint64 `json:"offset"`
					Recovered *bool  `json:"recovered"`
				}
				_ = json.Unmarshal(f, &sf)
				ans.Epoch, ans.Offset, ans.Recovered = sf.Epoch, sf.Offset, sf.Recovered
				if since != nil && sf.Recovered != nil && *sf.Recovered {
					// Recovered messages follow and move the position.
					ans.Epoch, ans.Offset = since.Epoch, since.Offset
				}
				subscribed = true
			case "message":
				if _, epoch, off, ok := push.MessageHead(f); ok {
					ans.Epoch, ans.Offset = epoch, off
				}
				ans.Messages = append(ans.Messages, json.RawMessage(f))
			case "unsubscribed":
				// The channel lost state while we waited: say so at once.
				f := false
				ans.Recovered = &f
				return c.JSON(http.StatusOK, ans)
			case "error":
				var ef struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				}
				_ = json.Unmarshal(f, &ef)
				return newError(ef.Code, ef.Message)
			}
		}
		if !subscribed {
			continue
		}
		if timer == nil {
			timer = time.NewTimer(timeout)
			expired = timer.C
		}
		lost := ans.Recovered != nil && !*ans.Recovered
		if len(ans.Messages) > 0 || since == nil || lost {
			return c.JSON(http.StatusOK, ans)
		}
	}
}

// pollTransport collects a short-lived session's frames for one answer.
type pollTransport struct {
	notify chan func()
	done   chan struct{}
	once   sync.Once
	frames [][]byte
}

func (t *pollTransport) Schedule(flush func()) {
	select {
	case t.notify <- flush:
	default:
	}
}

// Write runs in the request goroutine (it runs the flushes), like take.
func (t *pollTransport) Write(frames [][]byte) error {
	t.frames = append(t.frames, frames...)
	return nil
}

func (t *pollTransport) take() [][]byte {
	f := t.frames
	t.frames = nil
	return f
}

func (t *pollTransport) Close(code uint16, reason string) {
	// Called from other goroutines (shutdown, slow consumer).
	t.once.Do(func() { close(t.done) })
}
