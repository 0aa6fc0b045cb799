package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/heraldpush/herald/push"
)

// TestChurn (issue 12 item 7): connections come and go at 200 a second,
// each ending its own way (a close frame, a TCP cut mid-read, a cut right
// after the handshake, an unfinished handshake, a subscribe flood), while
// messages are published to their channels. Afterwards the node's
// goroutines and file descriptors are back where they were.
//
// In CI it runs 5 s in-process (the test binary is race-built there). For
// the long run against a race-built server binary:
//
//	go build -race -o /tmp/herald-race ./cmd/herald
//	HERALD_CHURN_BINARY=/tmp/herald-race HERALD_CHURN_SECONDS=60 go test -run TestE2E/Churn -v ./internal/server/
//
// which also fails on any race report of the server (GORACE log_path).
func TestChurn(t *testing.T) {
	seconds := 5
	if v := os.Getenv("HERALD_CHURN_SECONDS"); v != "" {
		var err error
		if seconds, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	var base string
	var raceLogs string
	if bin := os.Getenv("HERALD_CHURN_BINARY"); bin != "" {
		base, raceLogs = startBinary(t, bin)
	} else {
		cfg := testConfig()
		cfg.Namespaces = map[string]*push.Namespace{"churn": {}}
		base = startTestNode(t, cfg).base
	}
	host := strings.TrimPrefix(base, "http://")

	// Warm up (pools, writers, the broker's first channels), then measure.
	runChurn(t, host, base, 2*time.Second)
	before := settle(t, base)
	start := time.Now()
	conns := runChurn(t, host, base, time.Duration(seconds)*time.Second)
	took := time.Since(start)
	after := settle(t, base)
	t.Logf("%d connections started over %d s (%.0f/s), all ended after %v; goroutines %d -> %d, open fds %d -> %d",
		conns, seconds, float64(conns)/float64(seconds), took.Round(time.Millisecond),
		before.goroutines, after.goroutines, before.fds, after.fds)
	if after.goroutines > before.goroutines+10 || after.fds > before.fds+10 {
		t.Errorf("growth after churn: goroutines %d -> %d, fds %d -> %d", before.goroutines, after.goroutines, before.fds, after.fds)
	}
	if raceLogs != "" {
		if logs, _ := filepath.Glob(raceLogs + "*"); len(logs) > 0 {
			b, _ := os.ReadFile(logs[0])
			t.Fatalf("the server reported a race: %.2000s", b)
		}
	}
}

// startBinary runs a server binary on a free port and returns its URL and
// the prefix of its race logs; the cleanup stops it and checks its exit.
func startBinary(t *testing.T, bin string) (base, raceLogs string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	raceLogs = filepath.Join(t.TempDir(), "race")
	cmd := exec.Command(bin, "serve", "--listen", addr)
	cmd.Env = append(os.Environ(), "GORACE=log_path="+raceLogs+" exitcode=66", "HERALD_NAMESPACES={churn: {}}")
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 66 {
			t.Errorf("the server exited with the race detector's code")
		}
	})
	base = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return base, raceLogs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start: %v", bin, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runChurn opens 200 connections a second for d, each ending one of the
// ways above, with a publisher on their channels, and waits for them all.
func runChurn(t *testing.T, host, base string, d time.Duration) int {
	var wg sync.WaitGroup
	var n atomic.Int64
	stop := make(chan struct{})
	pubDone := make(chan struct{})
	go func() { // 100 publishes a second on the churned channels
		defer close(pubDone)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			body := fmt.Sprintf(`{"channel":"churn:%d","data":%d}`, i%20, i)
			resp, err := http.Post(base+"/api/publish", "application/json", strings.NewReader(body))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	// 200 connects a second: each tick starts as many as the rate owes by
	// then, so that a busy machine's late ticks do not lower it.
	tk := time.NewTicker(5 * time.Millisecond)
	start := time.Now()
	for i := 0; time.Since(start) < d; {
		<-tk.C
		for owed := int(time.Since(start).Seconds() * 200); i < owed; i++ {
			wg.Add(1)
			n.Add(1)
			go func(i int) { // i is the outer loop's, which this loop advances
				defer wg.Done()
				churnOne(host, i)
			}(i)
		}
	}
	tk.Stop()
	wg.Wait()
	close(stop)
	<-pubDone
	return int(n.Load())
}

// churnOne is one connection's life; failures are the point of some of
// them, so errors are not test failures: the node's health afterwards is.
func churnOne(host string, i int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := fmt.Sprintf("churn:%d", i%20)
	switch i % 5 {
	case 0, 1: // a client that reads a while and closes properly, or is cut mid-read
		c, _, err := websocket.Dial(ctx, "ws://"+host+"/ws?channel="+ch, nil)
		if err != nil {
			return
		}
		rd, rcancel := context.WithTimeout(ctx, time.Duration(rand.IntN(300))*time.Millisecond)
		for {
			if _, _, err := c.Read(rd); err != nil {
				break
			}
		}
		rcancel()
		if i%5 == 0 {
			_ = c.Close(websocket.StatusNormalClosure, "bye")
		} else {
			_ = c.CloseNow()
		}
	case 2: // cut right after the upgrade
		conn, err := net.Dial("tcp", host)
		if err != nil {
			return
		}
		fmt.Fprintf(conn, "GET /ws?channel=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", ch)
		_, _ = http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
	case 3: // a handshake never finished
		conn, err := net.Dial("tcp", host)
		if err != nil {
			return
		}
		fmt.Fprintf(conn, "GET /ws?channel=%s HTTP/1.1\r\nHost: x\r\nUpg", ch)
		time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond) // the client dawdles, then goes
		conn.Close()
	case 4: // subscribes and unsubscribes a burst, publishes to a namespace that refuses it, leaves
		c, _, err := websocket.Dial(ctx, "ws://"+host+"/ws", nil)
		if err != nil {
			return
		}
		for k := range 20 {
			_ = c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"subscribe","id":%d,"channel":"churn:%d"}`, k, k))
			_ = c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"unsubscribe","channel":"churn:%d"}`, k))
		}
		_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"publish","channel":"churn:1","data":1}`))
		_ = c.CloseNow()
	}
}

type nodeFigures struct{ goroutines, fds int }

// settle waits until the node has no connections left and its goroutine
// count stops moving, and returns its figures from /metrics.
func settle(t *testing.T, base string) nodeFigures {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last nodeFigures
	steady := 0
	for {
		m := scrape(t, base)
		f := nodeFigures{goroutines: int(m["go_goroutines"]), fds: int(m["process_open_fds"])}
		if m["herald_connections"] == 0 && f == last {
			if steady++; steady == 3 {
				return f
			}
		} else {
			steady = 0
		}
		last = f
		if time.Now().After(deadline) {
			t.Fatalf("the node did not settle: %d connections, %+v", int(m["herald_connections"]), f)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// scrape reads the unlabelled series of /metrics.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			v, _ := strconv.ParseFloat(f[1], 64)
			out[f[0]] = v
		}
	}
	return out
}
