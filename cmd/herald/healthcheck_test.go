package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hcFreeAddr returns a loopback address nothing listens on (for a moment).
func hcFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func healthcheck(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"healthcheck"}, args...), &out, &errOut)
	return out.String() + errOut.String(), err
}

// hcEventually retries f until it returns true or the deadline passes.
func hcEventually(t *testing.T, d time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, d, last)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval, not a wait for an event
	}
}

// TestHealthcheck runs the real server (herald serve) and probes it
// through its life: not up, ready, draining.
func TestHealthcheck(t *testing.T) {
	addr := hcFreeAddr(t)
	if out, err := healthcheck("--listen", addr); err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("healthcheck of a closed port: %v (%s), want \"not reachable\"", err, out)
	}

	// drain_delay keeps the listener open, /readyz failing, after the
	// shutdown starts: what an orchestrator sees of a draining node.
	cfgPath := filepath.Join(t.TempDir(), "herald.yaml")
	cfg := "listen: " + addr + "\nnode: hc-node\ndrain_delay: 2s\nshutdown_timeout: 10s\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logs syncBuffer
	served := make(chan error, 1)
	go func() { served <- run(ctx, []string{"serve", "--config", cfgPath}, &logs, &logs) }()

	hcEventually(t, 15*time.Second, "healthcheck of a started node", func() (bool, string) {
		select {
		case err := <-served:
			t.Fatalf("serve ended: %v\n%s", err, logs.String())
		default:
		}
		out, err := healthcheck("--listen", addr)
		return err == nil && strings.Contains(out, "ready hc-node"), out
	})
	if out, err := healthcheck("--url", "http://"+addr+"/", "--path", "/healthz"); err != nil || !strings.Contains(out, "ok hc-node") {
		t.Fatalf("healthcheck --path /healthz: %v (%s)", err, out)
	}

	stop()
	hcEventually(t, 5*time.Second, "healthcheck of a draining node", func() (bool, string) {
		out, err := healthcheck("--listen", addr)
		return err != nil && strings.Contains(err.Error(), "503") && strings.Contains(err.Error(), "draining"), out
	})
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestHealthcheckArgs(t *testing.T) {
	if _, err := healthcheck("--listen", "nonsense"); err == nil {
		t.Error("healthcheck --listen nonsense: no error")
	}
	if _, err := healthcheck("extra"); err == nil {
		t.Error("healthcheck extra: no error")
	}
}
