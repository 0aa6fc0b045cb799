package redisbroker

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
)

// startCluster starts n redis-servers in cluster mode (masters only),
// splits the slots between them and waits until every node reports the
// cluster ok.
func startCluster(t testing.TB, n int) []*brokertest.RedisServer {
	t.Helper()
	srvs := make([]*brokertest.RedisServer, n)
	for i := range srvs {
		srvs[i] = brokertest.StartRedis(t, brokertest.RedisArgs("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"))
	}
	ctx := context.Background()
	first := admin(t, srvs[0].Addr())
	for _, s := range srvs[1:] {
		host, port, _ := net.SplitHostPort(s.Addr())
		if err := first.Do(ctx, "CLUSTER", "MEET", host, port).Err(); err != nil {
			t.Fatalf("CLUSTER MEET: %v", err)
		}
	}
	per := 16384 / n
	for i, s := range srvs {
		lo, hi := i*per, (i+1)*per-1
		if i == n-1 {
			hi = 16383
		}
		if err := admin(t, s.Addr()).Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
		}
	}
	waitClusterOK(t, srvs)
	return srvs
}

func waitClusterOK(t testing.TB, srvs []*brokertest.RedisServer) {
	t.Helper()
	brokertest.WaitUntil(t, 30*time.Second, func() error {
		for _, s := range srvs {
			c := admin(t, s.Addr())
			info, err := c.ClusterInfo(context.Background()).Result()
			_ = c.Close()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", len(srvs))) {
				return fmt.Errorf("%s: %s", s.Addr(), strings.Fields(info)[:3])
			}
		}
		return nil
	})
}

func clusterURL(srvs []*brokertest.RedisServer) string {
	addrs := make([]string, len(srvs))
	for i, s := range srvs {
		addrs[i] = s.Addr()
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

func withPartitions(n int) func(*Options) { return func(o *Options) { o.Partitions = n } }

func TestContractCluster(t *testing.T) {
	url := clusterURL(startCluster(t, 3))
	brokertest.Run(t, func(t *testing.T, h broker.Handler) broker.Broker {
		return newTestBroker(t, url, h, withPartitions(8))
	})
}

// pubsubConns returns, for each pub/sub connection master addr holds, its
// count of shard channels (CLIENT LIST TYPE pubsub, field ssub).
func pubsubConns(t *testing.T, addr string) []int {
	t.Helper()
	list, err := admin(t, addr).Do(context.Background(), "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		t.Fatalf("CLIENT LIST on %s: %v", addr, err)
	}
	var out []int
	for line := range strings.Lines(list) {
		for f := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(f, "ssub="); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("CLIENT LIST: %q", line)
				}
				out = append(out, n)
			}
		}
	}
	return out
}

// commandCalls returns how many times master addr ran command (INFO
// commandstats), 0 if never.
func commandCalls(t *testing.T, addr, command string) int {
	t.Helper()
	stat := infoField(admin(t, addr).Info(context.Background(), "commandstats").Val(), "cmdstat_"+command)
	if stat == "" {
		return 0
	}
	var calls int
	if _, err := fmt.Sscanf(stat, "calls=%d,", &calls); err != nil {
		t.Fatalf("cmdstat_%s %q: %v", command, stat, err)
	}
	return calls
}

// deliveredAgain waits, after a restart, failover or slot move, until b is
// ready and a publish of data(i) to each channel goes through and reaches
// rec: every partition is subscribed again, not only the first one back.
// Until go-redis has seen the change, a publish may still fail.
func deliveredAgain(t *testing.T, b *Broker, rec *brokertest.Recorder, i int, chans ...string) {
	t.Helper()
	ctx := context.Background()
	brokertest.WaitUntil(t, 15*time.Second, func() error { return b.Ready(ctx) })
	for _, ch := range chans {
		var pos broker.Position
		brokertest.WaitUntil(t, 10*time.Second, func() (err error) {
			pos, err = b.Publish(ctx, ch, data(i), retain)
			return err
		})
		rec.WaitPosition(t, ch, pos)
	}
}

