package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/heraldpush/herald/internal/bench"
	"github.com/heraldpush/herald/push"
)

// Feeds: max_rate per subscription and conflate: true namespaces, end to
// end (issue 16 items 1, 2, 6).

// publishBurst publishes n messages {"i": k} on channel through the node
// as fast as it takes them and returns the last offset.
func publishBurst(t testing.TB, n *testNode, channel string, count int) uint64 {
	t.Helper()
	var last uint64
	for k := range count {
		pos, err := n.core.Publish(context.Background(), push.Publication{Channel: channel, Data: json.RawMessage(`{"i":` + strconv.Itoa(k) + `}`)})
		if err != nil {
			t.Fatal(err)
		}
		last = pos.Offset
	}
	return last
}

// checkSkipped fails unless offsets only go up from "from", each jump
// matching its message's "skipped", and returns the total skipped.
func checkSkipped(t testing.TB, fs []frame, from uint64) (skipped uint64) {
	t.Helper()
	for _, f := range fs {
		if f.Offset <= from {
			t.Fatalf("offset %d after %d: an old message after a newer one", f.Offset, from)
		}
		if f.Skipped != f.Offset-from-1 {
			t.Fatalf("offset %d after %d with skipped %d: %s", f.Offset, from, f.Skipped, f)
		}
		skipped += f.Skipped
		from = f.Offset
	}
	return skipped
}

// TestMaxRateOverWSAndSSE: a burst to max_rate subscribers on /ws (the
// subscribe frame and the query) and /sse arrives capped, newest last,
// with "skipped"; a plain subscriber gets all of it; bad values are
// refused.
func TestMaxRateOverWSAndSSE(t *testing.T) {
	n := startTestNode(t, historyConfig())
	frameSub := n.dial("")
	frameSub.welcome()
	frameSub.send(map[string]any{"type": "subscribe", "channel": "hist:t", "max_rate": 2})
	frameSub.expect("subscribed")
	querySub := n.dial(query("channel", "hist:t", "max_rate", "2"))
	querySub.welcome()
	querySub.expect("subscribed")
	plain := n.dial(query("channel", "hist:t"))
	plain.welcome()
	plain.expect("subscribed")
	sse := n.openSSE("channel=hist:t&max_rate=2", "")
	sse.next("subscribed")

	start := time.Now()
	last := publishBurst(t, n, "hist:t", 200)
	for name, c := range map[string]*wsClient{"subscribe frame": frameSub, "query": querySub} {
		var got []frame
		for len(got) == 0 || got[len(got)-1].Offset < last {
			got = append(got, c.expect("message"))
		}
		skipped := checkSkipped(t, got, 0)
		if limit := 2 + int(time.Since(start)/(500*time.Millisecond)); len(got) > limit || skipped == 0 {
			t.Fatalf("%s: %d messages, %d skipped in %v at max_rate 2", name, len(got), skipped, time.Since(start))
		}
	}
	var all []frame
	for len(all) == 0 || all[len(all)-1].Offset < last {
		all = append(all, plain.expect("message"))
	}
	if len(all) != int(last) || checkSkipped(t, all, 0) != 0 {
		t.Fatalf("plain subscriber: %d messages of %d", len(all), last)
	}
	var events []frame
	for len(events) == 0 || events[len(events)-1].Offset < last {
		ev := sse.next("message")
		var f frame
		decodeJSON(t, []byte(ev.Data), &f)
		f.Raw = []byte(ev.Data)
		if want := fmt.Sprintf(":%d", f.Offset); !strings.HasSuffix(ev.ID, want) {
			t.Fatalf("SSE id %q for offset %d: a resume must start after it", ev.ID, f.Offset)
		}
		events = append(events, f)
	}
	if skipped := checkSkipped(t, events, 0); skipped == 0 {
		t.Fatalf("SSE at max_rate 2: %d events, none skipped", len(events))
	}

	r := n.openSSE("channel=hist:t&max_rate=-3", "")
	var body apiErrorBody
	if r.resp.StatusCode != http.StatusBadRequest || json.NewDecoder(r.resp.Body).Decode(&body) != nil || body.Error.Code != "bad_request" {
		t.Fatalf("/sse max_rate=-3: HTTP %d %q, want 400 bad_request", r.resp.StatusCode, body.Error.Code)
	}
	bad := n.dial(query("channel", "hist:t", "max_rate", "lots"))
	bad.welcome()
	if f := bad.expectError("bad_request"); f.Channel != "hist:t" || !strings.Contains(f.Message, "max_rate") {
		t.Fatalf("query max_rate=lots: %s", f)
	}
}

