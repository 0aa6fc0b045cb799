package redisbroker

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// With Redis Cluster a node holds one pub/sub connection per master
// (nodeConn), whatever its number of partitions and channels. Each
// partition (a shard: its wanted channels and its control channel, all in
// one slot) is homed on the connection to the master owning its slot.
// Redis lets one SSUBSCRIBE name channels of one slot only, so every
// (re)subscription is one SSUBSCRIBE per partition: a master that comes
// back costs O(partitions) commands, never O(channels).
//
// Herald speaks to these connections itself (resp.go) rather than through
// go-redis's PubSub, which would resubscribe everything in one command
// that Redis refuses with CROSSSLOT. The connection's reader owns the
// reconnects, so it always knows when one happened: every partition on a
// lost connection is down until its resubscription is confirmed, then the
// Handler is told (HandleReconnect) and the hub fills the gap from history.
//
// A partition moves (re-homing) when Redis says its slot lives elsewhere:
// a MOVED reply to its SSUBSCRIBE (after a failover or resharding), an
// SUNSUBSCRIBE it did not ask for (Redis drops a slot's subscribers when
// the slot leaves the node, or the node becomes a replica), or its master
// staying unreachable while the cluster now maps the slot to another one.

// nodeConn is the pub/sub connection to one master. Its reader goroutine
// (run) dials, resubscribes, reads and redials; Subscribe and Unsubscribe
// write to it (command).
type nodeConn struct {
	b    *Broker
	addr string

	// mu guards the fields below. Lock order: Broker.nodesMu, then
	// nodeConn.mu, then shard.mu.
	mu     sync.Mutex
	nc     net.Conn      // nil while not connected
	w      *bufio.Writer // nc's writer; writes are whole commands under mu
	parts  map[*shard]struct{}
	closed bool
}

var errNotConnected = errors.New("pub/sub connection to the Redis master is down")

// close ends the connection for good. The caller holds b.nodesMu.
func (n *nodeConn) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.shut()
}

func (n *nodeConn) shut() {
	n.closed = true
	if n.nc != nil {
		_ = n.nc.Close()
	}
}

func (n *nodeConn) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// kick drops the current connection; the reader redials and resubscribes
// every partition, as after any loss (Resubscribe).
func (n *nodeConn) kick() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nc != nil {
		_ = n.nc.Close()
	}
}

// resubscribe writes s's one SSUBSCRIBE: every wanted channel, and the
// control channel last, so that its confirmation says the whole command
// took effect. A partition moving away meanwhile is skipped. The caller
// holds n.mu and flushes.
func (n *nodeConn) resubscribe(s *shard) {
	s.mu.Lock()
	if s.node != n {
		s.mu.Unlock()
		return
	}
	args := make([]string, 0, 2+len(s.want))
	args = append(args, "SSUBSCRIBE")
	for name := range s.want {
		args = append(args, name)
	}
	args = append(args, s.control)
	s.mu.Unlock()
	writeCommand(n.w, args...)
}

// flush sends what is buffered; a failed write closes the connection,
// which the reader then notices. The caller holds n.mu.
func (n *nodeConn) flush() error {
	_ = n.nc.SetWriteDeadline(time.Now().Add(n.b.ioTimeout))
	err := n.w.Flush()
	if err != nil {
		_ = n.nc.Close()
	}
	return err
}

// command sends one command on the connection.
func (n *nodeConn) command(args ...string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nc == nil {
		return errNotConnected
	}
	writeCommand(n.w, args...)
	return n.flush()
}

// run is the connection's reader: it dials, serves until the connection
// fails, marks its partitions down, and redials with backoff, until the
// engine closes or the connection is left with no partition.
func (n *nodeConn) run() {
	failures := 0
	for !n.isClosed() && !n.b.closed.Load() {
		nc, err := n.dial(true)
		healthy := false
		if err == nil {
			healthy, err = n.serve(nc)
			n.lost()
		}
		if n.isClosed() || n.b.closed.Load() {
			return
		}
		if healthy {
			failures = 0
		}
		failures++
		if failures == 1 {
			n.b.log.Warn("redis pub/sub connection lost", "node", n.addr, "err", err)
		}
		if !n.b.backoff(failures) {
			return
		}
		if failures > 1 {
			n.recheck()
		}
	}
}

