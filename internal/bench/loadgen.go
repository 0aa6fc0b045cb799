// Package bench is the load generator behind "herald bench": lean
// subscribing WebSocket connections and HTTP publishers, reporting
// deliveries per second, latency percentiles, losses and server RSS.
package bench

// The load generator behind "herald bench" (without --check): lean
// subscribing connections (raw WebSocket, read by epoll loops: see
// loadconn_linux.go) and HTTP publishers. Each message carries the
// nanosecond time it was sent, so latency is publish request to frame
// read, end to end. Both ends must share a clock: run it on the server's
// machine or one synchronised with it.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load run.
type Config struct {
	URLs        []string      // server base URLs, http://host:port: connection i goes to URLs[i mod n], publishes to URLs[0]
	Key         string        // publisher API key
	Conns       int           // subscribing connections
	Channels    int           // channels; connection i subscribes to channel i mod Channels
	Rate        int           // messages per second over all channels; 0: as fast as the publishers go
	Batch       int           // messages per request: 1 uses /api/publish, more /api/batch
	Publishers  int           // concurrent HTTP publishers
	Duration    time.Duration // publishing time
	Sources     []net.IP      // local addresses to dial from, in turn; nil: the kernel's choice
	PIDs        []int         // server pids, their RSS summed; none: not read
	PublishOnly bool          // no subscribers
	WSBatch     bool          // connect with batch=1: the server packs queued messages into one frame
	Stalled     int           // subscribers that never read, beside the Conns that do (stalled_linux.go)
	MaxRate     float64       // every subscriber asks for max_rate: at most this many messages/s per channel (0: all)
	Progress    io.Writer     // live progress lines; nil: none
	// Tag names the channels bench.TAG.i; "" picks one at random. Runs
	// given the same tag load the same channels (connections spread over
	// several processes, past one process's file limit).
	Tag string
}

// Report is what a load run measured.
type Report struct {
	Conns       int     `json:"connections"`
	ConnsUp     int     `json:"connections_up"`
	ConnErrors  int     `json:"connection_errors"`
	FirstError  string  `json:"first_error,omitempty"`
	ConnectSecs float64 `json:"connect_seconds"`
	Channels    int     `json:"channels"`
	Seconds     float64 `json:"publish_seconds"`

	Published     uint64  `json:"published"` // messages the server accepted
	PublishErrors uint64  `json:"publish_errors"`
	Requests      uint64  `json:"requests"`
	RequestsPerS  float64 `json:"requests_per_s"`
	PublishPerS   float64 `json:"published_per_s"`
	ReqP50MS      float64 `json:"request_p50_ms"`
	ReqP99MS      float64 `json:"request_p99_ms"`

	Expected      uint64  `json:"expected_deliveries"`
	Delivered     uint64  `json:"delivered"`
	DeliveredPerS float64 `json:"delivered_per_s"`
	Lost          uint64  `json:"lost"`    // offsets jumped within a connection's stream, beyond what "skipped" said
	Missing       uint64  `json:"missing"` // expected but neither received nor skipped (includes lost)
	MaxRate       float64 `json:"max_rate,omitempty"`
	Skipped       uint64  `json:"skipped"`    // messages the server said it skipped (max_rate, conflate)
	Duplicates    uint64  `json:"duplicates"` // offsets at or below one already received
	Closed        int     `json:"closed_by_server"`
	P50MS         float64 `json:"latency_p50_ms"`
	P90MS         float64 `json:"latency_p90_ms"`
	P99MS         float64 `json:"latency_p99_ms"`
	MaxMS         float64 `json:"latency_max_ms"`
	// The slowest delivery of each second of publishing: the worst of
	// them, and how many seconds had one slower than stallMS (a stall).
	WorstSecondMS float64 `json:"worst_second_max_ms"`
	StallSeconds  int     `json:"stall_seconds"`

	ServerRSSBaseMB  float64 `json:"server_rss_before_mb,omitempty"`
	ServerRSSIdleMB  float64 `json:"server_rss_connected_mb,omitempty"`
	ServerRSSEndMB   float64 `json:"server_rss_end_mb,omitempty"`
	ServerCPUSecs    float64 `json:"server_cpu_seconds,omitempty"` // user+system CPU of the --pid servers from connected to end
	RSSPerConnKB     float64 `json:"server_rss_per_connection_kb,omitempty"`
	ClientRSSIdleMB  float64 `json:"client_rss_connected_mb"`
	ClientRSSPerConn float64 `json:"client_rss_per_connection_kb"`

	// With --stalled: how many were up, how many the server closed as
	// slow consumers during the run (its herald_slow_consumer_closes_total,
	// from the first --url), and the peaks of server RSS and of the
	// machine's kernel TCP memory while publishing.
	Stalled         int     `json:"stalled,omitempty"`
	StalledUp       int     `json:"stalled_up,omitempty"`
	StalledClosed   int64   `json:"stalled_closed_by_server,omitempty"`
	ServerRSSPeakMB float64 `json:"server_rss_peak_mb,omitempty"`
	KernelTCPBaseMB float64 `json:"kernel_tcp_before_mb,omitempty"`
	KernelTCPPeakMB float64 `json:"kernel_tcp_peak_mb,omitempty"`
}

