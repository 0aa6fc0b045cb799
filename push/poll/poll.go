// Package poll is the long-poll transport: GET /api/poll answers a
// channel's new messages, or waits for one, for clients moving off Ajax
// polling one step at a time.
package poll

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
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

// Handler serves GET /api/poll for a node.
type Handler struct {
	node  *push.Node
	admit *push.Admission
}

// New returns the /api/poll handler of n. admit is the node's admission,
// shared with the other transports: a poll holds a connection for up to
// its timeout, from an allowed origin and within the per-address cap
// (nil: the server's own host only, no cap).
func New(n *push.Node, admit *push.Admission) *Handler {
	if admit == nil {
		admit = push.NewAdmission(push.AdmissionOptions{})
	}
	return &Handler{node: n, admit: admit}
}

// ServeHTTP handles GET /api/poll?channel=&since=epoch:offset&timeout=25s.
// Without since it answers at once with the channel's position (and its
// snapshot, where the namespace keeps one). With since it answers at once
// when newer messages exist, else waits up to timeout for one and answers
// empty with the position. recovered:false means messages after since are
// gone: reload.
func (hd *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ans, err := hd.poll(r)
	if err != nil {
		push.WriteHTTPError(w, err)
		return
	}
	if ans == nil {
		return // the client went away
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(ans)
}

func (hd *Handler) poll(r *http.Request) (*pollAnswer, error) {
	ip, aerr := hd.admit.Admit(hd.node, r)
	if aerr != nil {
		return nil, aerr
	}
	defer hd.admit.Release(ip)
	q := r.URL.Query()
	channel := q.Get("channel")
	if channel == "" {
		return nil, push.Errorf(push.CodeBadRequest, "missing channel parameter")
	}
	if _, err := hd.node.Namespaces().Lookup(channel); err != nil {
		return nil, err
	}
	var since *broker.Position
	if v := q.Get("since"); v != "" {
		p, err := push.ParsePosition(v)
		if err != nil {
			return nil, err
		}
		since = &p
	}
	timeout := DefaultPollTimeout
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			// Plain seconds, as most polling clients send them.
			n, nerr := time.ParseDuration(v + "s")
			if nerr != nil {
				return nil, push.Errorf(push.CodeBadRequest, `timeout must be a duration ("25s") or seconds`)
			}
			d = n
		}
		timeout = min(max(d, 0), MaxPollTimeout)
	}

	claims, err := hd.node.AuthenticateQuery(r)
	if err != nil {
		return nil, err
	}
	t := &pollTransport{notify: make(chan func(), 1), done: make(chan struct{})}
	sess := hd.node.NewSession(t, true)
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
			return &ans, nil
		case <-r.Context().Done():
			return nil, nil
		case <-t.done:
			return nil, push.Errorf(push.CodeUnavailable, "server shutting down")
		}
		for _, f := range t.take() {
			switch f.Type {
			case push.TypeSubscribed:
				ans.Epoch, ans.Offset, ans.Recovered = f.Position.Epoch, f.Position.Offset, f.Recovered
				if since != nil && f.Recovered != nil && *f.Recovered {
					// Recovered messages follow and move the position.
					ans.Epoch, ans.Offset = since.Epoch, since.Offset
				}
				subscribed = true
			case push.TypeMessage:
				ans.Epoch, ans.Offset = f.Position.Epoch, f.Position.Offset
				ans.Messages = append(ans.Messages, json.RawMessage(f.Bytes))
			case push.TypeUnsubscribed:
				// The channel lost state while we waited: say so at once.
				lost := false
				ans.Recovered = &lost
				return &ans, nil
			case push.TypeError:
				return nil, f.Err
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
			return &ans, nil
		}
	}
}

// pollTransport collects a short-lived session's frames for one answer.
type pollTransport struct {
	notify chan func()
	done   chan struct{}
	once   sync.Once
	frames []*push.Frame
}

func (t *pollTransport) Schedule(flush func()) {
	select {
	case t.notify <- flush:
	default:
	}
}

// Write runs in the request goroutine (it runs the flushes), like take.
func (t *pollTransport) Write(frames []*push.Frame) error {
	t.frames = append(t.frames, frames...)
	return nil
}

func (t *pollTransport) take() []*push.Frame {
	f := t.frames
	t.frames = nil
	return f
}

func (t *pollTransport) Close(code uint16, reason string) {
	// Called from other goroutines (shutdown, slow consumer).
	t.once.Do(func() { close(t.done) })
}
