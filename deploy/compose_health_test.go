package deploy

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// selfProbe is the command that checks a node from inside its image (no
// shell, no curl there).
var selfProbe = []string{"/herald", "healthcheck"}

func TestComposeHealthchecks(t *testing.T) {
	p := loadProject(t)
	for _, name := range heraldNodes {
		s := service(t, p, name)
		hc := s.HealthCheck
		if hc == nil || hc.Disable {
			t.Errorf("%s: no healthcheck", name)
			continue
		}
		// CMD, not CMD-SHELL: the image has no /bin/sh.
		if len(hc.Test) < 3 || hc.Test[0] != "CMD" || !slices.Equal(hc.Test[1:3], selfProbe) {
			t.Errorf("%s: healthcheck %q, want [CMD /herald healthcheck ...]", name, hc.Test)
		}
		if hc.Interval == nil || time.Duration(*hc.Interval) <= 0 || hc.Retries == nil || *hc.Retries < 1 {
			t.Errorf("%s: healthcheck needs an interval and retries", name)
		}
		if hc.Timeout != nil && hc.Interval != nil && *hc.Timeout > *hc.Interval {
			t.Errorf("%s: healthcheck timeout %v exceeds its interval %v", name, *hc.Timeout, *hc.Interval)
		}
	}
	// nginx sends clients only once the nodes say they are ready.
	nginx := service(t, p, proxyName)
	for _, name := range heraldNodes {
		if dep := nginx.DependsOn[name]; dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: depends on %s with condition %q, want %s", proxyName, name, dep.Condition, types.ServiceConditionHealthy)
		}
	}
}

// The image's own HEALTHCHECK (for docker run) uses the same probe.
func TestDockerfileHealthcheck(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(string(src))
	final := stages[len(stages)-1]
	found := false
	for _, in := range final {
		if in.Cmd != "HEALTHCHECK" {
			continue
		}
		found = true
		_, cmd, ok := strings.Cut(in.Args, "CMD ")
		if !ok || !strings.HasPrefix(strings.TrimSpace(cmd), `["/herald", "healthcheck"`) {
			t.Errorf("Dockerfile: HEALTHCHECK %s, want CMD [\"/herald\", \"healthcheck\", ...] (exec form: no shell in the image)", in.Args)
		}
	}
	if !found {
		t.Error("Dockerfile: the final stage has no HEALTHCHECK")
	}
}

// loadChannelRules loads a config file with the server's own loader
// (unknown keys are errors) and returns its namespace rules.
func loadChannelRules(t *testing.T, path string) *push.Namespaces {
	t.Helper()
	cfg := server.DefaultConfig()
	if err := cfg.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	// Per-deployment settings, secrets above all, come from the
	// environment, not from a file every deployment shares.
	if len(cfg.Keys()) > 0 || cfg.RedisURL != "" || cfg.TokenHMACSecret != "" {
		t.Errorf("%s sets an API key, Redis URL or token secret; those belong in the environment", path)
	}
	ns, err := cfg.NamespaceRules()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return ns
}

// The channels the demo pages (clients/web/static) and README's examples
// use, and what each needs of its namespace.
var exampleChannels = map[string]func(*push.Namespace) bool{
	"news":             func(ns *push.Namespace) bool { return ns.HistorySize > 0 }, // README: curl, CLI, recovery
	"stocks:AAPL":      func(ns *push.Namespace) bool { return ns.Snapshot && ns.HistorySize > 0 },
	"sports:cup-final": func(ns *push.Namespace) bool { return ns.Snapshot && ns.HistorySize > 0 },
	"danmaku:demo":     func(ns *push.Namespace) bool { return ns.ClientPublish },
	"chat:lobby":       func(ns *push.Namespace) bool { return ns.ClientPublish && ns.Presence.Tracked() && ns.HistorySize > 0 },
	// herald bench --check --namespace check: --messages (1000) per channel.
	"check:c1": func(ns *push.Namespace) bool { return ns.HistorySize >= 1000 },
}

