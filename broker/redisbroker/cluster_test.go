package redisbroker

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
)

// startCluster starts n redis-servers in cluster mode (masters only),
// splits the slots between them and waits until every node reports the
// cluster ok.
func startCluster(t *testing.T, n int) []*brokertest.RedisServer {
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

func waitClusterOK(t *testing.T, srvs []*brokertest.RedisServer) {
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

// Each partition's pub/sub connection goes to the node owning its slot,
// so that sharded subscriptions are accepted and spread over the cluster.
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
	// And the publishes ran on every master.
	for _, s := range srvs {
		calls := infoField(admin(t, s.Addr()).Info(ctx, "commandstats").Val(), "cmdstat_evalsha")
		if !strings.HasPrefix(calls, "calls=") || strings.HasPrefix(calls, "calls=0,") {
			t.Errorf("node %s ran no publish script: %q", s.Addr(), calls)
		}
	}
}

// A cluster node that dies and comes back: calls for its channels fail
// fast meanwhile, then its partitions reconnect and deliver again, each
// resubscribing all its channels in one SSUBSCRIBE (issue 14 item 5:
// O(partitions) commands, not O(channels)).
func TestClusterNodeRestart(t *testing.T) {
	srvs := startCluster(t, 3)
	rec := brokertest.NewRecorder()
	b := newTestBroker(t, clusterURL(srvs), rec, withPartitions(8))
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
	for i := range 240 {
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

	srvs[2].Kill()
	expectUnavailable(t, "Publish on the dead node", func(ctx context.Context) error {
		_, err := b.Publish(ctx, onDead, data(2), retain)
		return err
	})
	srvs[2].Restart()
	waitClusterOK(t, srvs)
	rec.WaitReconnects(t, 1)
	// Every partition of the node resubscribed, not only the first one
	// back: a publish before its resubscription would not be delivered.
	brokertest.WaitUntil(t, 15*time.Second, func() error { return b.Ready(ctx) })
	for _, ch := range []string{onDead, onLive} {
		var pos broker.Position
		// Until go-redis has seen the node back, a publish may still fail.
		brokertest.WaitUntil(t, 10*time.Second, func() (err error) {
			pos, err = b.Publish(ctx, ch, data(3), retain)
			return err
		})
		rec.WaitPosition(t, ch, pos)
	}
	// The restarted process counted every SSUBSCRIBE it got: each of its
	// partitions resubscribes all its channels in one command, so the
	// count follows the partitions (at most one retry each), not the
	// channels.
	parts := 0
	for i := range b.tags {
		c, err := b.cluster.MasterForKey(ctx, b.genKeys[i])
		if err != nil {
			t.Fatal(err)
		}
		if c.Options().Addr == srvs[2].Addr() {
			parts++
		}
	}
	stat := infoField(admin(t, srvs[2].Addr()).Info(ctx, "commandstats").Val(), "cmdstat_ssubscribe")
	var calls int
	if _, err := fmt.Sscanf(stat, "calls=%d,", &calls); err != nil {
		t.Fatalf("cmdstat_ssubscribe %q: %v", stat, err)
	}
	if calls == 0 || calls > 2*parts {
		t.Fatalf("the restarted node got %d SSUBSCRIBE commands for its %d partitions (%d channels), want 1 to %d", calls, parts, onDeadCount+1, 2*parts)
	}
	t.Logf("restarted node: %d partitions, %d channels, resubscribed in %d SSUBSCRIBE commands", parts, onDeadCount+1, calls)
}

// Presence keys share one slot, so its scripts run on Redis Cluster too.
func TestPresenceCluster(t *testing.T) {
	url := clusterURL(startCluster(t, 3))
	brokertest.RunPresence(t, newTestBroker(t, url, brokertest.NewRecorder()))
}
