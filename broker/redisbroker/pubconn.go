package redisbroker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// On one server and with Sentinel, the publisher writes its pipelines
// itself, on a connection of its own (pubConn): the script calls are
// encoded into a buffer it reuses (respArgs, resp.go) and the answers
// read with resp.go's reader. Through go-redis every call cost a Cmd, its
// arguments as []any and the copies of its pipeline machinery, and under
// load this node's CPU per request, not Redis, sets the rate
// (docs/performance.md). go-redis stays for everything else, Cluster
// publishes included.
//
// The connection is opened by go-redis, as its pool opens one (the
// configured dialer, TLS, AUTH or credentials provider, SELECT, client
// name, and the engine's OnConnect: the process check and the generation
// guard, the scripts loaded), and then handed over (dialPublish): no
// publish runs on a connection the guard has not seen.
//
// Outcomes are decided as through go-redis (batch.go): a call none of
// whose bytes were written (no connection, the dial failed, the write
// failed before reaching it) ran nowhere, ErrUnavailable; one with bytes
// written and no answer (the write failed midway, the read failed or
// timed out) is ErrUncertain; an answer is what Redis said. After any
// failure the connection is dropped and the next pipeline dials again,
// not sooner than redialPause after a failed dial.

// redialPause is how long pipelines fail at once after a failed dial,
// rather than each trying its own: a Redis that is down costs a dial per
// pause, not one per pipeline.
const redialPause = 20 * time.Millisecond

// maxKeptBuffer bounds what a pipeline buffer keeps between pipelines,
// so that one large batch does not pin its size.
const maxKeptBuffer = 1 << 20

var errNoReply = fmt.Errorf("redis: no answer within the read timeout: %w", os.ErrDeadlineExceeded)

// pubConn is the publisher's connection. Owned by the publisher goroutine
// that made it (batch.go): nothing else touches it, so it has no lock.
type pubConn struct {
	b   *Broker
	nc  net.Conn        // nil until dialed, and after a failure
	raw syscall.RawConn // nc's socket for connCheck, nil if it has none
	r   *bufio.Reader
	// go-redis's meaning, from the client's options: > 0 a deadline per
	// pipeline, 0 none, < 0 leave the connection's deadline alone.
	readTimeout, writeTimeout time.Duration

	out    []byte   // the pipeline being written
	args   respArgs // the call being encoded
	starts []int    // where each call begins in out

	lastErr     error     // the last dial's failure
	redialAfter time.Time // until when lastErr answers instead of a dial
}

func newPubConn(b *Broker) *pubConn {
	o := b.client.(*redis.Client).Options()
	return &pubConn{b: b, readTimeout: o.ReadTimeout, writeTimeout: o.WriteTimeout}
}

// close ends the connection; the publisher does when it stops.
func (pc *pubConn) close() {
	if pc.nc != nil {
		_ = pc.nc.Close()
		pc.nc, pc.raw = nil, nil
	}
}

// run implements scriptPipe.
func (pc *pubConn) run(calls []*scriptCall, eval bool) {
	if pc.nc != nil && (pc.r.Buffered() > 0 || connCheck(pc.raw) != nil) {
		pc.close() // Redis closed it, or it is out of step: not written on
	}
	if pc.nc == nil {
		if err := pc.connect(); err != nil {
			answer(calls, err)
			return
		}
	}
	name, script := "EVALSHA", publishScript.Hash()
	if eval {
		name, script = "EVAL", publishSource
	}
	h := pc.b.head()
	pc.out, pc.starts = pc.out[:0], pc.starts[:0]
	for _, c := range calls {
		pc.args.reset()
		pc.b.writeCall(&pc.args, c, h)
		pc.starts = append(pc.starts, len(pc.out))
		pc.out = pc.args.appendTo(pc.out, name, script)
	}
	setDeadline(pc.nc.SetWriteDeadline, pc.writeTimeout)
	n, err := pc.nc.Write(pc.out)
	for i, c := range calls {
		if pc.starts[i] < n { // some of its bytes left: Redis may run it
			for _, it := range c.items {
				it.sent.Store(true)
			}
		}
	}
	pc.trim()
	if err != nil {
		answer(calls, err)
		pc.close()
		return
	}
	setDeadline(pc.nc.SetReadDeadline, pc.readTimeout)
	demoted := false
	for i, c := range calls {
		v, err := readReply(pc.r)
		if err != nil {
			if errors.Is(err, errIdle) {
				err = errNoReply
			}
			answer(calls[i:], err)
			pc.close()
			return
		}
		c.res, c.err = nil, nil
		switch v := v.(type) {
		case respError:
			c.err = v
			// A master demoted under it (Sentinel failover): redial, and
			// the dialer finds the new master.
			demoted = demoted || strings.HasPrefix(string(v), "READONLY")
		case []any:
			c.res = make([]string, len(v))
			for j, e := range v {
				c.res[j], _ = e.(string)
			}
		}
		// Anything else leaves res empty: settle reports it uncertain.
	}
	if demoted {
		pc.close()
	}
}