// partitionsOn returns the partitions whose slot master addr owns.
func partitionsOn(t *testing.T, b *Broker, addr string) []int {
	t.Helper()
	var out []int
	for p := range b.tags {
		owner, err := b.owner(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if owner == addr {
			out = append(out, p)
		}
	}
	return out
}

// A node holds one pub/sub connection per master, carrying the partitions
// whose slots that master owns, so that sharded subscriptions are
// accepted and spread over the cluster; publishes spread the same way.
func TestClusterPartitionsSpreadOverNodes(t *testing.T) {
	srvs := startCluster(t, 3)
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, clusterURL(srvs), rec, withPartitions(16))
	ctx := context.Background()
	total := 0
	for _, s := range srvs {
		chans, err := admin(t, s.Addr()).PubSubShardChannels(ctx, b.prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		// Balanced tags: 16 partitions over 3 equal masters are 5, 5, 6.
		if len(chans) < 5 || len(chans) > 6 {
			t.Errorf("node %s holds %d of 16 partitions, want 5 or 6", s.Addr(), len(chans))
		}
		total += len(chans)
	}
	if total != 16 {
		t.Fatalf("%d control channels subscribed across the cluster, want 16", total)
	}
	// Channels of every partition are delivered.
	var chans []string
	for i := range 64 {
		chans = append(chans, fmt.Sprintf("c%d", i))
	}
	mustSubscribe(t, b, chans...)
	for _, ch := range chans {
		mustPublish(t, b, ch, 1)
	}
	for _, ch := range chans {
		rec.WaitMessages(t, ch, 1)
	}
	// One pub/sub connection per master, not one per partition, holding
	// its partitions' control channels and the channels subscribed.
	subs := 0
	for _, s := range srvs {
		conns := pubsubConns(t, s.Addr())
		if len(conns) != 1 {
			t.Errorf("master %s holds %d pub/sub connections (shard channels %v), want 1", s.Addr(), len(conns), conns)
		}
		for _, n := range conns {
			subs += n
		}
	}
	if subs != 16+len(chans) {
		t.Errorf("%d shard channels subscribed across the masters, want %d (16 control + %d)", subs, 16+len(chans), len(chans))
	}
	// And the publishes ran on every master.
	for _, s := range srvs {
		calls := commandCalls(t, s.Addr(), "evalsha")
		if calls == 0 {
			t.Errorf("master %s ran no publish script", s.Addr())
		}
		t.Logf("master %s: %d partitions, pub/sub connections %v (shard channels each), %d publish scripts of %d publishes",
			s.Addr(), len(partitionsOn(t, b, s.Addr())), pubsubConns(t, s.Addr()), calls, len(chans))
	}
}

// A cluster master that dies and comes back: calls for its channels fail
// fast meanwhile, then the node's one connection to it redials and
// resubscribes each of its partitions, all the partition's channels in one
// SSUBSCRIBE (issue 14 item 5: O(partitions) commands, not O(channels)),
// reports the gap (HandleReconnect: the hub resyncs from history), and
// delivers again. The other masters' connections are left alone.
func TestClusterNodeRestart(t *testing.T) {
	srvs := startCluster(t, 3)
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, clusterURL(srvs), rec)
	ctx := context.Background()
	owner := func(ch string) string {
		c, err := b.cluster.MasterForKey(ctx, b.names(ch).pos)
		if err != nil {
			t.Fatal(err)
		}
		return c.Options().Addr
	}
	var onDead, onLive string
	for i := 0; onDead == "" || onLive == ""; i++ {
		switch ch := fmt.Sprintf("c%d", i); owner(ch) {
		case srvs[2].Addr():
			onDead = ch
		case srvs[0].Addr():
			onLive = ch
		}
	}
	// Many channels, so that resubscribing them one command per channel
	// would show against one command per partition.
	var many []string
	onDeadCount := 0
	for i := range 3000 {
		ch := fmt.Sprintf("m%d", i)
		many = append(many, ch)
		if owner(ch) == srvs[2].Addr() {
			onDeadCount++
		}
	}
	mustSubscribe(t, b, many...)
	mustSubscribe(t, b, onDead, onLive)
	mustPublish(t, b, onDead, 1)
	mustPublish(t, b, onLive, 1)
	rec.WaitMessages(t, onDead, 1)
	rec.WaitMessages(t, onLive, 1)
	liveBefore := commandCalls(t, srvs[0].Addr(), "ssubscribe") + commandCalls(t, srvs[1].Addr(), "ssubscribe")
	parts := len(partitionsOn(t, b, srvs[2].Addr()))

	srvs[2].Kill()
	expectUnavailable(t, "Publish on the dead node", func(ctx context.Context) error {
		_, err := b.Publish(ctx, onDead, data(2), retain)
		return err
	})
	srvs[2].Restart()
	back := time.Now()
	// Each of the master's partitions reports its gap once it is back.
	rec.WaitReconnects(t, parts)
	resubscribed := time.Since(back)
	waitClusterOK(t, srvs)
	// Every partition of the node resubscribed, not only the first one
	// back: a publish before its resubscription would not be delivered.
	deliveredAgain(t, b, rec, 3, onDead, onLive)
	// The restarted process counted every SSUBSCRIBE it got: one per
	// partition, whatever the number of channels, on one connection.
	calls := commandCalls(t, srvs[2].Addr(), "ssubscribe")
	if calls != parts {
		t.Errorf("the restarted master got %d SSUBSCRIBE commands for its %d partitions (%d channels), want %d", calls, parts, onDeadCount+1, parts)
	}
	if conns := pubsubConns(t, srvs[2].Addr()); len(conns) != 1 || conns[0] != parts+onDeadCount+1 {
		t.Errorf("the restarted master holds pub/sub connections with %v shard channels, want one with %d", conns, parts+onDeadCount+1)
	}
	if live := commandCalls(t, srvs[0].Addr(), "ssubscribe") + commandCalls(t, srvs[1].Addr(), "ssubscribe"); live != liveBefore {
		t.Errorf("the masters that stayed up got %d SSUBSCRIBE commands meanwhile, want 0", live-liveBefore)
	}
	t.Logf("restarted master: %d partitions, %d channels, resubscribed in %d SSUBSCRIBE commands on 1 connection, %v after it answered PING; %d gap reports",
		parts, onDeadCount+1, calls, resubscribed.Round(time.Millisecond), rec.Reconnects())
}

