package subscriber

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/internal/e2e"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// The tests run real nodes (internal/e2e's harness over server.Start).
var (
	startTestNode = e2e.Start
	newCutProxy   = e2e.NewCutProxy
	waitFor       = e2e.WaitFor
	decodeJSON    = e2e.DecodeJSON
	jsonEqual     = e2e.JSONEqual
)

const readTimeout = e2e.ReadTimeout

// syncBuffer is a bytes.Buffer safe for Run writing from its goroutines
// while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the complete lines written so far.
func (s *syncBuffer) lines() []string {
	str := s.String()
	if i := strings.LastIndexByte(str, '\n'); i >= 0 {
		return strings.Split(str[:i], "\n")
	}
	return nil
}

func cliConfig() server.Config {
	cfg := e2e.Config()
	cfg.Namespaces = map[string]*push.Namespace{
		"cli":    {HistorySize: 50, HistoryTTL: time.Minute},
		"ticker": {HistorySize: 5, HistoryTTL: time.Minute, Snapshot: true},
	}
	return cfg
}

// wsURL is a node's WebSocket endpoint.
func wsURL(n interface{ URL() string }) string {
	return "ws" + strings.TrimPrefix(n.URL(), "http") + "/ws"
}

// runSubscribe runs Run with o until it returns; the test ends it if it
// has not after ReadTimeout.
func runSubscribe(t *testing.T, o Options) (stdout, stderr *syncBuffer, done chan error, cancel func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	done = make(chan error, 1)
	go func() { done <- Run(ctx, o, stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(readTimeout):
			t.Error("Run did not return after its context ended")
		}
	})
	return stdout, stderr, done, cancel
}

// exited waits for a Run that should end by itself.
func exited(t *testing.T, done chan error, stderr *syncBuffer) error {
	t.Helper()
	select {
	case err := <-done:
		done <- err // for the cleanup
		return err
	case <-time.After(readTimeout):
		t.Fatalf("Run still running after %s; stderr:\n%s", readTimeout, stderr)
		return nil
	}
}

func TestRunNoChannels(t *testing.T) {
	if err := Run(context.Background(), Options{URL: "ws://127.0.0.1:1/ws"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Fatal("Run without channels succeeded")
	}
}

// cliMessage is one line of the subscriber's output.
type cliMessage struct {
	Channel  string          `json:"channel"`
	Offset   uint64          `json:"offset"`
	Epoch    string          `json:"epoch"`
	Snapshot bool            `json:"snapshot"`
	Data     json.RawMessage `json:"data"`
}

// TestRunResumes runs the subscriber through a proxy that
// cuts the connection while messages are published: it must print every
// message once, in order, and the channel's snapshot first.
func TestRunResumes(t *testing.T) {
	n := startTestNode(t, cliConfig())
	n.Publish("ticker:x", "latest")
	p := newCutProxy(t, n.Addr())

	ctx, cancel := context.WithCancel(context.Background())
	var out, errw syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{URL: "ws://" + p.Addr() + "/ws", Channels: []string{"cli:a", "ticker:x"}}, &out, &errw)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("subscribe: %v", err)
		}
	})
	waitFor(t, readTimeout, "both subscriptions", func() bool {
		s := errw.String()
		return strings.Contains(s, "subscribed cli:a at ") && strings.Contains(s, "subscribed ticker:x at ")
	})
	n.Publish("cli:a", 1)
	n.Publish("cli:a", 2)
	waitFor(t, readTimeout, "3 lines", func() bool { return len(out.lines()) >= 3 })

	p.Hold(true)
	p.Cut()
	waitFor(t, readTimeout, "the disconnect notice", func() bool { return strings.Contains(errw.String(), "disconnected") })
	n.Publish("cli:a", 3)
	n.Publish("cli:a", 4)
	p.Hold(false)
	waitFor(t, readTimeout, "the resubscribe", func() bool { return strings.Count(errw.String(), "subscribed cli:a at ") == 2 })
	n.Publish("cli:a", 5)
	waitFor(t, readTimeout, "6 lines", func() bool { return len(out.lines()) >= 6 })

	var offsets []uint64
	snapshots := 0
	for _, line := range out.lines() {
		var m cliMessage
		decodeJSON(t, []byte(line), &m)
		switch m.Channel {
		case "ticker:x":
			if !m.Snapshot || !jsonEqual(t, m.Data, "latest") {
				t.Errorf("ticker line %s, want the snapshot \"latest\"", line)
			}
			snapshots++
		case "cli:a":
			if !jsonEqual(t, m.Data, m.Offset) {
				t.Errorf("line %s: data is not its sequence number", line)
			}
			offsets = append(offsets, m.Offset)
		}
	}
	if snapshots != 1 || len(offsets) != 5 {
		t.Fatalf("got %d snapshot(s) and offsets %v, want 1 and 1..5:\n%s\nstderr:\n%s", snapshots, offsets, out.String(), errw.String())
	}
	for i, o := range offsets {
		if o != uint64(i+1) {
			t.Fatalf("offsets %v, want 1..5 in order", offsets)
		}
	}
}

// TestRunRefused: each refused channel gets the server's
// error on stderr (even with -q); with some channel accepted the command
// goes on, with none it exits non-zero at once.
func TestRunRefused(t *testing.T) {
	n := startTestNode(t, cliConfig())

	out, errw, done, cancel := runSubscribe(t, Options{Quiet: true, URL: wsURL(n), Channels: []string{"stocks:AAPL", "bad name", "cli:ok"}})
	waitFor(t, readTimeout, "both refusals", func() bool {
		s := errw.String()
		return strings.Contains(s, `subscribe stocks:AAPL: refused: unknown_namespace: push: unknown namespace "stocks"`) &&
			strings.Contains(s, "subscribe bad name: refused: invalid_channel:")
	})
	waitFor(t, readTimeout, "the subscription to cli:ok", func() bool { _, _, subs := n.Core().Counts(); return subs == 1 })
	n.Publish("cli:ok", "still here")
	waitFor(t, readTimeout, "the message", func() bool { return len(out.lines()) == 1 })
	cancel()
	if err := exited(t, done, errw); err != nil {
		t.Fatalf("subscribe with one channel accepted: %v", err)
	}

	_, errw, done, _ = runSubscribe(t, Options{URL: wsURL(n), Channels: []string{"stocks:AAPL", "herald:stats"}})
	err := exited(t, done, errw)
	if err == nil || !strings.Contains(err.Error(), "refused every channel") {
		t.Fatalf("subscribe with every channel refused: %v, want an error", err)
	}
	if s := errw.String(); !strings.Contains(s, "subscribe herald:stats: refused: forbidden:") || !strings.Contains(s, "unknown_namespace") {
		t.Fatalf("stderr %q, want both refusals", s)
	}
}
