package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
)

// serve starts the API on a real socket, keyless, with o's hub options.
func serve(t *testing.T, ho push.Options, o Options) *httptest.Server {
	t.Helper()
	ho.Node = "t"
	hub := push.NewNode(ho)
	br := broker.NewMemory(hub)
	hub.Start(context.Background(), br)
	o.Node = hub
	srv := httptest.NewServer(New(o).Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Close(ctx, push.CloseGoingAway, "test over")
		_ = br.Close(ctx)
	})
	return srv
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// One fan-in cap on every path: the channels of a publish, and a batch's
// entries times their channels.
func TestFanInCap(t *testing.T) {
	srv := serve(t, push.Options{}, Options{})
	names := func(n int) string {
		b, _ := json.Marshal(func() []string {
			var s []string
			for i := range n {
				s = append(s, fmt.Sprintf("c%d", i))
			}
			return s
		}())
		return string(b)
	}
	entries := func(n, channels int) string {
		var e []string
		for range n {
			e = append(e, `{"channels":`+names(channels)+`,"data":1}`)
		}
		return `{"messages":[` + strings.Join(e, ",") + `]}`
	}
	for _, c := range []struct {
		name, path, body string
		status           int
	}{
		{"publish to MaxFanIn channels", "/api/publish", `{"channels":` + names(MaxFanIn) + `,"data":1}`, 200},
		{"publish to one more", "/api/publish", `{"channels":` + names(MaxFanIn+1) + `,"data":1}`, 413},
		{"batch of 20 x 50", "/api/batch", entries(20, 50), 200},
		{"batch of 21 x 50", "/api/batch", entries(21, 50), 413},
		{"batch of MaxFanIn+1 single entries", "/api/batch", entries(MaxFanIn+1, 1), 413},
	} {
		if code, b := post(t, srv.URL+c.path, c.body); code != c.status {
			t.Errorf("%s: HTTP %d %.200s, want %d", c.name, code, b, c.status)
		}
	}
}

// A body trickled in is cut at the body timeout with 408, instead of
// holding the connection for as long as the client likes.
func TestSlowBodyTimesOut(t *testing.T) {
	srv := serve(t, push.Options{}, Options{BodyTimeout: time.Second})
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _ = io.WriteString(c, "POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
	answered := make(chan *http.Response, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			answered <- resp
		}
		close(answered)
	}()
	tick := time.NewTicker(200 * time.Millisecond) // the trickle itself, not a wait
	defer tick.Stop()
	for {
		select {
		case resp := <-answered:
			if resp == nil || resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("answer %v, want 408", resp)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("answered after %v", d)
			}
			return
		case <-tick.C:
			if time.Since(start) > 10*time.Second {
				t.Fatal("the trickled body is still held after 10 s")
			}
			_, _ = c.Write([]byte("{"))
		}
	}
}
