package redisbroker

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Where each Cluster partition lives (see nodeconn.go): its home is the
// connection to the master of its slot, and it moves when that changes.

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

// rehome moves partition s, whose subscriptions this master dropped
// without being asked, to where its slot went.
func (n *nodeConn) rehome(s *shard) {
	// Its slot left this master, or the master became a replica (which
	// would still accept the subscription). The master knows which; the
	// cluster client's view may lag.
	n.b.cluster.ReloadState(context.Background())
	addr, err := n.slotOwner(slotOf(n.b.tags[s.index]))
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), n.b.ioTimeout)
		addr, err = n.b.owner(ctx, s.index)
		cancel()
	}
	if err != nil || addr == n.addr {
		// Where it went is not known: a new connection resubscribes
		// everything if this is still a master (a MOVED reply then says
		// where the partition went), or fails if it is a replica now,
		// and the partitions follow the cluster's view.
		n.b.log.Warn("redis dropped a partition's subscriptions, reconnecting", "node", n.addr, "partition", s.index, "err", err)
		n.kick()
		return
	}
	n.b.log.Warn("redis dropped a partition's subscriptions, re-homing it", "node", n.addr, "partition", s.index, "to", addr)
	n.b.home(s, addr, true)
}
