// Package sse is the Server-Sent Events transport: GET /sse?channel=...
// carries the same messages as /ws as events, for clients that cannot
// open a WebSocket or only listen.
package sse

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
)

// Handler serves GET /sse for a node.
type Handler struct {
	node  *push.Node
	admit *push.Admission
}

// New returns the /sse handler of n. admit is the node's admission, shared
// with the other transports: a stream is a connection like a WebSocket,
// from an allowed origin and within the per-address cap (nil: the
// server's own host only, no cap).
func New(n *push.Node, admit *push.Admission) *Handler {
	if admit == nil {
		admit = push.NewAdmission(push.AdmissionOptions{})
	}
	return &Handler{node: n, admit: admit}
}

// ServeHTTP streams the channels of the query as Server-Sent Events.
// Each message event's id is "epoch:offset" (for a stream of several
// channels, every channel's position joined by ',' in the order of the
// channel parameters), so that a browser's EventSource resumes through the
// normal recovery path with Last-Event-ID.
func (hd *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := hd.serve(w, r); err != nil {
		push.WriteHTTPError(w, err)
	}
}

func (hd *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	ip, aerr := hd.admit.Admit(hd.node, r)
	if aerr != nil {
		return aerr
	}
	defer hd.admit.Release(ip)
	q := r.URL.Query()
	channels := q["channel"]
	if len(channels) == 0 {
		return push.Errorf(push.CodeBadRequest, "give at least one channel parameter")
	}
	for _, ch := range channels {
		if _, err := hd.node.Namespaces().Lookup(ch); err != nil {
			return err
		}
	}
	maxRate := q.Get("max_rate")
	if _, err := push.ParseMaxRate(maxRate); err != nil {
		return err
	}
	claims, err := hd.node.AuthenticateQuery(r)
	if err != nil {
		return err
	}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = q.Get("last_event_id")
	}
	since, err := parseEventID(last, len(channels))
	if err != nil {
		return err
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	t := &sseTransport{
		rc:       http.NewResponseController(w),
		w:        w,
		notify:   make(chan func(), 1),
		done:     make(chan struct{}),
		channels: channels,
		pos:      make([]broker.Position, len(channels)),
		timeout:  hd.node.Options().WriteTimeout,
	}
	for i, p := range since {
		if p != nil {
			t.pos[i] = *p
		}
	}
	// retry: how long EventSource waits before reconnecting.
	if _, err := t.w.Write([]byte("retry: 1000\n\n")); err != nil {
		return nil
	}
	_ = t.rc.Flush()

	sess := hd.node.NewSession(t, true)
	defer sess.Release()
	sess.SetClaims(claims)
	sess.OpenWith(channels, since, maxRate)
	for {
		select {
		case f := <-t.notify:
			f()
		case <-t.done:
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}

// parseEventID parses a Last-Event-ID: "epoch:offset" per channel, joined
// by ','. An empty id means no resume.
func parseEventID(id string, n int) ([]*broker.Position, error) {
	if id == "" {
		return nil, nil
	}
	parts := strings.Split(id, ",")
	if len(parts) != n {
		return nil, push.Errorf(push.CodeBadRequest, "Last-Event-ID does not match the channels of this stream")
	}
	out := make([]*broker.Position, n)
	for i, p := range parts {
		pos, err := push.ParsePosition(p)
		if err != nil {
			return nil, err
		}
		if pos.Epoch != "" {
			out[i] = &pos
		}
	}
	return out, nil
}

// sseTransport writes a session's frames as events. The request's own
// goroutine runs the flushes it is handed through notify, so writes to the
// ResponseWriter never race.
type sseTransport struct {
	rc      *http.ResponseController
	w       http.ResponseWriter
	notify  chan func()
	done    chan struct{}
	once    sync.Once
	timeout time.Duration

	channels []string
	pos      []broker.Position // last position per channel, for event ids
	buf      []byte
}

func (t *sseTransport) Schedule(flush func()) {
	select {
	case t.notify <- flush:
	default: // a flush is already pending; it will see the new frames
	}
}

func (t *sseTransport) Write(frames []*push.Frame) error {
	b := t.buf[:0]
	for _, f := range frames {
		switch f.Type {
		case push.TypePing:
			b = append(b, ": ping\n\n"...)
		case push.TypeMessage:
			b = append(b, "id: "...)
			b = t.appendID(b, f)
			b = append(b, "\nevent: message\ndata: "...)
			b = append(b, f.Bytes...)
			b = append(b, "\n\n"...)
		default:
			if f.Raw {
				continue // no transport's own frames here; sent by none
			}
			if f.Type == push.TypeSubscribed {
				t.noteSubscribed(f)
			}
			b = append(b, "event: "...)
			b = append(b, f.Type...)
			b = append(b, "\ndata: "...)
			b = append(b, f.Bytes...)
			b = append(b, "\n\n"...)
		}
	}
	t.buf = b
	_ = t.rc.SetWriteDeadline(time.Now().Add(t.timeout))
	if _, err := t.w.Write(b); err != nil {
		t.Close(push.CloseGoingAway, "write failed")
		return err
	}
	if err := t.rc.Flush(); err != nil {
		t.Close(push.CloseGoingAway, "write failed")
		return err
	}
	return nil
}

// appendID updates the channel's position from the message frame and
// appends the stream's event id.
func (t *sseTransport) appendID(b []byte, f *push.Frame) []byte {
	for i, name := range t.channels {
		if name == f.Channel {
			t.pos[i] = f.Position
		}
	}
	for i, p := range t.pos {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.Epoch...)
		b = append(b, ':')
		b = strconv.AppendUint(b, p.Offset, 10)
	}
	return b
}

// noteSubscribed takes the channel's position from a subscribed frame
// unless recovered history follows it (then the messages move it).
func (t *sseTransport) noteSubscribed(f *push.Frame) {
	if f.Recovered != nil && *f.Recovered {
		return
	}
	for i, name := range t.channels {
		if name == f.Channel {
			t.pos[i] = f.Position
		}
	}
}

func (t *sseTransport) Close(code uint16, reason string) {
	t.once.Do(func() { close(t.done) })
}
