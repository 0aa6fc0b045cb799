package heraldclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	heraldclient "github.com/heraldpush/herald/clients/go"
	"github.com/heraldpush/herald/internal/e2e"
	"github.com/heraldpush/herald/push"
)

var secret = strings.Repeat("s", 32)

// tokenNode is a node that verifies HS256 tokens and has a "t" namespace.
func tokenNode(t *testing.T) *e2e.Node {
	cfg := e2e.Config()
	cfg.TokenHMACSecret = secret
	cfg.Namespaces = map[string]*push.Namespace{"t": {HistorySize: 10, HistoryTTL: time.Minute}}
	return e2e.Start(t, cfg)
}

func token(t *testing.T, sub string) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, push.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stopped waits for c to stop by itself and returns why.
func stopped(t *testing.T, c *heraldclient.Client) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(e2e.ReadTimeout):
		t.Fatal("the client is still running")
		return nil
	}
}

// A refused token without a TokenFunc ends the client after one attempt.
func TestRefusedTokenStops(t *testing.T) {
	n := tokenNode(t)
	var connecting atomic.Int32
	var final atomic.Pointer[heraldclient.Event]
	c := heraldclient.New(heraldclient.Config{
		URL: "ws://" + n.Addr() + "/ws", Token: "not-a-jwt", MinBackoff: time.Millisecond,
		OnState: func(e heraldclient.Event) {
			switch e.State {
			case heraldclient.Connecting:
				connecting.Add(1)
			case heraldclient.Closed:
				final.Store(&e)
			}
		},
	})
	defer c.Close()
	var ce *heraldclient.CloseError
	if err := stopped(t, c); !errors.As(err, &ce) || ce.Code != 1008 || ce.Reason == "" {
		t.Fatalf("Err() = %v, want a 1008 CloseError with the reason", err)
	}
	if got := connecting.Load(); got != 1 {
		t.Errorf("%d connection attempts, want 1", got)
	}
	if e := final.Load(); e == nil || e.Code != 1008 || e.Err == nil {
		t.Errorf("final event %+v, want Closed with code 1008", e)
	}
	if err := c.Subscribe("t:x", func(heraldclient.Message) {}); !errors.Is(err, heraldclient.ErrClosed) {
		t.Errorf("Subscribe after the end: %v, want ErrClosed", err)
	}
}

// With a TokenFunc, a 1008 is retried with a fresh token; the same
// refused token again ends the client.
func TestTokenFuncAfterRefusal(t *testing.T) {
	n := tokenNode(t)
	good := token(t, "alice")
	var calls atomic.Int32
	got := make(chan heraldclient.Message, 1)
	c := heraldclient.New(heraldclient.Config{
		URL: "ws://" + n.Addr() + "/ws", MinBackoff: time.Millisecond,
		TokenFunc: func(context.Context) (string, error) {
			if calls.Add(1) == 1 {
				return "stale", nil
			}
			return good, nil
		},
	})
	defer c.Close()
	subscribed := make(chan struct{}, 1)
	if err := c.Subscribe("t:x", func(m heraldclient.Message) { got <- m }, heraldclient.SubscribeOptions{
		OnSubscribed: func(string, heraldclient.Position, bool) { subscribed <- struct{}{} },
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-subscribed:
	case <-time.After(e2e.ReadTimeout):
		t.Fatalf("not subscribed after the fresh token (%d TokenFunc calls, Err %v)", calls.Load(), c.Err())
	}
	n.Publish("t:x", "hi")
	select {
	case m := <-got:
		if string(m.Data) != `"hi"` {
			t.Fatalf("message %s", m.Data)
		}
	case <-time.After(e2e.ReadTimeout):
		t.Fatal("no message")
	}

	same := heraldclient.New(heraldclient.Config{
		URL: "ws://" + n.Addr() + "/ws", MinBackoff: time.Millisecond,
		TokenFunc: func(context.Context) (string, error) { return "stale", nil },
	})
	defer same.Close()
	if err := stopped(t, same); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Err() = %v, want the refused token named", err)
	}
}