func TestComposeConfig(t *testing.T) {
	root := repoRoot(t)
	p := loadProject(t)
	for _, name := range heraldNodes {
		s := service(t, p, name)
		path := env(s, "HERALD_CONFIG")
		if path == "" {
			t.Errorf("%s: no HERALD_CONFIG", name)
			continue
		}
		var src string
		for _, v := range s.Volumes {
			if v.Target == path {
				if v.Type != types.VolumeTypeBind || !v.ReadOnly {
					t.Errorf("%s: %s is not a read-only bind mount", name, path)
				}
				src = v.Source
			}
		}
		if want := filepath.Join(root, "deploy", "herald.yaml"); src != want {
			t.Errorf("%s: HERALD_CONFIG %s is mounted from %q, want %s", name, path, src, want)
		}
	}

	ns := loadChannelRules(t, filepath.Join(root, "deploy", "herald.yaml"))
	for ch, ok := range exampleChannels {
		rules, err := ns.Lookup(ch)
		if err != nil {
			t.Errorf("deploy/herald.yaml: %v", err)
		} else if !ok(rules) {
			t.Errorf("deploy/herald.yaml: the rules for %s (%+v) do not serve the pages and README examples", ch, *rules)
		}
	}
	if _, reserved := ns.Named[push.SystemNamespace]; reserved {
		t.Errorf("deploy/herald.yaml configures the reserved namespace %q", push.SystemNamespace)
	}
}

// nginx is a trusted proxy: its address, and only its, is in every node's
// trusted_proxies, so per-address limits see clients through it.
func TestComposeTrustedProxy(t *testing.T) {
	p := loadProject(t)
	nginx := service(t, p, proxyName)
	var proxyAddr netip.Addr
	var network string
	for name, cfg := range nginx.Networks {
		if cfg == nil || cfg.Ipv4Address == "" {
			continue
		}
		a, err := netip.ParseAddr(cfg.Ipv4Address)
		if err != nil {
			t.Fatalf("%s: ipv4_address %q: %v", proxyName, cfg.Ipv4Address, err)
		}
		proxyAddr, network = a, name
	}
	if !proxyAddr.IsValid() {
		t.Fatalf("%s: no fixed ipv4_address: the nodes cannot trust a changing address", proxyName)
	}

	// The fixed address must be in the network's subnet and outside the
	// range Docker hands out, or a node could take it first.
	n, ok := p.Networks[network]
	if !ok || len(n.Ipam.Config) == 0 {
		t.Fatalf("network %s: no ipam config", network)
	}
	pool := n.Ipam.Config[0]
	subnet, err := netip.ParsePrefix(pool.Subnet)
	if err != nil || !subnet.Contains(proxyAddr) {
		t.Errorf("network %s: subnet %q does not hold %s (%v)", network, pool.Subnet, proxyAddr, err)
	}
	if dyn, err := netip.ParsePrefix(pool.IPRange); err != nil || dyn.Contains(proxyAddr) {
		t.Errorf("network %s: ip_range %q: want one that excludes %s (%v)", network, pool.IPRange, proxyAddr, err)
	}

	for _, name := range heraldNodes {
		s := service(t, p, name)
		if _, on := s.Networks[network]; !on {
			t.Errorf("%s: not on network %s", name, network)
		}
		got := strings.Split(env(s, "HERALD_TRUSTED_PROXIES"), ",")
		if len(got) != 1 || strings.TrimSpace(got[0]) != proxyAddr.String() {
			t.Errorf("%s: HERALD_TRUSTED_PROXIES %q, want exactly %s (nginx)", name, env(s, "HERALD_TRUSTED_PROXIES"), proxyAddr)
		}
	}
	if _, on := service(t, p, redisName).Networks[network]; !on {
		t.Errorf("%s: not on network %s", redisName, network)
	}
}
