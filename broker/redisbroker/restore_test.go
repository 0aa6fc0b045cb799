package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
)

// Issue 12 item 2: after Redis restores an older state, no offset is handed
// out twice in one epoch. Each case publishes to ~800 (with a snapshot at
// ~400 where the mode has snapshots), kills redis-server with SIGKILL,
// restarts it from what it persisted and checks, at the broker level, what
// a reader that was away at 800 (and one at 300) is told, and what the
// next publish gets.
func TestRestoreOlderState(t *testing.T) {
	cases := []struct {
		name string
		args []string
		// snapshot is run at offset 400 ("" for none).
		snapshot string
		// keeps: the data survives whole, so the epoch may stay.
		keeps bool
	}{
		{"AOFAlways", []string{"--appendonly", "yes", "--appendfsync", "always"}, "", true},
		{"AOFEverysec", []string{"--appendonly", "yes", "--appendfsync", "everysec"}, "", false},
		{"RDBSave", []string{"--appendonly", "no"}, "SAVE", false},
		{"RDBBgsave", []string{"--appendonly", "no"}, "BGSAVE", false},
		{"NoPersistence", []string{"--appendonly", "no"}, "", false},
		// CONFIG renamed away: persistence unknown, so not durable.
		{"AOFAlwaysConfigRefused", []string{"--appendonly", "yes", "--appendfsync", "always", "--rename-command", "CONFIG", ""}, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := brokertest.StartRedis(t, brokertest.RedisArgs(tc.args...))
			pub := newTestBroker(t, srv.URL(), brokertest.NewRecorder())
			rec := brokertest.NewRecorder()
			sub := newTestBroker(t, srv.URL(), rec, func(o *Options) { o.Prefix = pub.prefix })
			mustSubscribe(t, sub, "feed")
			var at400, last broker.Position
			for i := 1; i <= 800; i++ {
				last = mustPublish(t, pub, "feed", i)
				if i == 400 {
					at400 = last
					if tc.snapshot != "" {
						snapshot(t, srv, tc.snapshot)
					}
				}
			}
			E := last.Epoch
			if at400.Epoch != E || last.Offset != 800 {
				t.Fatalf("before the kill: %+v then %+v, want one epoch up to 800", at400, last)
			}
			rec.WaitPosition(t, "feed", last)

			srv.Kill()
			srv.Restart()
			rec.WaitReconnects(t, 1)
			brokertest.WaitUntil(t, 10*time.Second, func() error { return pub.Ready(context.Background()) })

			ctx := context.Background()
			if tc.snapshot != "" {
				// The scenario itself: Redis is back at the snapshot.
				if off := admin(t, srv.Addr()).HGet(ctx, pub.names("feed").pos, "offset").Val(); off != "400" {
					t.Fatalf("after the restart Redis holds offset %q, want the snapshot's 400", off)
				}
			}
			away := broker.HistoryQuery{Since: broker.Position{Epoch: E, Offset: 800}, Limit: 1000}
			h800, err := pub.History(ctx, "feed", away)
			if err != nil {
				t.Fatal(err)
			}
			h300, err := pub.History(ctx, "feed", broker.HistoryQuery{Since: broker.Position{Epoch: E, Offset: 300}, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			next := mustPublish(t, pub, "feed", 801)
			if tc.keeps {
				if h800.Position != last || !h800.Complete || len(h800.Messages) != 0 {
					t.Fatalf("since 800 after the restart: %+v, want complete at %+v (nothing lost)", h800, last)
				}
				// History keeps 100: since 300 is trimmed, since 750 whole.
				if h300.Complete || h300.Position != last || len(h300.Messages) != 100 || h300.Messages[0].Offset != 701 {
					t.Fatalf("since 300 after the restart: %d messages, complete %v; want 701-800, not complete", len(h300.Messages), h300.Complete)
				}
				h750, err := pub.History(ctx, "feed", broker.HistoryQuery{Since: broker.Position{Epoch: E, Offset: 750}, Limit: 1000})
				if err != nil || !h750.Complete || len(h750.Messages) != 51 || h750.Messages[0].Offset != 751 {
					t.Fatalf("since 750 after the restart: %+v, %v; want 751-801, complete", h750.Position, err)
				}
				if next != (broker.Position{Epoch: E, Offset: 801}) {
					t.Fatalf("publish after the restart = %+v, want %s:801", next, E)
				}
				return
			}
			for _, h := range []broker.History{h800, h300} {
				if h.Position.Epoch == E || h.Complete || h.Position.Offset != 0 || len(h.Messages) != 0 {
					t.Fatalf("history after restoring older data = %+v, want a new epoch at 0, not complete", h)
				}
			}
			if next.Epoch == E || next.Offset != 1 || next.Epoch != h800.Position.Epoch {
				t.Fatalf("publish after restoring older data = %+v, want %s:1", next, h800.Position.Epoch)
			}
			// The reader away at 800 resumes from the new epoch: told it
			// is not recovered, then it gets the rest in order.
			h, err := pub.History(ctx, "feed", away)
			if err != nil {
				t.Fatal(err)
			}
			if h.Complete || h.Position != next || len(h.Messages) != 1 || h.Messages[0].Offset != 1 {
				t.Fatalf("since the old 800 after a publish = %+v, want not complete, message 1 of %s", h, next.Epoch)
			}
			msgs := rec.WaitPosition(t, "feed", next)
			if m := msgs[len(msgs)-1]; m.Epoch != next.Epoch || m.Offset != 1 {
				t.Fatalf("delivered %s:%d after the restart, want %s:1", m.Epoch, m.Offset, next.Epoch)
			}
		})
	}
}

// snapshot makes redis-server write its RDB file with cmd (SAVE, or
// BGSAVE and wait until the background save finished).
func snapshot(t *testing.T, srv *brokertest.RedisServer, cmd string) {
	t.Helper()
	ctx := context.Background()
	c := admin(t, srv.Addr())
	before := infoInt(t, c.Info(ctx, "persistence").Val(), "rdb_last_save_time")
	if err := c.Do(ctx, cmd).Err(); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	brokertest.WaitUntil(t, 15*time.Second, func() error {
		info := c.Info(ctx, "persistence").Val()
		if infoField(info, "rdb_bgsave_in_progress") != "0" || infoField(info, "rdb_last_bgsave_status") != "ok" {
			return errors.New("background save still running")
		}
		if cmd == "BGSAVE" && infoInt(t, info, "rdb_changes_since_last_save") != 0 && infoInt(t, info, "rdb_last_save_time") == before {
			return errors.New("background save not finished")
		}
		return nil
	})
}

func infoInt(t *testing.T, info, field string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(infoField(info, field), 10, 64)
	if err != nil {
		t.Fatalf("INFO %s: %v", field, err)
	}
	return n
}

// A replica promoted to master may lack writes its old master
// acknowledged, whatever its persistence: a node that reaches it starts
// new epochs, even with AOF always on both.
func TestPromotedReplicaStartsNewEpoch(t *testing.T) {
	aof := brokertest.RedisArgs("--appendonly", "yes", "--appendfsync", "always")
	master := brokertest.StartRedis(t, aof)
	host, port, _ := strings.Cut(master.Addr(), ":")
	replica := brokertest.StartRedis(t, aof, brokertest.RedisArgs("--replicaof", host, port))
	pub := newTestBroker(t, master.URL(), brokertest.NewRecorder())
	var last broker.Position
	for i := 1; i <= 50; i++ {
		last = mustPublish(t, pub, "feed", i)
	}
	ctx := context.Background()
	rc, mc := admin(t, replica.Addr()), admin(t, master.Addr())
	brokertest.WaitUntil(t, 15*time.Second, func() error {
		m := infoField(mc.Info(ctx, "replication").Val(), "master_repl_offset")
		r := rc.Info(ctx, "replication").Val()
		if infoField(r, "master_link_status") != "up" || infoField(r, "slave_repl_offset") != m {
			return fmt.Errorf("replica not caught up: %s", r)
		}
		return nil
	})
	// While it is a replica, the engine refuses to use it: a connection
	// kept open across its promotion would skip the generation check.
	_, err := New(ctx, Options{URL: replica.URL(), Prefix: pub.prefix}, brokertest.NewRecorder())
	if err == nil || !strings.Contains(err.Error(), "not a master") {
		t.Fatalf("New on a replica = %v, want an error saying it is not a master", err)
	}
	master.Kill()
	if err := rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	// A node (re)started against the promoted replica.
	b := newTestBroker(t, replica.URL(), brokertest.NewRecorder(), func(o *Options) { o.Prefix = pub.prefix })
	h, err := b.History(ctx, "feed", broker.HistoryQuery{Since: last, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if h.Position.Epoch == last.Epoch || h.Complete {
		t.Fatalf("history on the promoted replica = %+v, want a new epoch, not complete", h)
	}
}
