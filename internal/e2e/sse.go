package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	ID, Event, Data string
	Comment         bool
}

// sseStream reads events from a GET /sse response.
type sseStream struct {
	t      testing.TB
	resp   *http.Response
	events chan sseEvent
}

func (n *testNode) openSSE(query string, lastEventID string) *sseStream {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", n.base+"/sse?"+query, nil)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		n.t.Fatalf("GET /sse: %v", err)
	}
	s := &sseStream{t: n.t, resp: resp, events: make(chan sseEvent, 1024)}
	n.t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return s
	}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				ev.Comment = true
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.Data = line[6:]
			}
		}
	}()
	return s
}

// next returns the next event that is not a comment.
func (s *sseStream) next(event string) sseEvent {
	s.t.Helper()
	timeout := time.After(readTimeout)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatalf("SSE stream ended, want %q event", event)
			}
			if ev.Comment || ev.Event == "" && ev.Data == "" {
				continue
			}
			if ev.Event != event {
				s.t.Fatalf("SSE event %+v, want %q", ev, event)
			}
			return ev
		case <-timeout:
			s.t.Fatalf("no SSE %q event within %v", event, readTimeout)
		}
	}
}

func TestSSEStreamAndResume(t *testing.T) {
	cfg := historyConfig()
	cfg.Heartbeat = 50 * time.Millisecond
	n := startTestNode(t, cfg)
	s := n.openSSE("channel=hist:sse", "")
	if ct := s.resp.Header.Get("Content-Type"); s.resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("GET /sse: HTTP %d, Content-Type %q", s.resp.StatusCode, ct)
	}
	s.next("subscribed")
	var last string
	for i := 1; i <= 3; i++ {
		pub := n.publish("hist:sse", map[string]int{"i": i})
		ev := s.next("message")
		want := fmt.Sprintf("%s:%d", pub.Epoch, pub.Offset)
		if ev.ID != want {
			t.Fatalf("event id %q, want %q", ev.ID, want)
		}
		var f frame
		decodeJSON(t, []byte(ev.Data), &f)
		if f.Type != "message" || f.Offset != pub.Offset || !jsonEqual(t, f.Data, map[string]int{"i": i}) {
			t.Fatalf("event data %s", ev.Data)
		}
		last = ev.ID
	}
	// Heartbeats are comments.
	waitFor(t, readTimeout, "a heartbeat comment", func() bool {
		select {
		case ev := <-s.events:
			return ev.Comment
		default:
			return false
		}
	})

	// Missed while away: resume with Last-Event-ID.
	for i := 4; i <= 6; i++ {
		n.publish("hist:sse", map[string]int{"i": i})
	}
	r := n.openSSE("channel=hist:sse", last)
	sub := r.next("subscribed")
	if !strings.Contains(sub.Data, `"recovered":true`) {
		t.Fatalf("resumed subscribed %s, want recovered true", sub.Data)
	}
	for i := 4; i <= 6; i++ {
		ev := r.next("message")
		if !strings.Contains(ev.Data, fmt.Sprintf(`"data":{"i":%d}`, i)) {
			t.Fatalf("resumed event %d: %s", i, ev.Data)
		}
	}
}

