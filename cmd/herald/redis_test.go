package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
	"github.com/lxzan/gws"
)

// startTestNode starts a node on a free port with Redis at url.
func startTestNode(t *testing.T, url string) *node {
	t.Helper()
	cfg := defaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.RedisURL = url
	// Not t.Output(): openRedis hands the logger to go-redis, whose logger
	// is global and may write after this test ended.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := startNode(context.Background(), cfg, logger)
	if err != nil {
		t.Fatalf("startNode: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.shutdown(ctx)
	})
	return n
}

// frames is a WebSocket client that hands every frame to a channel.
type frames struct {
	gws.BuiltinEventHandler
	in chan map[string]any
}

func (f *frames) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	var v map[string]any
	if json.Unmarshal(m.Bytes(), &v) == nil {
		f.in <- v
	}
}

// next returns the next frame of type typ, skipping others.
func (f *frames) next(t *testing.T, typ string) map[string]any {
	t.Helper()
	timer := time.NewTimer(brokertest.WaitTimeout)
	defer timer.Stop()
	for {
		select {
		case v := <-f.in:
			if v["type"] == typ {
				return v
			}
		case <-timer.C:
			t.Fatalf("no %q frame within %v", typ, brokertest.WaitTimeout)
		}
	}
}

func dial(t *testing.T, addr, query string) *frames {
	t.Helper()
	f := &frames{in: make(chan map[string]any, 64)}
	c, _, err := gws.NewClient(f, &gws.ClientOption{Addr: "ws://" + addr + "/ws?" + query})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	go c.ReadLoop()
	t.Cleanup(func() { _ = c.WriteClose(1000, nil) })
	return f
}

// Two nodes sharing one Redis: a message published on one reaches a client
// of the other.
func TestRedisTwoNodes(t *testing.T) {
	srv := brokertest.StartRedis(t)
	a := startTestNode(t, srv.URL())
	b := startTestNode(t, srv.URL())

	client := dial(t, b.addr, "channel=news")
	sub := client.next(t, "subscribed")

	resp, err := http.Post("http://"+a.addr+"/api/publish", "application/json",
		strings.NewReader(`{"channel":"news","data":{"headline":"hello from a"}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %s %s", resp.Status, body)
	}
	m := client.next(t, "message")
	data, _ := json.Marshal(m["data"])
	if m["channel"] != "news" || m["epoch"] != sub["epoch"] || m["offset"] != float64(1) || string(data) != `{"headline":"hello from a"}` {
		t.Fatalf("client on node b got %v after subscribed %v", m, sub)
	}
	for _, n := range []*node{a, b} {
		resp, err := http.Get("http://" + n.addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("readyz on %s: %s", n.addr, resp.Status)
		}
	}
}

func TestRedisUnreachableAtStart(t *testing.T) {
	srv := brokertest.StartRedis(t)
	srv.Kill()
	cfg := defaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.RedisURL = srv.URL()
	_, err := startNode(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("startNode with Redis down: %v, want ErrUnavailable", err)
	}
}