// dial opens a connection to the master with the cluster client's dialer,
// TLS settings and credentials. With master, a node that is no master
// (ROLE) is refused: a replica accepts the shard subscriptions of its
// master's slots, and a subscription there would be one the engine cannot
// watch.
func (n *nodeConn) dial(master bool) (net.Conn, error) {
	o := n.b.cluster.Options()
	ctx, cancel := context.WithTimeout(context.Background(), max(o.DialTimeout, DefaultDialTimeout))
	defer cancel()
	var nc net.Conn
	var err error
	switch {
	case o.Dialer != nil:
		nc, err = o.Dialer(ctx, "tcp", n.addr)
	case o.TLSConfig != nil:
		d := tls.Dialer{Config: o.TLSConfig}
		nc, err = d.DialContext(ctx, "tcp", n.addr)
	default:
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", n.addr)
	}
	if err != nil {
		return nil, err
	}
	user, pass := o.Username, o.Password
	switch {
	case o.CredentialsProviderContext != nil:
		user, pass, err = o.CredentialsProviderContext(ctx)
	case o.CredentialsProvider != nil:
		user, pass = o.CredentialsProvider()
	}
	var hello [][]string
	if err == nil && pass != "" {
		if user != "" {
			hello = append(hello, []string{"AUTH", user, pass})
		} else {
			hello = append(hello, []string{"AUTH", pass})
		}
	}
	if o.ClientName != "" {
		hello = append(hello, []string{"CLIENT", "SETNAME", o.ClientName})
	}
	if err == nil {
		err = handshake(nc, n.b.ioTimeout, hello, master)
	}
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	return nc, nil
}

// handshake sends cmds and checks every reply is OK, then, with master,
// that the node is a master.
func handshake(nc net.Conn, timeout time.Duration, cmds [][]string, master bool) error {
	if master {
		cmds = append(cmds, []string{"ROLE"})
	}
	if len(cmds) == 0 {
		return nil
	}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	w := bufio.NewWriter(nc)
	for _, c := range cmds {
		writeCommand(w, c...)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	r := bufio.NewReader(nc)
	for _, c := range cmds {
		v, err := readReply(r)
		if err != nil {
			return err
		}
		if c[0] == "ROLE" {
			if role, _ := v.([]any); len(role) == 0 || role[0] != "master" {
				return fmt.Errorf("redis: not a master (ROLE %v)", v)
			}
		} else if v != "OK" {
			return fmt.Errorf("redis: %s: %v", c[0], v)
		}
	}
	return nc.SetDeadline(time.Time{})
}

// serve subscribes every partition on nc and reads until it fails.
// healthy reports that Redis answered something on it.
func (n *nodeConn) serve(nc net.Conn) (healthy bool, err error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		_ = nc.Close()
		return false, errors.New("closed")
	}
	n.nc, n.w = nc, bufio.NewWriter(nc)
	for s := range n.parts {
		n.resubscribe(s)
	}
	err = n.flush()
	n.mu.Unlock()
	if err != nil {
		return false, err
	}
	// Large enough for most payloads, which are then read without a copy
	// (readBulk).
	r := bufio.NewReaderSize(nc, 32<<10)
	pinged := false
	for {
		wait := n.b.opts.PingInterval
		if pinged {
			wait = n.b.pongWait
		}
		_ = nc.SetReadDeadline(time.Now().Add(wait))
		v, err := readReply(r)
		if errors.Is(err, errIdle) && !pinged {
			// Quiet for an interval: ask for a sign of life.
			pinged = true
			if err := n.command("PING"); err != nil {
				return healthy, err
			}
			continue
		}
		if err != nil {
			return healthy, err
		}
		pinged, healthy = false, true
		if err := n.handle(v); err != nil {
			return healthy, err
		}
	}
}

// lost closes the connection and marks its partitions down: each is
// resynced once its resubscription on the next connection is confirmed.
func (n *nodeConn) lost() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nc != nil {
		_ = n.nc.Close()
	}
	n.nc, n.w = nil, nil
	for s := range n.parts {
		s.mu.Lock()
		if s.node == n {
			s.lose()
		}
		s.mu.Unlock()
	}
}

// handle acts on one reply or push. An error ends the connection.
func (n *nodeConn) handle(v any) error {
	switch v := v.(type) {
	case string: // PONG before any subscription
		return nil
	case respError:
		if slot, addr, ok := moved(string(v)); ok {
			if p, ok := n.b.slotPart[slot]; ok {
				if s := n.partition(p); s != nil {
					n.b.home(s, addr, false)
				}
				return nil
			}
		}
		// CLUSTERDOWN, TRYAGAIN, ...: which partition it concerns is not
		// known; a new connection resubscribes them all.
		return fmt.Errorf("redis: %s", string(v))
	case []any:
		if len(v) < 2 {
			break
		}
		kind, _ := v[0].(string)
		name, _ := v[1].(string)
		switch {
		case kind == "pong":
			return nil
		case len(v) < 3:
		case kind == "smessage":
			payload, _ := v[2].(string)
			if s := n.shardOf(name); s != nil {
				s.deliver(name, payload)
			}
			return nil
		case kind == "ssubscribe" || kind == "sunsubscribe":
			s := n.shardOf(name)
			if s == nil {
				return nil
			}
			reconnected, dropped := s.confirm(kind, name)
			if reconnected {
				n.b.log.Info("redis pub/sub partition restored", "node", n.addr, "partition", s.index)
				n.b.handler.HandleReconnect()
			}
			if dropped {
				n.rehome(s)
			}
			return nil
		}
	}
	return fmt.Errorf("redis: unexpected pub/sub reply %v", v)
}