// answer gives every call err and no result.
func answer(calls []*scriptCall, err error) {
	for _, c := range calls {
		c.res, c.err = nil, err
	}
}

// trim lets go of a buffer one large pipeline grew.
func (pc *pubConn) trim() {
	if cap(pc.out) > maxKeptBuffer {
		pc.out = nil
	}
	pc.args.trim()
}

// setDeadline applies a go-redis timeout to one direction of a
// connection.
func setDeadline(set func(time.Time) error, d time.Duration) {
	switch {
	case d > 0:
		_ = set(time.Now().Add(d))
	case d == 0:
		_ = set(time.Time{})
	}
}

// connect dials, unless the last dial failed less than redialPause ago.
func (pc *pubConn) connect() error {
	if pc.lastErr != nil && time.Now().Before(pc.redialAfter) {
		return pc.lastErr
	}
	nc, err := dialPublish(pc.b)
	if err != nil {
		pc.lastErr, pc.redialAfter = err, time.Now().Add(redialPause)
		return err
	}
	pc.lastErr, pc.nc, pc.raw = nil, nc, rawConn(nc)
	if pc.r == nil {
		pc.r = bufio.NewReaderSize(nc, 16<<10)
	} else {
		pc.r.Reset(nc)
	}
	return nil
}

// rawConn returns nc's socket, or nil: it is looked up once per
// connection, not per pipeline (SyscallConn allocates).
func rawConn(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// dialPublish opens a connection through a go-redis client of one
// connection made from the engine's client options, so that go-redis
// sets it up as its own, then takes it from that client: RESP2, which
// resp.go reads, and go-redis never uses it again.
func dialPublish(b *Broker) (net.Conn, error) {
	base := b.client.(*redis.Client).Options()
	o := *base
	var (
		mu     sync.Mutex
		dialed []*handedConn
	)
	dial := base.Dialer
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		h := &handedConn{Conn: nc}
		mu.Lock()
		dialed = append(dialed, h)
		mu.Unlock()
		return h, nil
	}
	o.Protocol = 2
	o.PoolSize, o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns = 1, 0, 1, 1
	// base went through go-redis's defaults already, which it would apply
	// again to some of its values (0 retries would become 3): the
	// handshake's own bounds, set anew.
	o.MaxRetries, o.ReadTimeout, o.WriteTimeout = -1, b.ioTimeout, b.ioTimeout
	o.PushNotificationProcessor = nil
	c := redis.NewClient(&o)
	ctx, cancel := context.WithTimeout(context.Background(), max(base.DialTimeout, DefaultDialTimeout)+2*b.ioTimeout)
	err := c.Ping(ctx).Err()
	cancel()
	mu.Lock()
	var kept net.Conn
	if n := len(dialed); err == nil && n > 0 && !dialed[n-1].closed.Load() {
		kept = dialed[n-1].Conn // the one the PING went over
	}
	mu.Unlock()
	_ = c.Close() // closes no connection: each handedConn's is ours
	mu.Lock()
	defer mu.Unlock()
	for _, h := range dialed {
		if h.Conn != kept {
			_ = h.Conn.Close()
		}
	}
	if err == nil && kept == nil {
		err = errors.New("redis: the publish connection was closed during its setup")
	}
	return kept, err
}

// handedConn is a connection go-redis sets up and believes it closes:
// Close only records that it asked.
type handedConn struct {
	net.Conn
	closed atomic.Bool
}

func (h *handedConn) Close() error {
	h.closed.Store(true)
	return nil
}