// Presence keys share one slot, so its scripts run on Redis Cluster too.
func TestPresenceCluster(t *testing.T) {
	url := clusterURL(startCluster(t, 3))
	brokertest.RunPresence(t, newTestBroker(t, url, brokertest.NewRecorder()))
}

// moveSlot reshards slot from master from to master to, keys included, the
// way redis-cli --cluster reshard does.
func moveSlot(t *testing.T, slot int, from, to *brokertest.RedisServer, all []*brokertest.RedisServer) {
	t.Helper()
	ctx := context.Background()
	src, dst := admin(t, from.Addr()), admin(t, to.Addr())
	srcID, dstID := src.Do(ctx, "CLUSTER", "MYID").Val(), dst.Do(ctx, "CLUSTER", "MYID").Val()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("SETSLOT IMPORTING", dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err())
	must("SETSLOT MIGRATING", src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err())
	keys, err := src.ClusterGetKeysInSlot(ctx, slot, 1000).Result()
	must("GETKEYSINSLOT", err)
	if len(keys) > 0 {
		host, port, _ := net.SplitHostPort(to.Addr())
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must("MIGRATE", src.Do(ctx, args...).Err())
	}
	must("SETSLOT NODE (target)", dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err())
	for _, s := range all {
		if s != to {
			must("SETSLOT NODE", admin(t, s.Addr()).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err())
		}
	}
}