func (r *Report) String() string {
	var b strings.Builder
	row := func(k, format string, v ...any) { fmt.Fprintf(&b, "%-26s "+format+"\n", append([]any{k}, v...)...) }
	if r.Conns > 0 {
		row("connections up", "%d / %d (%d errors) in %.1fs", r.ConnsUp, r.Conns, r.ConnErrors, r.ConnectSecs)
		if r.FirstError != "" {
			row("first connection error", "%s", r.FirstError)
		}
	}
	row("channels", "%d", r.Channels)
	row("published", "%d in %.1fs: %.0f msg/s, %.0f req/s (%d errors)", r.Published, r.Seconds, r.PublishPerS, r.RequestsPerS, r.PublishErrors)
	row("request latency", "p50 %.2fms  p99 %.2fms", r.ReqP50MS, r.ReqP99MS)
	if r.Conns > 0 {
		row("delivered", "%d of %d: %.0f/s", r.Delivered, r.Expected, r.DeliveredPerS)
		if r.MaxRate > 0 || r.Skipped > 0 {
			row("skipped", "%d (max_rate %g): %.1f%% of the expected deliveries", r.Skipped, r.MaxRate, 100*float64(r.Skipped)/float64(max(r.Expected, 1)))
		}
		row("losses", "%d lost (gaps), %d missing, %d duplicates, %d closed by server", r.Lost, r.Missing, r.Duplicates, r.Closed)
		row("latency (publish->read)", "p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms", r.P50MS, r.P90MS, r.P99MS, r.MaxMS)
		row("stalls", "%d of the publishing seconds had a delivery over %d ms", r.StallSeconds, stallMS)
		row("client RSS", "%.1f MB connected, %.1f KB per connection", r.ClientRSSIdleMB, r.ClientRSSPerConn)
	}
	if r.Stalled > 0 {
		row("stalled subscribers", "%d of %d up, %d closed by the server as slow consumers", r.StalledUp, r.Stalled, r.StalledClosed)
		row("kernel TCP memory", "%.1f MB before, peak %.1f MB (the whole machine)", r.KernelTCPBaseMB, r.KernelTCPPeakMB)
		if r.ServerRSSPeakMB > 0 {
			row("server RSS peak", "%.1f MB while publishing", r.ServerRSSPeakMB)
		}
	}
	if r.ServerRSSBaseMB > 0 {
		row("server RSS", "%.1f MB before, %.1f MB connected, %.1f MB at end", r.ServerRSSBaseMB, r.ServerRSSIdleMB, r.ServerRSSEndMB)
		if r.ServerCPUSecs > 0 {
			row("server CPU", "%.2f s (user+system) while publishing and delivering", r.ServerCPUSecs)
		}
		if r.Conns > 0 {
			row("server RSS per connection", "%.1f KB", r.RSSPerConnKB)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// histogram counts durations in microseconds, log-linear: exact below
// 1,024µs, then 512 buckets per power of two (0.2% resolution). Adds are
// atomic, so every connection records into one.
type histogram struct {
	counts [40 * 512]atomic.Uint64
	max    atomic.Int64
}

func histIndex(us uint64) int {
	if us < 1024 {
		return int(us)
	}
	shift := bits.Len64(us) - 10
	return min(shift*512+int(us>>shift), len(histogram{}.counts)-1)
}

func histValue(i int) uint64 {
	if i < 1024 {
		return uint64(i)
	}
	shift := i/512 - 1
	return uint64(i-shift*512) << shift
}

func (h *histogram) record(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.counts[histIndex(uint64(us))].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// reset empties h. Adds racing with it may land on either side: fine for
// the per-second figures it serves.
func (h *histogram) reset() {
	for i := range h.counts {
		if h.counts[i].Load() != 0 {
			h.counts[i].Store(0)
		}
	}
	h.max.Store(0)
}

// quantiles returns the durations at qs (ascending, 0-1) in ms.
func (h *histogram) quantiles(qs ...float64) []float64 {
	var total uint64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	out := make([]float64, len(qs))
	if total == 0 {
		return out
	}
	var seen uint64
	j := 0
	for i := range h.counts {
		seen += h.counts[i].Load()
		for j < len(qs) && float64(seen) >= qs[j]*float64(total) {
			out[j] = float64(histValue(i)) / 1000
			j++
		}
	}
	return out
}

// loadRun is shared by a run's connections.
// stallMS: a delivery slower than this is a stall (issue 14 asks for none
// at 60-70k deliveries/s).
const stallMS = 100

type loadRun struct {
	delivered atomic.Uint64
	lost      atomic.Uint64
	skipped   atomic.Uint64
	dups      atomic.Uint64
	closed    atomic.Int64
	latency   histogram
	second    histogram // the latencies since the last progress line
	// secondMax is the slowest delivery since the last progress line, in
	// ns: a stall shows up in its second instead of fading into the
	// run's quantiles.
	secondMax atomic.Int64
}

// record notes one delivery's latency.
func (run *loadRun) record(d time.Duration) {
	run.latency.record(d)
	run.second.record(d)
	for {
		m := run.secondMax.Load()
		if int64(d) <= m || run.secondMax.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// readRSS returns a process's resident set size in bytes from
// /proc/<pid>/status ("self" for this process).
func readRSS(pid string) (uint64, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + pid + "/status")
}

const mb = 1 << 20

// serverCPU sums the user and system CPU seconds of pids from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s, the
// USER_HZ of every Linux); -1 when there are none or one cannot be read.
func serverCPU(pids []int) float64 {
	if len(pids) == 0 {
		return -1
	}
	var ticks uint64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return -1
		}
		// The command name (field 2) may hold spaces: count from its ')'.
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if i < 0 || len(f) < 13 {
			return -1
		}
		u, _ := strconv.ParseUint(f[11], 10, 64)
		s, _ := strconv.ParseUint(f[12], 10, 64)
		ticks += u + s
	}
	return float64(ticks) / 100
}

// Run connects, publishes for the configured duration, waits for the
// deliveries to settle and reports.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("bench: no --url")
	}
	var wsBases []string
	for _, u := range cfg.URLs {
		base, err := url.Parse(strings.TrimRight(u, "/"))
		if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
			return nil, fmt.Errorf("bench: --url %q: want http://host:port", u)
		}
		wsBases = append(wsBases, "ws"+strings.TrimPrefix(base.String(), "http")+"/ws")
	}
	if cfg.Channels < 1 || cfg.Conns < 0 || cfg.Rate < 0 || cfg.Duration <= 0 {
		return nil, errors.New("bench: need --channels >= 1, --conns >= 0, --rate >= 0, --duration > 0")
	}
	cfg.Batch = max(cfg.Batch, 1)
	cfg.Publishers = max(cfg.Publishers, 1)
	if cfg.PublishOnly {
		cfg.Conns = 0
	}
	tag := cfg.Tag
	if tag == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		tag = hex.EncodeToString(b[:])
	}
	chans := make([]string, cfg.Channels)
	for i := range chans {
		chans[i] = fmt.Sprintf("bench.%s.%d", tag, i)
	}
	if cfg.MaxRate < 0 {
		return nil, errors.New("bench: --max-rate must be >= 0")
	}
	rep := &Report{Conns: cfg.Conns, Channels: cfg.Channels, MaxRate: cfg.MaxRate}
	serverRSS := func() float64 { // 0, not reported, if any cannot be read
		var sum uint64
		for _, pid := range cfg.PIDs {
			n, err := readRSS(strconv.Itoa(pid))
			if err != nil {
				return 0
			}
			sum += n
		}
		return float64(sum) / mb
	}
	rep.ServerRSSBaseMB = serverRSS()
	clientBase, _ := readRSS("self")

	run := &loadRun{}
	p, err := newPoller(cfg.Conns)
	if err != nil {
		return nil, err
	}
	defer p.close()
	conns, err := connectAll(ctx, cfg, p, run, wsBases, chans, rep)
	if err != nil {
		return rep, err
	}
	rep.ServerRSSIdleMB = serverRSS()
	cpuStart := serverCPU(cfg.PIDs)
	if rep.ConnsUp > 0 {
		if rep.ServerRSSBaseMB > 0 {
			rep.RSSPerConnKB = (rep.ServerRSSIdleMB - rep.ServerRSSBaseMB) * 1024 / float64(rep.ConnsUp)
		}
		if self, err := readRSS("self"); err == nil {
			rep.ClientRSSIdleMB = float64(self) / mb
			rep.ClientRSSPerConn = (float64(self) - float64(clientBase)) / 1024 / float64(rep.ConnsUp)
		}
	}
	subsPer := make([]uint64, cfg.Channels) // connections up per channel
	for i, c := range conns {
		if c != nil {
			subsPer[i%cfg.Channels]++
		}
	}
	var stalled []int
	var slowBefore int64
	if cfg.Stalled > 0 {
		rep.Stalled = cfg.Stalled
		rep.KernelTCPBaseMB = kernelTCPMemMB()
		slowBefore = slowConsumerCloses(ctx, cfg.URLs[0])
		var err error
		stalled, err = dialStalled(ctx, cfg, wsBases, chans, cfg.Stalled)
		defer closeAll(stalled)
		for _, fd := range stalled {
			if fd >= 0 {
				rep.StalledUp++
			}
		}
		if err != nil && rep.FirstError == "" {
			rep.FirstError = "stalled: " + err.Error()
		}
	}
	// The sampler: peaks of server RSS and kernel TCP memory while
	// publishing (ends when publish returns).
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			rep.ServerRSSPeakMB = max(rep.ServerRSSPeakMB, serverRSS())
			rep.KernelTCPPeakMB = max(rep.KernelTCPPeakMB, kernelTCPMemMB())
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	pub := publish(ctx, cfg, strings.TrimRight(cfg.URLs[0], "/"), chans, run, rep)
	close(stopSampling)
	<-sampled
	if cfg.Stalled > 0 {
		if after := slowConsumerCloses(ctx, cfg.URLs[0]); after >= 0 && slowBefore >= 0 {
			rep.StalledClosed = after - slowBefore
		}
	}
	for i := range chans {
		rep.Expected += pub.perChannel[i].Load() * subsPer[i]
	}
	// Let the deliveries in flight arrive: wait until all are in or the
	// count stops moving for a second.
	last, still := run.delivered.Load(), time.Now()
	for run.delivered.Load() < rep.Expected && time.Since(still) < time.Second && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		if n := run.delivered.Load(); n != last {
			last, still = n, time.Now()
		}
	}
	rep.ServerRSSEndMB = serverRSS()
	if cpuStart >= 0 {
		if end := serverCPU(cfg.PIDs); end >= 0 {
			rep.ServerCPUSecs = end - cpuStart
		}
	}
	if tail := float64(run.secondMax.Swap(0)) / 1e6; tail > 0 { // deliveries after the last second of publishing
		rep.WorstSecondMS = max(rep.WorstSecondMS, tail)
		if tail > stallMS {
			rep.StallSeconds++
		}
	}
	rep.Delivered = run.delivered.Load()
	rep.DeliveredPerS = float64(rep.Delivered) / rep.Seconds
	rep.Lost, rep.Duplicates, rep.Closed = run.lost.Load(), run.dups.Load(), int(run.closed.Load())
	rep.Skipped = run.skipped.Load()
	if got := rep.Delivered - rep.Duplicates + rep.Skipped; rep.Expected > got {
		rep.Missing = rep.Expected - got
	}
	q := run.latency.quantiles(0.5, 0.9, 0.99)
	rep.P50MS, rep.P90MS, rep.P99MS = q[0], q[1], q[2]
	rep.MaxMS = float64(run.latency.max.Load()) / 1e6
	return rep, ctx.Err()
}

