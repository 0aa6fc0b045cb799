package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// writeConfig writes a YAML config file and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigFileServes starts a node from a config file and checks that
// its namespaces rule the protocol.
func TestConfigFileServes(t *testing.T) {
	path := writeConfig(t, `
listen: 127.0.0.1:0
node: from-file
heartbeat: 7s
namespaces:
  stocks:
    history_size: 10
    history_ttl: 10m
    snapshot: true
  chat:
    client_publish: true
    publish_rate: 5/s
    max_message_bytes: 64
`)
	cfg := server.DefaultConfig()
	if err := cfg.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	n := startTestNode(t, cfg)
	n.publish("stocks:AAPL", 187.1)
	last := n.publish("stocks:AAPL", 187.2)

	c := n.dial("")
	if w := c.welcome(); w.Node != "from-file" || w.HeartbeatMS != 7000 {
		t.Errorf("welcome %s, want node from-file and heartbeat_ms 7000", w)
	}
	// snapshot: the latest message comes right after the reply.
	c.subscribe("stocks:AAPL")
	if m := c.expectMessage("stocks:AAPL", 187.2); !m.Snapshot || m.Offset != last.Offset {
		t.Errorf("snapshot %s, want offset %d marked snapshot", m, last.Offset)
	}
	c.send(map[string]any{"type": "publish", "id": 1, "channel": "chat:room", "data": "hi"})
	c.expect("ack")
	c.send(map[string]any{"type": "publish", "id": 2, "channel": "chat:room", "data": strings.Repeat("x", 65)})
	c.expectError(push.CodeTooLarge)
	c.send(map[string]any{"type": "publish", "id": 3, "channel": "stocks:AAPL", "data": 1})
	c.expectError(push.CodeForbidden)
	c.send(map[string]any{"type": "subscribe", "id": 4, "channel": "news:x"})
	c.expectError(push.CodeUnknownNS)
}