// A partition whose slot is resharded to another master moves with it:
// the old master drops its subscriptions (SUNSUBSCRIBE pushes), the
// engine resubscribes the partition (one SSUBSCRIBE, answered MOVED to
// the new owner) on its connection to the new master, reports the gap,
// and delivers again. Still one pub/sub connection per master.
func TestClusterSlotMoveRehomesPartition(t *testing.T) {
	srvs := startCluster(t, 3)
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, clusterURL(srvs), rec, withPartitions(8))
	ctx := context.Background()
	from, to := srvs[0], srvs[1]
	p := partitionsOn(t, b, from.Addr())[0]
	var chans []string
	for i := 0; len(chans) < 20; i++ {
		if ch := fmt.Sprintf("c%d", i); b.names(ch).shard == p {
			chans = append(chans, ch)
		}
	}
	mustSubscribe(t, b, chans...)
	for _, ch := range chans {
		mustPublish(t, b, ch, 1)
		rec.WaitMessages(t, ch, 1)
	}
	toBefore := commandCalls(t, to.Addr(), "ssubscribe")

	moveSlot(t, slotOf(b.tags[p]), from, to, srvs)
	movedAt := time.Now()
	rec.WaitReconnects(t, 1)
	took := time.Since(movedAt)
	deliveredAgain(t, b, rec, 2, chans...)
	moved, err := admin(t, to.Addr()).PubSubShardChannels(ctx, b.controlChannel(p)).Result()
	if err != nil || len(moved) != 1 {
		t.Fatalf("partition %d's control channel on the new master: %v, %v", p, moved, err)
	}
	if got := commandCalls(t, to.Addr(), "ssubscribe") - toBefore; got != 1 {
		t.Errorf("the new master got %d SSUBSCRIBE commands for the partition of %d channels, want 1", got, len(chans))
	}
	for _, s := range []*brokertest.RedisServer{from, to} {
		if conns := pubsubConns(t, s.Addr()); len(conns) != 1 {
			t.Errorf("master %s holds pub/sub connections %v, want 1", s.Addr(), conns)
		}
	}
	t.Logf("partition %d (%d channels) moved from %s to %s in 1 SSUBSCRIBE, resubscribed %v after the last SETSLOT; %d gap reports; connections (shard channels): %v and %v",
		p, len(chans), from.Addr(), to.Addr(), took.Round(time.Millisecond), rec.Reconnects(), pubsubConns(t, from.Addr()), pubsubConns(t, to.Addr()))
}

// addReplica starts a redis-server replicating master and waits until it
// is in sync.
func addReplica(t *testing.T, master *brokertest.RedisServer, all []*brokertest.RedisServer) *brokertest.RedisServer {
	t.Helper()
	ctx := context.Background()
	r := brokertest.StartRedis(t, brokertest.RedisArgs("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"))
	host, port, _ := net.SplitHostPort(master.Addr())
	c := admin(t, r.Addr())
	if err := c.Do(ctx, "CLUSTER", "MEET", host, port).Err(); err != nil {
		t.Fatalf("CLUSTER MEET: %v", err)
	}
	waitClusterOK(t, append(all, r))
	id := admin(t, master.Addr()).Do(ctx, "CLUSTER", "MYID").Val()
	brokertest.WaitUntil(t, 30*time.Second, func() error {
		// The replica must know the master's id before it can follow it.
		return c.Do(ctx, "CLUSTER", "REPLICATE", id).Err()
	})
	brokertest.WaitUntil(t, 30*time.Second, func() error {
		if info := c.Info(ctx, "replication").Val(); !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("replica not in sync: %s", infoField(info, "master_link_status"))
		}
		return nil
	})
	return r
}