// connectAll dials cfg.Conns connections, 64 at a time, connection i to
// wsBases[i mod n], each subscribed to its channel by the URL query, and
// waits for their subscribe replies.
// conns[i] is nil for a connection that failed.
func connectAll(ctx context.Context, cfg Config, p *poller, run *loadRun, wsBases []string, chans []string, rep *Report) ([]*loadConn, error) {
	start := time.Now()
	conns := make([]*loadConn, cfg.Conns)
	var up, failed atomic.Int64
	var firstErr atomic.Value
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(64, cfg.Conns) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				u := wsBases[i%len(wsBases)] + "?channel=" + chans[i%len(chans)]
				if cfg.WSBatch {
					u += "&batch=1"
				}
				if cfg.MaxRate > 0 {
					u += "&max_rate=" + strconv.FormatFloat(cfg.MaxRate, 'g', -1, 64)
				}
				c, err := dialLoad(ctx, cfg, p, run, u, i)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				conns[i] = c
				up.Add(1)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range cfg.Conns {
			select {
			case work <- i:
			case <-ctx.Done():
				close(work)
				return
			}
		}
		close(work)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "connecting: %d up, %d failed of %d\n", up.Load(), failed.Load(), cfg.Conns)
			}
		}
	}
	wg.Wait()
	rep.ConnsUp, rep.ConnErrors = int(up.Load()), int(failed.Load())
	if e, ok := firstErr.Load().(string); ok {
		rep.FirstError = e
	}
	rep.ConnectSecs = time.Since(start).Seconds()
	if cfg.Progress != nil && cfg.Conns > 0 {
		fmt.Fprintf(cfg.Progress, "connected: %d up, %d failed in %.1fs\n", rep.ConnsUp, rep.ConnErrors, rep.ConnectSecs)
	}
	return conns, ctx.Err()
}

