package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
)

// benchWriter is a ResponseWriter that keeps the last answer: the
// benchmark measures the handler, not a socket or a recorder's growth.
type benchWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *benchWriter) Header() http.Header         { return w.header }
func (w *benchWriter) WriteHeader(status int)      { w.status = status }
func (w *benchWriter) Write(p []byte) (int, error) { return w.body.Write(p) }

func (w *benchWriter) reset() {
	clear(w.header)
	w.status = http.StatusOK
	w.body.Reset()
}

// BenchmarkPublish measures POST /api/publish through the whole Echo
// handler (routing, the loopback check, JSON validation, the memory broker,
// metrics, the answer) on a real node with no subscribers, as `herald serve`
// wires it. The request and writer are reused, so allocs/op is the
// server's own per-request work above net/http.
func BenchmarkPublish(b *testing.B) {
	node := push.NewNode(push.Options{Node: "bench", Heartbeat: time.Hour, StatsInterval: time.Hour, CanaryInterval: time.Hour})
	br := broker.NewMemory(node)
	node.Start(context.Background(), br)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = node.Close(ctx, push.CloseGoingAway, "bench over")
		_ = br.Close(ctx)
	})
	h := New(Options{Node: node, Metrics: NewMetrics(node)}).Handler()

	const body = `{"channel":"bench","data":{"t":1,"n":2}}`
	var rd strings.Reader
	req, err := http.NewRequest(http.MethodPost, "/api/publish", io.NopCloser(&rd))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "127.0.0.1:40000" // no api_key: loopback only
	req.Host = "localhost"             // and a loopback Host (keyless.go)
	w := &benchWriter{header: http.Header{}}
	serve := func() {
		rd.Reset(body)
		w.reset()
		h.ServeHTTP(w, req)
	}

	serve()
	if w.status != http.StatusOK || !strings.HasPrefix(w.body.String(), `{"channel":"bench","epoch":"`) {
		b.Fatalf("answer %d %q", w.status, w.body.String())
	}
	b.ReportAllocs()
	for b.Loop() {
		serve()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