// A failover (CLUSTER FAILOVER on a replica): the demoted master drops its
// shard subscriptions, each of its partitions moves to the promoted
// replica with one SSUBSCRIBE, reports the gap, and delivers again; the
// node keeps one pub/sub connection per master and none to the replica
// the old master became.
func TestClusterFailoverRehomesPartitions(t *testing.T) {
	srvs := startCluster(t, 3)
	old := srvs[2]
	replica := addReplica(t, old, srvs)
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, clusterURL(srvs), rec, withPartitions(8))
	ctx := context.Background()
	parts := partitionsOn(t, b, old.Addr())
	var chans []string
	for i := range 120 {
		ch := fmt.Sprintf("f%d", i)
		if slices.Contains(parts, b.names(ch).shard) {
			chans = append(chans, ch)
		}
	}
	mustSubscribe(t, b, chans...)
	for _, ch := range chans {
		mustPublish(t, b, ch, 1)
	}
	for _, ch := range chans {
		rec.WaitMessages(t, ch, 1)
	}
	if err := admin(t, replica.Addr()).Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatalf("CLUSTER FAILOVER: %v", err)
	}
	failedOver := time.Now()
	rec.WaitReconnects(t, len(parts))
	took := time.Since(failedOver)
	deliveredAgain(t, b, rec, 2, chans...)
	// The promoted replica ran no SSUBSCRIBE before: every one it counts
	// is a partition moving to it.
	if calls := commandCalls(t, replica.Addr(), "ssubscribe"); calls != len(parts) {
		t.Errorf("the promoted replica got %d SSUBSCRIBE commands for %d partitions (%d channels), want %d", calls, len(parts), len(chans), len(parts))
	}
	if conns := pubsubConns(t, replica.Addr()); len(conns) != 1 || conns[0] != len(parts)+len(chans) {
		t.Errorf("the promoted replica holds pub/sub connections with %v shard channels, want one with %d", conns, len(parts)+len(chans))
	}
	brokertest.WaitUntil(t, 10*time.Second, func() error {
		if conns := pubsubConns(t, old.Addr()); len(conns) != 0 {
			return fmt.Errorf("the demoted master still holds pub/sub connections %v", conns)
		}
		return nil
	})
	t.Logf("failover: %d partitions (%d channels) moved to the promoted replica in %d SSUBSCRIBE commands, %v after CLUSTER FAILOVER returned; %d gap reports",
		len(parts), len(chans), commandCalls(t, replica.Addr(), "ssubscribe"), took.Round(time.Millisecond), rec.Reconnects())
}

// Resubscribe (the canary's remedy for a pub/sub that looks alive and
// delivers nothing) replaces the one connection per master; each
// partition is resubscribed in one SSUBSCRIBE and reports its gap.
func TestClusterResubscribe(t *testing.T) {
	srvs := startCluster(t, 3)
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, clusterURL(srvs), rec, withPartitions(8))
	ctx := context.Background()
	var chans []string
	for i := range 50 {
		chans = append(chans, fmt.Sprintf("r%d", i))
	}
	mustSubscribe(t, b, chans...)
	before := make([]int, len(srvs))
	for i, s := range srvs {
		before[i] = commandCalls(t, s.Addr(), "ssubscribe")
	}
	if err := b.Resubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	rec.WaitReconnects(t, len(b.tags))
	brokertest.WaitUntil(t, 15*time.Second, func() error { return b.Ready(ctx) })
	for _, ch := range chans {
		pos := mustPublish(t, b, ch, 1)
		rec.WaitPosition(t, ch, pos)
	}
	for i, s := range srvs {
		parts := len(partitionsOn(t, b, s.Addr()))
		if got := commandCalls(t, s.Addr(), "ssubscribe") - before[i]; got != parts {
			t.Errorf("master %s: %d SSUBSCRIBE commands for %d partitions, want %d", s.Addr(), got, parts, parts)
		}
		if conns := pubsubConns(t, s.Addr()); len(conns) != 1 {
			t.Errorf("master %s holds pub/sub connections %v, want 1", s.Addr(), conns)
		}
	}
}

// deliveryCounter counts deliveries and says when want of them arrived.
type deliveryCounter struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (h *deliveryCounter) HandleMessage(*broker.Message) {
	if h.n.Add(1) == h.want {
		close(h.done)
	}
}
func (h *deliveryCounter) HandleReconnect() {}

// BenchmarkClusterDelivery publishes from parallel goroutines on 64
// channels spread over a 3-master cluster, this node subscribed to all,
// and counts until every message came back through pub/sub: the
// publish-to-delivery rate of the Cluster path.
func BenchmarkClusterDelivery(b *testing.B) {
	srvs := startCluster(b, 3)
	h := &deliveryCounter{done: make(chan struct{})}
	br := newTestBroker(b, clusterURL(srvs), h)
	ctx := context.Background()
	chans := make([]string, 64)
	for i := range chans {
		chans[i] = fmt.Sprintf("bench%d", i)
	}
	if err := br.Subscribe(ctx, chans...); err != nil {
		b.Fatal(err)
	}
	h.want = int64(b.N)
	var next atomic.Int64
	r := broker.Retention{Size: 100}
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ch := chans[next.Add(1)%int64(len(chans))]
			if _, err := br.Publish(ctx, ch, benchData, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		b.Fatalf("%d of %d messages delivered", h.n.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}
