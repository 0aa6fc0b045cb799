package redisbroker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
	"github.com/redis/go-redis/v9"
)

// scriptedConn is a connection that accepts the first accept bytes
// written (all when negative) and then fails, and reads replies.
type scriptedConn struct {
	net.Conn // nil: only what pubConn calls is implemented
	accept   int
	wrote    bytes.Buffer
	replies  io.Reader
	closed   bool
}

var errCut = errors.New("connection cut")

func (c *scriptedConn) Write(p []byte) (int, error) {
	if c.accept >= 0 && len(p) > c.accept {
		c.wrote.Write(p[:c.accept])
		return c.accept, errCut
	}
	return c.wrote.Write(p)
}
func (c *scriptedConn) Read(p []byte) (int, error)       { return c.replies.Read(p) }
func (c *scriptedConn) Close() error                     { c.closed = true; return nil }
func (c *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptedConn) SetWriteDeadline(time.Time) error { return nil }

// lonePubConn is a pubConn on c for an engine that is never connected:
// enough to encode, write and settle.
func lonePubConn(c net.Conn) (*Broker, *pubConn) {
	b := &Broker{prefix: "t:", genKeys: []string{"t:#gen"}, done: make(chan struct{})}
	return b, &pubConn{b: b, nc: c, r: bufio.NewReader(c), readTimeout: time.Second, writeTimeout: time.Second}
}

// items returns n messages on channel as one job's items.
func testItems(channel string, n int) []*pubItem {
	pubs := make([]broker.Publication, n)
	for i := range pubs {
		pubs[i] = broker.Publication{Channel: channel, Data: data(i)}
	}
	j := newJob(pubs)
	out := make([]*pubItem, n)
	for i := range j.items {
		out[i] = &j.items[i]
	}
	return out
}

// A write that fails makes unknown the outcome of every call some of
// whose bytes left (ErrUncertain, 504) and unavailable that of the calls
// none of whose bytes did (ErrUnavailable, 503: published nowhere).
func TestPubConnWriteFailureOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		accept func(total int) int
		first  error // of the first call's 64 messages
		second error // of the second's 6
	}{
		{"nothing written", func(int) int { return 0 }, broker.ErrUnavailable, broker.ErrUnavailable},
		{"cut in the first call", func(total int) int { return total / 2 }, broker.ErrUncertain, broker.ErrUnavailable},
		{"cut in the last byte", func(total int) int { return total - 1 }, broker.ErrUncertain, broker.ErrUncertain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The pipeline's size, from a run that writes it all.
			probe := &scriptedConn{accept: -1, replies: strings.NewReader("")}
			b, pc := lonePubConn(probe)
			b.send(pc, testItems("a", perCall+6))
			total := probe.wrote.Len()

			c := &scriptedConn{accept: tc.accept(total), replies: strings.NewReader("")}
			b, pc = lonePubConn(c)
			items := testItems("a", perCall+6)
			b.send(pc, items)
			for i, it := range items {
				want := tc.first
				if i >= perCall {
					want = tc.second
				}
				if !errors.Is(it.err, want) {
					t.Fatalf("message %d: %v, want %v", i, it.err, want)
				}
			}
			if !c.closed || pc.nc != nil {
				t.Error("the failed connection was kept")
			}
		})
	}
}

// A read that fails after some answers settles the answered calls and
// leaves the others unknown: they were written.
func TestPubConnReadFailureOutcomes(t *testing.T) {
	c := &scriptedConn{accept: -1, replies: strings.NewReader("*3\r\n$4\r\nepch\r\n$2\r\n10\r\n$0\r\n\r\n")}
	b, pc := lonePubConn(c)
	items := testItems("a", perCall+6)
	b.send(pc, items)
	for i, it := range items {
		if i < perCall {
			if it.err != nil || it.pos != (broker.Position{Epoch: "epch", Offset: uint64(10 + i)}) {
				t.Fatalf("message %d: %v at %+v, want epch/%d", i, it.err, it.pos, 10+i)
			}
		} else if !errors.Is(it.err, broker.ErrUncertain) {
			t.Fatalf("message %d: %v, want ErrUncertain", i, it.err)
		}
	}
	if !c.closed {
		t.Error("the failed connection was kept")
	}
}

