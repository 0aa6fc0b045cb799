package brokertest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RedisServer is a redis-server process started for a test, on its own
// port and data directory. Kill may be called from any goroutine; Restart
// fails the test when the server does not come back, so call it from the
// test's goroutine, and not concurrently with Kill.
type RedisServer struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has exited
	out  *syncBuffer
}

// RedisOption configures StartRedis.
type RedisOption func(*RedisServer)

// AppendOnly turns Redis persistence on (an append-only file fsynced on
// every write, so that data survives Kill and Restart) or off (the
// default: a restarted server starts empty). Snapshots are always off.
func AppendOnly(on bool) RedisOption {
	return func(s *RedisServer) {
		if on {
			s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
		} else {
			s.args = append(s.args, "--appendonly", "no")
		}
	}
}

// RedisArgs adds redis-server command-line arguments, for example
// RedisArgs("--cluster-enabled", "yes").
func RedisArgs(args ...string) RedisOption {
	return func(s *RedisServer) { s.args = append(s.args, args...) }
}

// redisStartTimeout bounds how long a server may take to answer PING.
const redisStartTimeout = 15 * time.Second

// StartRedis starts a redis-server on a free local port with a temporary
// data directory and stops it when the test ends. Without a redis-server
// on PATH the test is skipped, or fails when the environment variable CI
// is "true", so that CI cannot pass by skipping.
func StartRedis(t testing.TB, opts ...RedisOption) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is not on PATH (required when CI=true): %v", err)
		}
		t.Skipf("redis-server is not on PATH: %v", err)
	}
	s := &RedisServer{t: t, bin: bin, dir: t.TempDir()}
	AppendOnly(false)(s)
	for _, o := range opts {
		o(s)
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("redis-server on port %d said:\n%s", s.port, s.output())
		}
	})
	// A free port can be taken by someone else between our probe and the
	// server's bind: try a few.
	for attempt := 0; ; attempt++ {
		s.port = freePort(t)
		err := s.start()
		if err == nil {
			return s
		}
		if attempt == 4 {
			t.Fatalf("start redis-server: %v\n%s", err, s.output())
		}
	}
}

// Addr is the server's host:port.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the server's redis:// URL.
func (s *RedisServer) URL() string { return "redis://" + s.Addr() }

// Kill stops the server with SIGKILL, as a crash would, and waits until it
// has exited. Killing a stopped server does nothing.
func (s *RedisServer) Kill() {
	s.mu.Lock()
	cmd, exit := s.cmd, s.exit
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exit
}

// Restart kills the server if it runs, then starts it again on the same
// port and data directory (so that with AppendOnly(true) its data
// survives), and waits until it answers PING.
func (s *RedisServer) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.t.Fatalf("restart redis-server: %v\n%s", err, s.output())
	}
}

func (s *RedisServer) start() error {
	args := append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--daemonize", "no",
		"--protected-mode", "no",
		"--logfile", "",
	}, s.args...)
	cmd := exec.Command(s.bin, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exit)
	}()
	s.mu.Lock()
	s.cmd, s.exit, s.out = cmd, exit, out
	s.mu.Unlock()
	if err := s.waitReady(exit); err != nil {
		s.Kill()
		return err
	}
	return nil
}

// waitReady waits until the server answers PING with PONG (not LOADING),
// or exits.
func (s *RedisServer) waitReady(exit chan struct{}) error {
	deadline := time.Now().Add(redisStartTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ping(s.Addr()); last == nil {
			return nil
		}
		select {
		case <-exit:
			return fmt.Errorf("redis-server exited")
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server not ready after %v: %v", redisStartTimeout, last)
		}
	}
}

// ping sends PING in the inline protocol and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("PING: %s", line)
	}
	return nil
}

func (s *RedisServer) output() string {
	s.mu.Lock()
	out := s.out
	s.mu.Unlock()
	if out == nil {
		return ""
	}
	return out.String()
}

// freePort returns a TCP port nobody listens on right now.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a process's output; exec copies into it from its
// own goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
