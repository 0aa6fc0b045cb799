package poll

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
)

// serve starts /api/poll of a node on the memory broker, on a real socket.
func serve(t *testing.T, o push.Options) (*push.Node, *httptest.Server) {
	t.Helper()
	o.Node = "t"
	n := push.NewNode(o)
	br := broker.NewMemory(n)
	n.Start(context.Background(), br)
	mux := http.NewServeMux()
	mux.Handle("/api/poll", New(n, nil))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Close(ctx, push.CloseGoingAway, "test over")
		_ = br.Close(ctx)
	})
	return n, srv
}

// timeout=0 answers the position (never the empty one) and a private
// channel without a token 403, every time: the wait starts after the
// subscribe is answered.
func TestPollTimeoutZeroIsDeterministic(t *testing.T) {
	ns := &push.Namespaces{Named: map[string]*push.Namespace{"priv": {Private: true}}}
	n, srv := serve(t, push.Options{Namespaces: ns})
	if _, err := n.Publish(context.Background(), push.Publication{Channel: "news", Data: json.RawMessage(`1`)}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	for i := range 200 {
		resp, err := http.Get(srv.URL + "/api/poll?channel=news&timeout=0")
		if err != nil {
			t.Fatal(err)
		}
		var a pollAnswer
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || a.Epoch == "" || a.Offset != 1 {
			t.Fatalf("poll %d: HTTP %d %+v %v, want the position 1", i, resp.StatusCode, a, err)
		}
		resp, err = http.Get(srv.URL + "/api/poll?channel=priv:x&timeout=0")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("private poll %d without a token: HTTP %d, want 403", i, resp.StatusCode)
		}
	}
}