// A kick (4004) ends the client even with a TokenFunc.
func TestKickStops(t *testing.T) {
	cfg := e2e.Config()
	cfg.TokenHMACSecret = secret
	cfg.APIKey = "k"
	cfg.Namespaces = map[string]*push.Namespace{"t": {}}
	n := e2e.Start(t, cfg)
	good := token(t, "bob")
	c := heraldclient.New(heraldclient.Config{
		URL: "ws://" + n.Addr() + "/ws", MinBackoff: time.Millisecond,
		TokenFunc: func(context.Context) (string, error) { return good, nil },
	})
	defer c.Close()
	subscribed := make(chan struct{}, 1)
	_ = c.Subscribe("t:y", func(heraldclient.Message) {}, heraldclient.SubscribeOptions{
		OnSubscribed: func(string, heraldclient.Position, bool) { subscribed <- struct{}{} },
	})
	select {
	case <-subscribed:
	case <-time.After(e2e.ReadTimeout):
		t.Fatal("not subscribed")
	}
	n.Post(t, "/api/disconnect", `{"user":"bob"}`)
	var ce *heraldclient.CloseError
	if err := stopped(t, c); !errors.As(err, &ce) || ce.Code != 4004 {
		t.Fatalf("Err() = %v, want a 4004 CloseError", err)
	}
}

// A refused subscribe reaches OnError and is dropped; the connection and
// the other subscriptions go on.
func TestSubscribeRefused(t *testing.T) {
	n := tokenNode(t)
	c := heraldclient.New(heraldclient.Config{URL: "ws://" + n.Addr() + "/ws"})
	defer c.Close()
	refused := make(chan *heraldclient.ServerError, 2)
	onError := func(channel string, err *heraldclient.ServerError) { refused <- err }
	_ = c.Subscribe("nope:x", func(heraldclient.Message) {}, heraldclient.SubscribeOptions{OnError: onError})
	_ = c.Subscribe("herald:stats", func(heraldclient.Message) {}, heraldclient.SubscribeOptions{OnError: onError})
	got := make(chan heraldclient.Message, 1)
	subscribed := make(chan struct{}, 1)
	_ = c.Subscribe("t:ok", func(m heraldclient.Message) { got <- m }, heraldclient.SubscribeOptions{
		OnSubscribed: func(string, heraldclient.Position, bool) { subscribed <- struct{}{} },
	})
	codes := map[string]bool{}
	for range 2 {
		select {
		case err := <-refused:
			codes[err.Code] = true
		case <-time.After(e2e.ReadTimeout):
			t.Fatalf("refusals so far: %v", codes)
		}
	}
	if !codes["unknown_namespace"] || !codes["forbidden"] {
		t.Fatalf("refusals %v, want unknown_namespace and forbidden", codes)
	}
	<-subscribed
	n.Publish("t:ok", 1)
	select {
	case <-got:
	case <-time.After(e2e.ReadTimeout):
		t.Fatal("the accepted channel got nothing")
	}
	// Dropped: subscribing again is allowed.
	if err := c.Subscribe("nope:x", func(heraldclient.Message) {}); err != nil {
		t.Fatalf("subscribe again after a refusal: %v", err)
	}
}

// Publisher publishes over HTTP and turns refusals into *APIError with
// the server's code.
func TestPublisher(t *testing.T) {
	cfg := e2e.Config()
	cfg.APIKey = "k"
	cfg.Namespaces = map[string]*push.Namespace{"t": {}}
	n := e2e.Start(t, cfg)
	c := n.Dial(e2e.Query("channel", "t:p"))
	c.Welcome()
	c.Expect("subscribed")
	p := &heraldclient.Publisher{URL: n.URL(), APIKey: "k"}
	pos, err := p.Publish(context.Background(), "t:p", json.RawMessage(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Channel string
		Offset  uint64
	}
	if json.Unmarshal(pos, &got) != nil || got.Channel != "t:p" || got.Offset != 1 {
		t.Fatalf("answer %s, want channel t:p at offset 1", pos)
	}
	c.ExpectMessage("t:p", map[string]int{"n": 1})
	for _, tc := range []struct {
		key, channel, code string
		status             int
	}{{"wrong", "t:p", "unauthorized", 401}, {"k", "nope:x", "unknown_namespace", 400}} {
		_, err := (&heraldclient.Publisher{URL: n.URL(), APIKey: tc.key}).Publish(context.Background(), tc.channel, json.RawMessage(`1`))
		var ae *heraldclient.APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code || ae.Message == "" {
			t.Errorf("publish %s with key %s: %v, want HTTP %d %s", tc.channel, tc.key, err, tc.status, tc.code)
		}
	}
}