type pubResult struct {
	perChannel []atomic.Uint64 // messages accepted per channel
}

// publish sends messages for cfg.Duration at cfg.Rate from cfg.Publishers
// workers, printing a progress line each second.
func publish(ctx context.Context, cfg Config, base string, chans []string, run *loadRun, rep *Report) *pubResult {
	res := &pubResult{perChannel: make([]atomic.Uint64, len(chans))}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Publishers, MaxConnsPerHost: cfg.Publishers},
	}
	defer client.CloseIdleConnections()
	endpoint := base + "/api/publish"
	if cfg.Batch > 1 {
		endpoint = base + "/api/batch"
	}
	var reqs, errs, published atomic.Uint64
	var reqLatency histogram
	var seq atomic.Uint64
	// tokens carries one request's worth of messages each; nil when Rate
	// is 0 (the workers go flat out).
	var tokens chan struct{}
	if cfg.Rate > 0 {
		tokens = make(chan struct{}, cfg.Publishers*4)
	}
	pctx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	var wg sync.WaitGroup
	for range cfg.Publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body bytes.Buffer
			idx := make([]int, cfg.Batch)
			for {
				if tokens != nil {
					select {
					case <-tokens:
					case <-pctx.Done():
						return
					}
				} else if pctx.Err() != nil {
					return
				}
				body.Reset()
				now := time.Now().UnixNano()
				if cfg.Batch > 1 {
					body.WriteString(`{"messages":[`)
				}
				for k := range cfg.Batch {
					n := seq.Add(1)
					idx[k] = int(n % uint64(len(chans)))
					if k > 0 {
						body.WriteByte(',')
					}
					fmt.Fprintf(&body, `{"channel":%q,"data":{"t":%d,"n":%d}}`, chans[idx[k]], now, n)
				}
				if cfg.Batch > 1 {
					body.WriteString(`]}`)
				}
				req, err := http.NewRequestWithContext(ctx, "POST", endpoint, bytes.NewReader(body.Bytes()))
				if err != nil {
					errs.Add(1)
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				if cfg.Key != "" {
					req.Header.Set("Authorization", "Bearer "+cfg.Key)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				reqs.Add(1)
				if err != nil {
					errs.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				reqLatency.record(time.Since(t0))
				if resp.StatusCode != http.StatusOK {
					errs.Add(1)
					continue
				}
				for _, i := range idx {
					res.perChannel[i].Add(1)
				}
				published.Add(uint64(cfg.Batch))
			}
		}()
	}
	start := time.Now()
	if tokens != nil {
		// Pace requests: every 5ms, release what the rate allows so far.
		go func() {
			t := time.NewTicker(5 * time.Millisecond)
			defer t.Stop()
			sent := 0
			for {
				select {
				case <-pctx.Done():
					return
				case now := <-t.C:
					due := int(now.Sub(start).Seconds()*float64(cfg.Rate)) / cfg.Batch
					for ; sent < due; sent++ {
						select {
						case tokens <- struct{}{}:
						case <-pctx.Done():
							return
						}
					}
				}
			}
		}()
	}
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var lastPub, lastDel uint64
	lastT := start
	// line takes the figures since the previous line (the slowest
	// delivery of the second counts toward the stalls) and prints them.
	line := func(now time.Time) {
		p, d := published.Load(), run.delivered.Load()
		secs := now.Sub(lastT).Seconds()
		worst := float64(run.secondMax.Swap(0)) / 1e6
		rep.WorstSecondMS = max(rep.WorstSecondMS, worst)
		if worst > stallMS {
			rep.StallSeconds++
		}
		lastT = now
		if cfg.Progress == nil {
			return
		}
		q := run.latency.quantiles(0.99)
		sq := run.second.quantiles(0.99)
		run.second.reset()
		fmt.Fprintf(cfg.Progress, "%3.0fs  published %7.0f/s  delivered %9.0f/s  max %7.2fms  p99 %7.2fms  p99 so far %7.2fms  lost %d  errors %d\n",
			now.Sub(start).Seconds(), float64(p-lastPub)/secs, float64(d-lastDel)/secs, worst, sq[0], q[0], run.lost.Load(), errs.Load())
		lastPub, lastDel = p, d
	}
loop:
	for {
		select {
		case <-done:
			// The last, partial second gets its line too: a run shorter
			// than a second still shows one.
			if now := time.Now(); now.Sub(lastT) >= 10*time.Millisecond {
				line(now)
			}
			break loop
		case now := <-progress.C:
			line(now)
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.Published, rep.PublishErrors, rep.Requests = published.Load(), errs.Load(), reqs.Load()
	rep.PublishPerS = float64(rep.Published) / rep.Seconds
	rep.RequestsPerS = float64(rep.Requests) / rep.Seconds
	q := reqLatency.quantiles(0.5, 0.99)
	rep.ReqP50MS, rep.ReqP99MS = q[0], q[1]
	return res
}
