package redisbroker

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
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

// owner returns the address of the master of partition p's slot, in the
// cluster client's current view.
func (b *Broker) owner(ctx context.Context, p int) (string, error) {
	c, err := b.cluster.MasterForKey(ctx, b.genKeys[p])
	if err != nil {
		return "", err
	}
	return c.Options().Addr, nil
}

// home puts partition s on the connection to the master at addr (made if
// there is none) and subscribes it there. Unless force, a partition
// already there is left alone. A partition that moves is down until the
// new master confirms it, and is resynced from history then.
func (b *Broker) home(s *shard, addr string, force bool) {
	b.nodesMu.Lock()
	defer b.nodesMu.Unlock()
	if b.closed.Load() {
		return
	}
	s.mu.Lock()
	old := s.node
	if old != nil && old.addr == addr && !force {
		s.mu.Unlock()
		return
	}
	n := b.nodes[addr]
	if n == nil {
		n = &nodeConn{b: b, addr: addr, parts: make(map[*shard]struct{})}
		b.nodes[addr] = n
		b.readers.Go(n.run)
	}
	s.node = n
	if old != nil {
		s.lose()
	}
	s.mu.Unlock()
	if old != nil && old != n {
		old.detach(s)
		b.log.Info("redis pub/sub partition moved", "partition", s.index, "from", old.addr, "to", addr)
	}
	n.attach(s)
}

// attach adds s to the connection, subscribing it now if connected (else
// the reader does on connecting).
func (n *nodeConn) attach(s *shard) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.parts[s] = struct{}{}
	if n.nc != nil {
		n.resubscribe(s)
		n.flush()
	}
}

// detach removes s; a connection left with no partition closes. The
// caller holds b.nodesMu.
func (n *nodeConn) detach(s *shard) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.parts, s)
	if len(n.parts) == 0 {
		n.shut()
		delete(n.b.nodes, n.addr)
	}
}

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

// recheck moves the partitions whose slot the cluster now maps to another
// master: a master that stays unreachable may have been failed over.
func (n *nodeConn) recheck() {
	n.b.cluster.ReloadState(context.Background())
	n.mu.Lock()
	parts := make([]*shard, 0, len(n.parts))
	for s := range n.parts {
		parts = append(parts, s)
	}
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), n.b.ioTimeout)
	defer cancel()
	for _, s := range parts {
		if addr, err := n.b.owner(ctx, s.index); err == nil && addr != n.addr {
			n.b.home(s, addr, false)
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
				// Its slot left this master, or the master became a
				// replica (which would still accept the subscription).
				// The master knows which; the cluster client's view may
				// lag.
				n.b.cluster.ReloadState(context.Background())
				addr, err := n.slotOwner(slotOf(n.b.tags[s.index]))
				if err != nil {
					ctx, cancel := context.WithTimeout(context.Background(), n.b.ioTimeout)
					addr, err = n.b.owner(ctx, s.index)
					cancel()
				}
				if err != nil || addr == n.addr {
					// Where it went is not known: a new connection
					// resubscribes everything if this is still a master
					// (a MOVED reply then says where the partition went),
					// or fails if it is a replica now, and the partitions
					// follow the cluster's view.
					n.b.log.Warn("redis dropped a partition's subscriptions, reconnecting", "node", n.addr, "partition", s.index, "err", err)
					n.kick()
					return nil
				}
				n.b.log.Warn("redis dropped a partition's subscriptions, re-homing it", "node", n.addr, "partition", s.index, "to", addr)
				n.b.home(s, addr, true)
			}
			return nil
		}
	}
	return fmt.Errorf("redis: unexpected pub/sub reply %v", v)
}

// slotOwner asks this connection's master, on a connection of its own,
// which master it now sees owning slot (CLUSTER SLOTS).
func (n *nodeConn) slotOwner(slot int) (string, error) {
	nc, err := n.dial(false)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(n.b.ioTimeout))
	w := bufio.NewWriter(nc)
	writeCommand(w, "CLUSTER", "SLOTS")
	if err := w.Flush(); err != nil {
		return "", err
	}
	v, err := readReply(bufio.NewReader(nc))
	if err != nil {
		return "", err
	}
	return slotMaster(v, slot, n.addr)
}