// An error answer is Redis's: a refused script is unavailable (it did not
// run), as through go-redis, and the connection stays.
func TestPubConnErrorReply(t *testing.T) {
	c := &scriptedConn{accept: -1, replies: strings.NewReader("-LOADING Redis is loading the dataset in memory\r\n")}
	b, pc := lonePubConn(c)
	items := testItems("a", 3)
	b.send(pc, items)
	for i, it := range items {
		if !errors.Is(it.err, broker.ErrUnavailable) || !strings.Contains(it.err.Error(), "LOADING") {
			t.Fatalf("message %d: %v, want ErrUnavailable (LOADING)", i, it.err)
		}
	}
	if c.closed {
		t.Error("the connection was dropped after an answer")
	}
}

// Redis losing its script cache (SCRIPT FLUSH) costs the next pipeline
// a second round trip with the source (EVAL); nothing is lost or doubled.
func TestPubConnScriptFlushed(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, srv.URL(), rec)
	mustSubscribe(t, b, "feed")
	p1 := mustPublish(t, b, "feed", 1)
	if err := admin(t, srv.Addr()).Do(context.Background(), "SCRIPT", "FLUSH").Err(); err != nil {
		t.Fatal(err)
	}
	p2 := mustPublish(t, b, "feed", 2)
	if p2.Epoch != p1.Epoch || p2.Offset != p1.Offset+1 {
		t.Fatalf("after SCRIPT FLUSH: %+v, want the offset after %+v", p2, p1)
	}
	rec.WaitPosition(t, "feed", p2)
}

// A publish connection Redis closed while it was idle (CLIENT KILL, a
// timeout, a restart) is found dead before anything is written on it:
// the next publish goes out on a new connection and succeeds.
func TestPubConnKilledWhileIdle(t *testing.T) {
	srv := brokertest.StartRedis(t)
	b := newTestBroker(t, srv.URL(), brokertest.NewRecorder())
	mustPublish(t, b, "feed", 1)
	ctx := context.Background()
	if err := admin(t, srv.Addr()).Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	// On loopback the FIN is in this side's socket before KILL answers.
	if _, err := b.Publish(ctx, "feed", data(2), retain); err != nil {
		t.Fatalf("Publish after the connection was killed: %v, want success on a new connection", err)
	}
}

// startSentinel starts a Sentinel watching master (named "m") and
// returns its address; it stops when the test ends.
func startSentinel(t *testing.T, master string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	host, port, _ := net.SplitHostPort(master)
	_, sport, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf") // Sentinel needs a file it may rewrite
	text := "port " + sport + "\nbind 127.0.0.1\ndir " + dir + "\nsentinel monitor m " + host + " " + port + " 1\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Skipf("no Sentinel: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := admin(t, addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.Do(context.Background(), "SENTINEL", "get-master-addr-by-name", "m").StringSlice()
		if err == nil && len(got) == 2 && net.JoinHostPort(got[0], got[1]) == master {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sentinel on %s does not know the master: %v %v", addr, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Through Sentinel the publish connection is dialed by go-redis's
// Sentinel dialer (the master it names): publishes reach subscribers,
// also after Redis closed that connection.
func TestPubConnThroughSentinel(t *testing.T) {
	srv := brokertest.StartRedis(t)
	sentinel := startSentinel(t, srv.Addr())
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, "redis+sentinel://"+sentinel+"/m", rec)
	if _, ok := b.client.(*redis.Client); !ok || b.sharded {
		t.Fatalf("a Sentinel engine has a %T client", b.client)
	}
	mustSubscribe(t, b, "feed")
	rec.WaitPosition(t, "feed", mustPublish(t, b, "feed", 1))
	if err := admin(t, srv.Addr()).Do(context.Background(), "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	rec.WaitPosition(t, "feed", mustPublish(t, b, "feed", 2))
}