func TestSSEMultiChannelIDAndErrors(t *testing.T) {
	n := startTestNode(t, historyConfig())
	a := n.publish("hist:x", 1)
	s := n.openSSE("channel=hist:x&channel=hist:y", "")
	s.next("subscribed")
	s.next("subscribed")
	b := n.publish("hist:y", 2)
	ev := s.next("message")
	if want := fmt.Sprintf("%s:%d,%s:%d", a.Epoch, a.Offset, b.Epoch, b.Offset); ev.ID != want {
		t.Fatalf("multi-channel id %q, want %q", ev.ID, want)
	}
	for _, q := range []struct {
		query, last, code string
	}{
		{"", "", "bad_request"},
		{"channel=bad%20name", "", "invalid_channel"},
		{"channel=nope:x", "", "unknown_namespace"},
		{"channel=hist:x", "a:1,b:2", "bad_request"},
	} {
		r := n.openSSE(q.query, q.last)
		var body apiErrorBody
		if r.resp.StatusCode != http.StatusBadRequest || json.NewDecoder(r.resp.Body).Decode(&body) != nil || body.Error.Code != q.code {
			t.Errorf("/sse?%s Last-Event-ID %q: HTTP %d code %q, want 400 %q", q.query, q.last, r.resp.StatusCode, body.Error.Code, q.code)
		}
	}
	r := n.request("GET", "/sse?channel=hist:x", nil, http.Header{"Origin": {"https://evil.example"}})
	expectAPIError(t, r, http.StatusForbidden, "forbidden")
}

type pollBody struct {
	Channel   string            `json:"channel"`
	Epoch     string            `json:"epoch"`
	Offset    uint64            `json:"offset"`
	Recovered *bool             `json:"recovered"`
	Messages  []json.RawMessage `json:"messages"`
}

func (n *testNode) poll(q string) (pollBody, time.Duration) {
	n.t.Helper()
	start := time.Now()
	r := n.request("GET", "/api/poll?"+q, nil, nil)
	if r.Status != http.StatusOK {
		n.t.Fatalf("poll %s: HTTP %d %s", q, r.Status, r.Body)
	}
	var b pollBody
	decodeJSON(n.t, r.Body, &b)
	return b, time.Since(start)
}

func TestLongPoll(t *testing.T) {
	n := startTestNode(t, historyConfig())
	first := n.publish("hist:p", 1)
	n.publish("hist:p", 2)

	// No since: the position at once.
	b, _ := n.poll("channel=hist:p")
	if b.Epoch != first.Epoch || b.Offset != 2 || len(b.Messages) != 0 {
		t.Fatalf("poll without since: %+v", b)
	}
	// Newer messages exist: answered at once, position moves to the last.
	b, _ = n.poll(fmt.Sprintf("channel=hist:p&since=%s:%d", first.Epoch, first.Offset))
	if len(b.Messages) != 1 || b.Offset != 2 || !strings.Contains(string(b.Messages[0]), `"offset":2`) {
		t.Fatalf("poll with a missed message: %+v", b)
	}
	// Nothing newer: waits, and a publish meanwhile answers it.
	done := make(chan pollBody, 1)
	go func() {
		b, _ := n.poll(fmt.Sprintf("channel=hist:p&since=%s:2&timeout=20", first.Epoch))
		done <- b
	}()
	waitFor(t, readTimeout, "the poll to subscribe", func() bool {
		_, _, subs := n.core.Counts()
		return subs == 1
	})
	n.publish("hist:p", 3)
	select {
	case b := <-done:
		if len(b.Messages) != 1 || b.Offset != 3 {
			t.Fatalf("poll woken by a publish: %+v", b)
		}
	case <-time.After(readTimeout):
		t.Fatal("poll not answered after a publish")
	}
	// Nothing arrives: empty answer with the position after the timeout.
	b, took := n.poll(fmt.Sprintf("channel=hist:p&since=%s:3&timeout=200ms", first.Epoch))
	if len(b.Messages) != 0 || b.Offset != 3 || took < 200*time.Millisecond {
		t.Fatalf("timed-out poll: %+v after %v", b, took)
	}
	// Position lost: recovered false at once.
	b, _ = n.poll("channel=hist:p&since=other:1")
	if b.Recovered == nil || *b.Recovered || b.Epoch != first.Epoch {
		t.Fatalf("poll from another epoch: %+v", b)
	}
	expectAPIError(t, n.request("GET", "/api/poll?channel=hist:p&timeout=soon", nil, nil), http.StatusBadRequest, "bad_request")
	expectAPIError(t, n.request("GET", "/api/poll", nil, nil), http.StatusBadRequest, "bad_request")
}