// slotMaster finds slot's master in a CLUSTER SLOTS reply from the node
// at from (an empty IP in the reply means from's).
func slotMaster(reply any, slot int, from string) (string, error) {
	if e, ok := reply.(respError); ok {
		return "", e
	}
	ranges, _ := reply.([]any)
	for _, r := range ranges {
		f, _ := r.([]any)
		if len(f) < 3 {
			continue
		}
		lo, _ := f[0].(int64)
		hi, _ := f[1].(int64)
		if int64(slot) < lo || int64(slot) > hi {
			continue
		}
		node, _ := f[2].([]any)
		if len(node) < 2 {
			break
		}
		ip, _ := node[0].(string)
		port, _ := node[1].(int64)
		if ip == "" {
			ip, _, _ = net.SplitHostPort(from)
		}
		return net.JoinHostPort(ip, strconv.FormatInt(port, 10)), nil
	}
	return "", fmt.Errorf("redis: no master serves slot %d", slot)
}

// shardOf returns the partition a pub/sub name belongs to, if it is
// homed on this connection ("<prefix>{<tag>}<channel>", or the control
// channel "<prefix>{<tag>}"). What arrives for a partition that moved
// away is stale and ignored: the partition is resynced when its new home
// confirms it.
func (n *nodeConn) shardOf(name string) *shard {
	rest, ok := strings.CutPrefix(name, n.b.prefix+"{")
	if !ok {
		return nil
	}
	tag, _, ok := strings.Cut(rest, "}")
	if !ok {
		return nil
	}
	p, ok := n.b.tagPart[tag]
	if !ok {
		return nil
	}
	return n.partition(p)
}

// partition returns partition p's shard if it is homed here.
func (n *nodeConn) partition(p int) *shard {
	s := n.b.shards[p]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.node != n {
		return nil
	}
	return s
}

// moved parses "MOVED <slot> <host:port>".
func moved(reply string) (slot int, addr string, ok bool) {
	f := strings.Fields(reply)
	if len(f) != 3 || f[0] != "MOVED" {
		return 0, "", false
	}
	slot, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, "", false
	}
	return slot, f[2], true
}

// startNodes homes every partition on the connection to its slot's
// master and waits until each is subscribed, so that a node that cannot
// subscribe finds out at start.
func (b *Broker) startNodes(ctx context.Context) error {
	b.nodes = make(map[string]*nodeConn)
	b.tagPart = make(map[string]int, len(b.tags))
	b.slotPart = make(map[int]int, len(b.tags))
	for p, tag := range b.tags {
		b.tagPart[tag] = p
		b.slotPart[slotOf(tag)] = p
	}
	waits := make([][]chan struct{}, len(b.shards))
	for p, s := range b.shards {
		addr, err := b.owner(ctx, p)
		if err != nil {
			return b.fail("subscribe", "", err)
		}
		w := make(chan struct{})
		s.mu.Lock()
		s.down = true
		s.waiters[s.control] = []chan struct{}{w}
		s.mu.Unlock()
		waits[p] = []chan struct{}{w}
		b.home(s, addr, false)
	}
	for p, s := range b.shards {
		if err := s.wait(ctx, waits[p]); err != nil {
			return b.fail("subscribe", "", err)
		}
	}
	return nil
}

// closeNodes ends every Cluster pub/sub connection.
func (b *Broker) closeNodes() {
	b.nodesMu.Lock()
	defer b.nodesMu.Unlock()
	for _, n := range b.nodes {
		n.close()
	}
}

// kickNodes drops every Cluster pub/sub connection for a fresh one.
func (b *Broker) kickNodes() {
	b.nodesMu.Lock()
	defer b.nodesMu.Unlock()
	for _, n := range b.nodes {
		n.kick()
	}
}
