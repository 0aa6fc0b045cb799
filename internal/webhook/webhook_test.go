package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
)

// queueEvents records n join events of users u0..u(n-1) in h's queue, as
// the presence store does on transitions.
func queueEvents(t *testing.T, st broker.Presence, h Hook, n int) {
	t.Helper()
	for i := range n {
		_, err := st.PresenceJoin(context.Background(), broker.PresenceOp{
			Set: "ch:room", Key: broker.UserKey(fmt.Sprintf("u%d", i)), Conn: fmt.Sprintf("c%d", i), TTL: time.Minute,
			Event: &broker.Event{Type: "join", Channel: "room", IDPrefix: fmt.Sprintf("e%d", i), Time: time.Now(), Queues: []string{h.Queue()}, MaxLen: 1000},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func startSender(t *testing.T, opts Options) *Sender {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

// A receiver that fails its first answers gets every event afterwards, in
// order, in signed batches of at most Batch.
func TestRetriedUntilDelivered(t *testing.T) {
	var mu sync.Mutex
	var got []string
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) <= 3 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get(SignatureHeader) != Sign("s3cret", body) || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var batch []broker.EventJSON
		if err := json.Unmarshal(body, &batch); err != nil || len(batch) > 4 {
			http.Error(w, "bad batch", http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, e := range batch {
			got = append(got, e.User)
		}
		mu.Unlock()
	}))
	defer srv.Close()
	m := broker.NewMemory(brokertest.NewRecorder())
	defer m.Close(context.Background())
	h := Hook{URL: srv.URL, Secret: "s3cret", Events: []string{"join"}}
	queueEvents(t, m, h, 10)
	s := startSender(t, Options{Hooks: []Hook{h}, Store: m, Batch: 4, MaxBackoff: 50 * time.Millisecond, Poll: 10 * time.Millisecond})
	brokertest.WaitUntil(t, brokertest.WaitTimeout, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < 10 {
			return fmt.Errorf("%d of 10 delivered", len(got))
		}
		return nil
	})
	if fmt.Sprint(got) != "[u0 u1 u2 u3 u4 u5 u6 u7 u8 u9]" {
		t.Fatalf("delivered %v", got)
	}
	st := s.Stats(context.Background())[0]
	if st.Sent != 10 || st.FailedAttempts != 3 || st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Events the receiver refuses for longer than Retry are given up, counted.
func TestGivenUpAfterRetry(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer srv.Close()
	m := broker.NewMemory(brokertest.NewRecorder())
	defer m.Close(context.Background())
	h := Hook{URL: srv.URL, Secret: "x", Events: []string{"join"}}
	queueEvents(t, m, h, 3)
	s := startSender(t, Options{Hooks: []Hook{h}, Store: m, Retry: 200 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Poll: 10 * time.Millisecond})
	brokertest.WaitUntil(t, brokertest.WaitTimeout, func() error {
		if st := s.Stats(context.Background())[0]; st.Expired != 3 || st.Queued != 0 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		h    Hook
		want string
	}{
		{Hook{URL: "ftp://x", Secret: "s", Events: []string{"join"}}, "http"},
		{Hook{URL: "http://x", Events: []string{"join"}}, "secret"},
		{Hook{URL: "http://x", Secret: "s"}, "no events"},
		{Hook{URL: "http://x", Secret: "s", Events: []string{"joined"}}, "unknown event"},
	} {
		if err := tc.h.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.h, err, tc.want)
		}
	}
	h := Hook{URL: "http://x", Secret: "s", Events: []string{"online"}}
	if _, err := New(Options{Hooks: []Hook{h, h}, Store: broker.NewMemory(brokertest.NewRecorder())}); err == nil {
		t.Error("a hook listed twice was accepted")
	}
	// The RFC 4231-style known answer of HMAC-SHA256.
	if got := Sign("key", []byte("The quick brown fox jumps over the lazy dog")); got != "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8" {
		t.Errorf("Sign = %s", got)
	}
}
