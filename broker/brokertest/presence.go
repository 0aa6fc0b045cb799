package brokertest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// RunPresence runs the broker.Presence contract against p. Sets and
// queues are named after the test so that runs on one server do not meet.
func RunPresence(t *testing.T, p broker.Presence) {
	ctx := context.Background()
	set := t.Name() + ":room"
	queue := t.Name() + ":q"
	ev := func(typ string) *broker.Event {
		return &broker.Event{Type: typ, Channel: "room", IDPrefix: typ + broker.NewEpoch()[:8], Time: time.Now(), Queues: []string{queue}, MaxLen: 100}
	}
	op := func(key, conn string) broker.PresenceOp {
		return broker.PresenceOp{Set: set, Key: key, Conn: conn, Value: []byte(`{"k":"` + key + `"}`), TTL: time.Minute}
	}
	must := func(ok bool, err error, want bool, what string) {
		t.Helper()
		if err != nil || ok != want {
			t.Fatalf("%s = %v, %v; want %v", what, ok, err, want)
		}
	}

	// A user is counted once however many connections it has; only the
	// first join and the last leave are transitions, and only they record.
	a1, a2 := op(broker.UserKey("alice"), "n1-1"), op(broker.UserKey("alice"), "n2-7")
	a1.Event, a2.Event = ev("join"), ev("join")
	ok, err := p.PresenceJoin(ctx, a1)
	must(ok, err, true, "first join")
	ok, err = p.PresenceJoin(ctx, a2)
	must(ok, err, false, "second connection's join")
	ok, err = p.PresenceJoin(ctx, a1)
	must(ok, err, false, "repeated join of one connection")
	anon := op("c:n1-2", "n1-2")
	anon.Event = ev("join")
	ok, err = p.PresenceJoin(ctx, anon)
	must(ok, err, true, "anonymous join")
	if n, err := p.PresenceCount(ctx, set); err != nil || n != 2 {
		t.Fatalf("count = %d, %v; want 2 (alice once, one anonymous)", n, err)
	}
	a1.Event, a2.Event = ev("leave"), ev("leave")
	ok, err = p.PresenceLeave(ctx, a1)
	must(ok, err, false, "leave of one of two connections")
	ok, err = p.PresenceLeave(ctx, a1)
	must(ok, err, false, "repeated leave")
	ok, err = p.PresenceLeave(ctx, a2)
	must(ok, err, true, "last leave")
	events := queued(t, p, queue)
	if len(events) != 2 || events[0].Type != "join" || events[1].Type != "leave" || events[0].User != "alice" || events[0].Channel != "room" || events[0].ID == events[1].ID || events[0].Time == "" {
		t.Fatalf("queued events %+v; want alice's join then leave (anonymous keys record none)", events)
	}
	if err := p.QueueTrim(ctx, queue, "nobody", 1); err != broker.ErrLeaseLost {
		t.Fatalf("trim without the lease: %v", err)
	}

	// Pages walk the keys in byte order, each once.
	for i := range 25 {
		if _, err := p.PresenceJoin(ctx, op(broker.UserKey(fmt.Sprintf("u%02d", i)), fmt.Sprintf("x-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	cursor := ""
	for {
		page, more, err := p.PresencePage(ctx, set, cursor, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			seen = append(seen, e.Key)
			if string(e.Value) != `{"k":"`+e.Key+`"}` {
				t.Fatalf("value of %s = %q", e.Key, e.Value)
			}
		}
		if !more {
			break
		}
		cursor = page[len(page)-1].Key
	}
	if len(seen) != 26 || seen[0] != "c:n1-2" || seen[1] != "u:u00" || seen[25] != "u:u24" {
		t.Fatalf("pages = %v", seen)
	}

	// A refresh renews what is there and adds nothing.
	missing, err := p.PresenceRefresh(ctx, set, []string{"x-1", "gone"}, time.Minute)
	if err != nil || len(missing) != 1 || missing[0] != "gone" {
		t.Fatalf("refresh missing = %v, %v", missing, err)
	}

	// A connection whose node stopped refreshing expires; the reap that
	// finds it makes the leave, once.
	short := op(broker.UserKey("bob"), "dead-1")
	short.TTL = 50 * time.Millisecond
	ok, err = p.PresenceJoin(ctx, short)
	must(ok, err, true, "bob's join")
	var gone []broker.PresenceEntry
	WaitUntil(t, WaitTimeout, func() error {
		g, err := p.PresenceReap(ctx, set, 0, ev("leave"))
		if err != nil {
			return err
		}
		gone = append(gone, g...)
		if len(gone) == 0 {
			return errString("bob not reaped yet")
		}
		return nil
	})
	if len(gone) != 1 || gone[0].Key != "u:bob" {
		t.Fatalf("reaped %+v", gone)
	}
	if g, err := p.PresenceReap(ctx, set, 0, ev("leave")); err != nil || len(g) != 0 {
		t.Fatalf("second reap %+v, %v", g, err)
	}

	// With a linger, a key whose last connection left stays a member: a
	// reconnect in time is no transition; past the linger, a reap makes one.
	users := t.Name() + ":users"
	u := broker.PresenceOp{Set: users, Key: broker.UserKey("carol"), Conn: "n1-9", TTL: time.Minute, Linger: 200 * time.Millisecond}
	u.Event = ev("online")
	ok, err = p.PresenceJoin(ctx, u)
	must(ok, err, true, "online")
	u.Event = nil
	ok, err = p.PresenceLeave(ctx, u)
	must(ok, err, false, "leave with a linger")
	if n, _ := p.PresenceCount(ctx, users); n != 1 {
		t.Fatalf("lingering count = %d", n)
	}
	u.Conn = "n2-3"
	ok, err = p.PresenceJoin(ctx, u)
	must(ok, err, false, "reconnect within the linger")
	ok, err = p.PresenceLeave(ctx, u)
	must(ok, err, false, "leave again")
	WaitUntil(t, WaitTimeout, func() error {
		g, err := p.PresenceReap(ctx, users, u.Linger, ev("offline"))
		if err != nil {
			return err
		}
		if len(g) == 0 {
			return errString("carol still lingering")
		}
		return nil
	})
	if n, _ := p.PresenceCount(ctx, users); n != 0 {
		t.Fatalf("count after offline = %d", n)
	}

	// The queue keeps every transition in order; a lease holder trims.
	events = queued(t, p, queue)
	var types []string
	for _, e := range events {
		types = append(types, e.Type+":"+e.User)
	}
	if fmt.Sprint(types) != "[join:alice leave:alice leave:bob online:carol offline:carol]" {
		t.Fatalf("queue = %v", types)
	}
	if ok, err := p.QueueLease(ctx, queue, "me", time.Minute); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	if ok, err := p.QueueLease(ctx, queue, "other", time.Minute); err != nil || ok {
		t.Fatalf("a second owner got the lease: %v %v", ok, err)
	}
	if err := p.QueueTrim(ctx, queue, "me", 2); err != nil {
		t.Fatal(err)
	}
	if st, err := p.QueueStats(ctx, queue); err != nil || st.Len != 3 {
		t.Fatalf("stats %+v, %v", st, err)
	}

	// A batch applies in order, each op's transition reported as alone.
	other := t.Name() + ":batch"
	j := func(key, conn string, leave bool) broker.PresenceOp {
		return broker.PresenceOp{Leave: leave, Set: other, Key: key, Conn: conn, TTL: time.Minute}
	}
	res, err := p.PresenceApply(ctx, []broker.PresenceOp{
		j("u:x", "1", false), j("u:x", "2", false), j("u:y", "3", false), j("", "1", true), j("", "2", true), op("u:z", "9"),
	})
	if err != nil || fmt.Sprint(res) != "[true false true false true true]" {
		t.Fatalf("PresenceApply = %v, %v", res, err)
	}
	if n, _ := p.PresenceCount(ctx, other); n != 1 {
		t.Fatalf("count after the batch = %d, want 1 (y)", n)
	}

	// The bound drops and counts.
	full := t.Name() + ":full"
	for i := range 3 {
		e := ev("join")
		e.Queues, e.MaxLen = []string{full}, 2
		o := op(broker.UserKey(fmt.Sprintf("f%d", i)), fmt.Sprintf("f-%d", i))
		o.Event = e
		if _, err := p.PresenceJoin(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := p.QueueStats(ctx, full); err != nil || st.Len != 2 || st.Dropped != 1 {
		t.Fatalf("bounded queue stats %+v, %v", st, err)
	}
}

func queued(t *testing.T, p broker.Presence, queue string) []broker.EventJSON {
	t.Helper()
	raw, err := p.QueuePeek(context.Background(), queue, 100)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]broker.EventJSON, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			t.Fatalf("event %q: %v", r, err)
		}
	}
	return out
}
