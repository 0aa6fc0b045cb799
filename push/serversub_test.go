package push

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

func newServerSubRig(t *testing.T) *Node {
	t.Helper()
	n := NewNode(Options{
		Node: "t", Heartbeat: time.Hour, StatsInterval: time.Hour,
		Namespaces: &Namespaces{Default: Namespace{HistorySize: 10, HistoryTTL: time.Minute, Private: true}},
	})
	b := broker.NewMemory(n)
	n.Start(context.Background(), b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Close(ctx, CloseGoingAway, "test over"); err != nil {
			t.Errorf("close: %v", err)
		}
		_ = b.Close(ctx)
	})
	return n
}

func userSession(n *Node, user string) (*Session, *recorder) {
	rec := newRecorder()
	s := n.NewSession(rec, false)
	rec.s = s
	c := &Claims{}
	c.Subject = user
	s.SetClaims(c)
	s.Open(nil, nil)
	return s, rec
}

// TestSubscribeUserMemory: SubscribeUser through the memory engine
// reaches the user's sessions (and only them), in a private namespace
// the token does not grant.
func TestSubscribeUserMemory(t *testing.T) {
	n := newServerSubRig(t)
	_, alice := userSession(n, "alice")
	_, bob := userSession(n, "bob")
	if err := n.SubscribeUser(context.Background(), "alice", "c"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice subscribed", func() bool { return alice.count("sub ") == 1 })
	if err := n.UnsubscribeUser(context.Background(), "alice", "c"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice unsubscribed", func() bool { return alice.count("unsub") == 1 })
	if bob.count("") != 0 {
		t.Fatalf("bob got %v", bob.frames)
	}
}

// TestServerAndClientSubscribeRace: a server-side subscribe and the
// client's own, at once, make one subscription, never two.
func TestServerAndClientSubscribeRace(t *testing.T) {
	n := newServerSubRig(t)
	n.opts.Namespaces.Default.Private = false
	for i := 0; i < 50; i++ {
		s, rec := userSession(n, "alice")
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); n.subscribe(s, subRequest{channel: "c", server: true}) }()
		go func() { defer wg.Done(); n.Subscribe(s, "1", "c", nil) }()
		wg.Wait()
		if _, _, subs := n.Counts(); subs != 1 {
			t.Fatalf("round %d: %d subscriptions, want 1", i, subs)
		}
		waitFor(t, "the replies", func() bool {
			return rec.count("sub ")+rec.count("error already_subscribed") == 2 || rec.count("sub ") == 1
		})
		s.Release()
		if _, _, subs := n.Counts(); subs != 0 {
			t.Fatalf("round %d: %d subscriptions after release, want 0", i, subs)
		}
	}
}

// TestSubsClaimThenSubscribeUser: a connection subscribed at connect by
// its token's subs claim is subscribed later by SubscribeUser too.
func TestSubsClaimThenSubscribeUser(t *testing.T) {
	n := newServerSubRig(t)
	rec := newRecorder()
	s := n.NewSession(rec, false)
	rec.s = s
	c := &Claims{Subs: []string{"a"}}
	c.Subject = "alice"
	s.SetClaims(c)
	s.Open(nil, nil)
	waitFor(t, "the subs claim", func() bool { return rec.count("sub ") == 1 })
	if err := n.SubscribeUser(context.Background(), "alice", "b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server subscribe", func() bool { return rec.count("sub ") == 2 })
}

// TestServerSubscribeRefusalsAreNotFlood: a server-side subscribe the
// connection cannot take (past max_channels) is answered with an error
// frame, and many of them do not close the connection as a flood: the
// client sent nothing.
func TestServerSubscribeRefusalsAreNotFlood(t *testing.T) {
	n := newServerSubRig(t)
	n.opts.MaxChannels = 1
	s, rec := userSession(n, "alice")
	n.subscribe(s, subRequest{channel: "a", server: true})
	for i := 0; i < 2*maxErrors; i++ {
		n.subscribe(s, subRequest{channel: "b", server: true})
	}
	waitFor(t, "the refusals", func() bool { return rec.count("error "+CodeLimit) == 2*maxErrors })
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed || rec.count("sub ") != 1 {
		t.Fatalf("closed %v, frames %v: want one subscription and the connection open", closed, len(rec.frames))
	}
}