// TestBrowserTickerOnThrottledLink: the stock ticker in Chromium behind a
// link of 8 KB/s, while the feed publishes far more than that. The
// conflating stocks namespace keeps the board connected and showing the
// latest prices; without conflation the same client is closed 4001.
func TestBrowserTickerOnThrottledLink(t *testing.T) {
	requireE2E(t, true)
	cfg := demoConfig()
	// Small buffers everywhere, so that the link, not a kernel buffer,
	// is what the node sees, and the backlog drains in seconds.
	cfg.MaxQueueBytes = 16 << 10
	cfg.SendBuffer = 4 << 10
	n := startTestNode(t, cfg)
	link := newSlowLink(t, n.addr, 8<<10)
	symbols := []string{"AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA", "META", "NFLX"}
	flood := func(final string) {
		pad := strings.Repeat("x", 900)
		end := time.Now().Add(4 * time.Second)
		tk := time.NewTicker(5 * time.Millisecond) // the feed's pace, not a wait
		defer tk.Stop()
		for i := 0; time.Now().Before(end); i++ {
			for _, sym := range symbols {
				price := 100 + float64(i%500)/10
				data := fmt.Sprintf(`{"symbol":%q,"price":%.2f,"open":100,"change":%.2f,"pct":0,"volume":%d,"pad":%q}`, sym, price, price-100, i, pad)
				if _, err := n.core.Publish(context.Background(), push.Publication{Channel: "stocks:" + sym, Data: json.RawMessage(data)}); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
			<-tk.C
		}
		// The price the board must end up showing.
		if _, err := n.core.Publish(context.Background(), push.Publication{Channel: "stocks:AAPL", Data: json.RawMessage(final)}); err != nil {
			t.Errorf("publish: %v", err)
		}
	}
	for _, sym := range symbols {
		// The snapshot each card starts from.
		data := fmt.Sprintf(`{"symbol":%q,"price":100,"open":100,"change":0,"pct":0}`, sym)
		if _, err := n.core.Publish(context.Background(), push.Publication{Channel: "stocks:" + sym, Data: json.RawMessage(data)}); err != nil {
			t.Fatal(err)
		}
	}
	before := n.core.Rejections()["slow_consumer"]
	runScript(t, "ticker-throttled.mjs", map[string]func(){
		"flood": func() {
			flood(`{"symbol":"AAPL","name":"Apple","price":4321.09,"open":100,"change":4221.09,"pct":4221.09,"volume":1}`)
			waitFor(t, 10*time.Second, "the board's session to fall behind", func() bool { return n.core.Snapshot().Conflated > 0 })
		},
	}, "http://"+link.addr())
	if got := n.core.Rejections()["slow_consumer"] - before; got != 0 {
		t.Fatalf("%d slow-consumer closes with the stocks namespace conflating", got)
	}
	t.Logf("skipped %d messages, %d conflation spells", n.core.Snapshot().Skipped, n.core.Snapshot().Conflated)

	// The same link, a namespace that does not conflate: closed 4001.
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+link.addr()+"/ws?channel=sports:slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	c := &wsClient{t: t, conn: conn, timeout: readTimeout}
	c.welcome()
	c.expect("subscribed")
	done := make(chan struct{})
	go func() {
		defer close(done)
		data := json.RawMessage(`"` + strings.Repeat("x", 1000) + `"`)
		tk := time.NewTicker(time.Millisecond) // the feed's pace, not a wait
		defer tk.Stop()
		for end := time.Now().Add(30 * time.Second); n.core.Rejections()["slow_consumer"] == before && time.Now().Before(end); <-tk.C {
			if _, err := n.core.Publish(context.Background(), push.Publication{Channel: "sports:slow", Data: data}); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
		}
	}()
	c.timeout = 60 * time.Second
	c.expectClose(push.CloseSlowConsumer)
	<-done
}

// TestBrowserDanmakuDensity: a flood of comments over the stage's
// max_rate shows as "N comments/s skipped", and the stage gets only its
// rate of them.
func TestBrowserDanmakuDensity(t *testing.T) {
	requireE2E(t, true)
	n := startTestNode(t, demoConfig())
	runScript(t, "danmaku-density.mjs", map[string]func(){
		"flood": func() {
			for i := range 60 {
				data := fmt.Sprintf(`{"text":"flood %d","color":"#ffffff","user":"bot"}`, i)
				if _, err := n.core.Publish(context.Background(), push.Publication{Channel: "danmaku:demo", Data: json.RawMessage(data)}); err != nil {
					t.Fatal(err)
				}
			}
		},
	}, n.base)
}

// TestBenchMaxRate: herald bench's subscribers with --max-rate get at
// most their rate per channel, and the report accounts for every message:
// delivered or skipped, none lost.
func TestBenchMaxRate(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the load generator's connections are linux-only (epoll)")
	}
	n := startTestNode(t, testConfig())
	cfg := bench.Config{URLs: []string{n.base}, Conns: 20, Channels: 2, Rate: 400, Publishers: 4, Duration: 2 * time.Second, MaxRate: 5}
	rep, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep)
	if rep.ConnsUp != cfg.Conns || rep.Published == 0 {
		t.Fatalf("%d of %d connections up, %d published", rep.ConnsUp, cfg.Conns, rep.Published)
	}
	if rep.Lost != 0 || rep.Missing != 0 || rep.Duplicates != 0 || rep.Skipped == 0 {
		t.Fatalf("lost %d, missing %d, duplicates %d, skipped %d: want every message delivered or skipped", rep.Lost, rep.Missing, rep.Duplicates, rep.Skipped)
	}
	// Each connection: at most max_rate a second over the run (and the
	// first at once, and the last after the end).
	perConn := float64(rep.Delivered) / float64(rep.ConnsUp)
	if limit := cfg.MaxRate*(rep.Seconds+1) + 2; perConn > limit {
		t.Fatalf("%.1f messages per connection in %.1fs at max_rate %g", perConn, rep.Seconds, cfg.MaxRate)
	}
}
