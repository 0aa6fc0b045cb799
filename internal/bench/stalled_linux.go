package bench

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stalledRecvBuffer is a stalled subscriber's receive buffer: as small as
// the kernel allows, so that what piles up is the server's to bound
// (send_buffer_bytes, max_queue_bytes), not this process's.
const stalledRecvBuffer = 4096

// dialStalled opens n subscribers that never read (issue 12 item 4: a
// node with thousands of stalled readers beside live ones), subscribed to
// the channels in turn through the query string. They are plain
// descriptors no poller watches: the server's frames pile up in the
// kernel until the server closes them as slow consumers. The caller
// closes the descriptors.
func dialStalled(ctx context.Context, cfg Config, wsBases, chans []string, n int) ([]int, error) {
	fds := make([]int, n)
	for i := range fds {
		fds[i] = -1
	}
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range min(32, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				fd, err := dialOneStalled(ctx, cfg, wsBases[i%len(wsBases)]+"?channel="+chans[i%len(chans)], i)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				fds[i] = fd
			}
		}()
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	return fds, firstErr
}

func dialOneStalled(ctx context.Context, cfg Config, wsURL string, i int) (int, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return -1, err
	}
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, stalledRecvBuffer)
		})
	}}
	if len(cfg.Sources) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: cfg.Sources[i%len(cfg.Sources)]}
	}
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return -1, err
	}
	fd, _, err := upgrade(nc, u)
	return fd, err
}

// closeAll closes the stalled subscribers' descriptors.
func closeAll(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
}

// slowConsumerCloses reads herald_slow_consumer_closes_total from the
// first server's /metrics (-1 when it cannot be read).
func slowConsumerCloses(ctx context.Context, base string) int64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/metrics", nil)
	if err != nil {
		return -1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "herald_slow_consumer_closes_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return -1
			}
			return int64(f)
		}
	}
	return -1
}

// kernelTCPMemMB is the machine's TCP buffer memory (/proc/net/sockstat,
// both ends when server and bench share the machine); 0 when unknown.
func kernelTCPMemMB() float64 {
	var pages int64
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "mem" {
				pages, _ = strconv.ParseInt(f[i+1], 10, 64)
			}
		}
	}
	return float64(pages*int64(unix.Getpagesize())) / mb
}
