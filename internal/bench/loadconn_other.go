//go:build !linux

package bench

// Subscribing connections are read by epoll loops (loadconn_linux.go);
// elsewhere the load generator can only publish.

import (
	"context"
	"errors"
)

type poller struct{}

type loadConn struct{}

func newPoller(n int) (*poller, error) {
	if n > 0 {
		return nil, errors.New("bench: subscribers need Linux (epoll); --publish-only works here")
	}
	return &poller{}, nil
}

func (*poller) close() {}

func dialLoad(context.Context, Config, *poller, *loadRun, string, int) (*loadConn, error) {
	return nil, errors.ErrUnsupported
}

func dialStalled(context.Context, Config, []string, []string, int) ([]int, error) {
	return nil, errors.New("bench: --stalled needs Linux")
}

func closeAll([]int) {}

func slowConsumerCloses(context.Context, string) int64 { return -1 }

func kernelTCPMemMB() float64 { return 0 }
