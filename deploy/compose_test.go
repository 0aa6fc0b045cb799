package deploy

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// The services docker-compose.yml must define.
var (
	heraldNodes = []string{"herald1", "herald2", "herald3"}
	redisName   = "redis"
	proxyName   = "nginx"
)

const (
	// proxyPort is the port nginx publishes (and listens on).
	proxyPort = 8080
	// heraldPort is where a node listens when HERALD_LISTEN is not set
	// (the default listen address is ":8080").
	heraldPort = 8080
	// shutdownTimeout is Herald's default shutdown_timeout: a node's
	// stop_grace_period must leave it that long to drain.
	shutdownTimeout = 15 * time.Second
	// longTimeout is the least proxy_read_timeout for connections that
	// stay open: WebSocket and SSE.
	longTimeout = 10 * time.Minute
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

// testAPIKey is the HERALD_API_KEY the tests give compose, which refuses
// to start without one.
const testAPIKey = "test-key"

// loadProject loads docker-compose.yml as docker compose would, with env
// as the only environment (no OS environment, no .env file), so the
// result does not depend on the machine running the test. HERALD_API_KEY
// is testAPIKey unless env sets it.
func loadProject(t *testing.T, env ...string) *types.Project {
	t.Helper()
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "HERALD_API_KEY=") }) {
		env = append(env, "HERALD_API_KEY="+testAPIKey)
	}
	p, err := loadProjectErr(t, env...)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

func loadProjectErr(t *testing.T, env ...string) (*types.Project, error) {
	t.Helper()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(env),
	)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return s
}

func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

func TestComposeServices(t *testing.T) {
	p := loadProject(t)
	for _, name := range append([]string{redisName, proxyName}, heraldNodes...) {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
	}
}

func TestComposeRedis(t *testing.T) {
	p := loadProject(t)
	r := service(t, p, redisName)
	if !strings.HasPrefix(r.Image, "redis:7") {
		t.Errorf("redis image %q, want redis:7...", r.Image)
	}
	if cmd := strings.Join(r.Command, " "); !strings.Contains(cmd, "--appendonly yes") {
		t.Errorf("redis command %q: want --appendonly yes (history survives a restart)", cmd)
	}
	data := false
	for _, v := range r.Volumes {
		if v.Target == "/data" && v.Type == types.VolumeTypeVolume {
			data = true
			if _, ok := p.Volumes[v.Source]; !ok {
				t.Errorf("redis volume %q is not declared under volumes:", v.Source)
			}
		}
	}
	if !data {
		t.Error("redis: no named volume on /data")
	}
}

func TestComposeHeraldNodes(t *testing.T) {
	root := repoRoot(t)
	p := loadProject(t)
	seen := map[string]string{}
	for _, name := range heraldNodes {
		s := service(t, p, name)

		u, err := url.Parse(env(s, "HERALD_REDIS_URL"))
		switch {
		case err != nil:
			t.Errorf("%s: HERALD_REDIS_URL: %v", name, err)
		case u.Scheme != "redis" || u.Hostname() != redisName:
			t.Errorf("%s: HERALD_REDIS_URL %q: want redis://%s:...", name, u, redisName)
		}

		node := env(s, "HERALD_NODE")
		if node == "" {
			t.Errorf("%s: no HERALD_NODE", name)
		} else if other, dup := seen[node]; dup {
			t.Errorf("%s: HERALD_NODE %q is also %s's", name, node, other)
		}
		seen[node] = name

		if s.Build == nil {
			t.Errorf("%s: no build section", name)
		} else {
			df := s.Build.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			if !filepath.IsAbs(df) {
				df = filepath.Join(s.Build.Context, df)
			}
			if s.Build.Context != root || df != filepath.Join(root, "Dockerfile") {
				t.Errorf("%s: builds %s in %s, want the repository's Dockerfile", name, df, s.Build.Context)
			}
		}

		dep, ok := s.DependsOn[redisName]
		if !ok {
			t.Errorf("%s: does not depend on %s", name, redisName)
		} else if dep.Condition == types.ServiceConditionHealthy && service(t, p, redisName).HealthCheck == nil {
			t.Errorf("%s: waits for %s to be healthy, which has no healthcheck", name, redisName)
		}

		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= shutdownTimeout {
			t.Errorf("%s: stop_grace_period must exceed the %v shutdown_timeout, or Docker kills the node mid-drain", name, shutdownTimeout)
		}
		if len(s.Ports) > 0 {
			t.Errorf("%s: publishes ports %v; clients should come through %s", name, s.Ports, proxyName)
		}
	}
}

// The stack publishes :8080: with a default key anyone who read this file
// could publish, so compose must refuse to start without one.
func TestComposeAPIKey(t *testing.T) {
	for _, env := range [][]string{nil, {"HERALD_API_KEY="}} {
		_, err := loadProjectErr(t, env...)
		if err == nil || !strings.Contains(err.Error(), "HERALD_API_KEY") {
			t.Errorf("env %q: compose loads (err %v); want a refusal naming HERALD_API_KEY", env, err)
		}
	}
	p := loadProject(t, "HERALD_API_KEY=s3cret")
	for _, name := range heraldNodes {
		if got := env(service(t, p, name), "HERALD_API_KEY"); got != "s3cret" {
			t.Errorf("%s has HERALD_API_KEY %q, want s3cret", name, got)
		}
	}
}

// proxyConfig returns the host path of the nginx configuration file the
// proxy service mounts, after checking the mount.
func proxyConfig(t *testing.T, s types.ServiceConfig) string {
	t.Helper()
	root := repoRoot(t)
	for _, v := range s.Volumes {
		if v.Target != "/etc/nginx/nginx.conf" && !strings.HasPrefix(v.Target, "/etc/nginx/conf.d/") {
			continue
		}
		if v.Type != types.VolumeTypeBind {
			t.Fatalf("%s: %s is a %s mount, want a bind mount of a file in the repository", proxyName, v.Target, v.Type)
		}
		if !v.ReadOnly {
			t.Errorf("%s: %s is mounted read-write", proxyName, v.Target)
		}
		rel, err := filepath.Rel(root, v.Source)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			t.Fatalf("%s: %s is mounted from %s, outside the repository", proxyName, v.Target, v.Source)
		}
		if fi, err := os.Stat(v.Source); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s: mounted config %s is not a file in the repository: %v", proxyName, rel, err)
		}
		if v.Target != "/etc/nginx/nginx.conf" {
			t.Fatalf("%s: %s is mounted at %s; the checks below want the whole nginx.conf", proxyName, rel, v.Target)
		}
		return v.Source
	}
	t.Fatalf("%s: mounts no configuration at /etc/nginx/nginx.conf", proxyName)
	return ""
}

func TestComposeProxy(t *testing.T) {
	p := loadProject(t)
	s := service(t, p, proxyName)
	if !strings.HasPrefix(s.Image, "nginx:") {
		t.Errorf("%s image %q, want nginx", proxyName, s.Image)
	}
	published := false
	for _, port := range s.Ports {
		if port.Published == strconv.Itoa(proxyPort) && port.Target == proxyPort {
			published = true
		}
	}
	if !published {
		t.Errorf("%s: does not publish %d:%d (ports %+v)", proxyName, proxyPort, proxyPort, s.Ports)
	}
	for _, name := range heraldNodes {
		if _, ok := s.DependsOn[name]; !ok {
			t.Errorf("%s: does not depend on %s", proxyName, name)
		}
	}

	path := proxyConfig(t, s)
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := parseNginx(string(src))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	checkNginx(t, p, conf)
}

// checkNginx checks the proxy configuration against the compose project.
func checkNginx(t *testing.T, p *types.Project, conf []*directive) {
	t.Helper()

	// Sticky-free: no balancing on the client's address or a cookie.
	walk(conf, func(d *directive) {
		switch d.Name {
		case "ip_hash", "hash", "sticky", "sticky_cookie_insert":
			t.Errorf("nginx.conf line %d: %s: the proxy must balance without sticky sessions", d.Line, d.Name)
		}
	})

	https := find(conf, "http")
	if len(https) != 1 {
		t.Fatalf("nginx.conf: %d http blocks, want 1", len(https))
	}
	http := https[0].Block

	// The upstream: exactly the Herald nodes, each with passive health.
	want := map[string]bool{}
	for _, name := range heraldNodes {
		port := heraldPort
		if l := env(service(t, p, name), "HERALD_LISTEN"); l != "" {
			_, ps, err := net.SplitHostPort(l)
			if port, err = strconv.Atoi(ps); err != nil {
				t.Fatalf("%s: HERALD_LISTEN %q: %v", name, l, err)
			}
		}
		want[net.JoinHostPort(name, strconv.Itoa(port))] = true
	}
	var upstream string
	for _, u := range find(http, "upstream") {
		if len(u.Args) != 1 {
			continue
		}
		got := map[string]bool{}
		for _, srv := range find(u.Block, "server") {
			if len(srv.Args) == 0 {
				continue
			}
			addr := srv.Args[0]
			if _, _, err := net.SplitHostPort(addr); err != nil {
				addr = net.JoinHostPort(addr, "80")
			}
			got[addr] = true
			checkUpstreamServer(t, http, u, srv)
		}
		if len(got) == len(want) && allIn(got, want) {
			upstream = u.Args[0]
		}
	}
	if upstream == "" {
		t.Fatalf("nginx.conf: no upstream of exactly %v", keys(want))
	}

	// The map that turns an Upgrade request into "Connection: upgrade".
	upgradeMap := false
	for _, m := range find(http, "map") {
		if slices.Equal(m.Args, []string{"$http_upgrade", "$connection_upgrade"}) {
			for _, e := range m.Block {
				if e.Name == "default" && slices.Equal(e.Args, []string{"upgrade"}) {
					upgradeMap = true
				}
			}
		}
	}
	if !upgradeMap {
		t.Error("nginx.conf: no `map $http_upgrade $connection_upgrade { default upgrade; ... }`")
	}

	// The server nginx publishes.
	var server *directive
	for _, srv := range find(http, "server") {
		for _, l := range find(srv.Block, "listen") {
			if len(l.Args) > 0 && listenPort(l.Args[0]) == proxyPort {
				server = srv
			}
		}
	}
	if server == nil {
		t.Fatalf("nginx.conf: no server listening on %d", proxyPort)
	}
	location := func(path string) [][]*directive {
		t.Helper()
		for _, l := range find(server.Block, "location") {
			if p, ok := locationPath(l); ok && p == path {
				return [][]*directive{http, server.Block, l.Block}
			}
		}
		t.Fatalf("nginx.conf: no `location %s` in the server on %d", path, proxyPort)
		return nil
	}

	for _, path := range []string{"/ws", "/echo"} {
		levels := location(path)
		checkProxied(t, path, upstream, levels)
		if v, _ := setting("proxy_http_version", levels...); v != "1.1" {
			t.Errorf("location %s: proxy_http_version %q, want 1.1 (WebSocket needs it)", path, v)
		}
		h := headers(levels...)
		if h["upgrade"] != "$http_upgrade" {
			t.Errorf("location %s: Upgrade header %q, want $http_upgrade", path, h["upgrade"])
		}
		if h["connection"] != "$connection_upgrade" {
			t.Errorf("location %s: Connection header %q, want $connection_upgrade", path, h["connection"])
		}
		checkLongTimeout(t, path, levels)
	}

	sse := location("/sse")
	checkProxied(t, "/sse", upstream, sse)
	if v, _ := setting("proxy_buffering", sse...); v != "off" {
		t.Errorf("location /sse: proxy_buffering %q, want off (events must not wait in nginx)", v)
	}
	checkLongTimeout(t, "/sse", sse)

	checkProxied(t, "/", upstream, location("/"))
}

// checkProxied checks that a location proxies to upstream and forwards
// the client's address and Host.
func checkProxied(t *testing.T, path, upstream string, levels [][]*directive) {
	t.Helper()
	pass := find(levels[len(levels)-1], "proxy_pass")
	if len(pass) != 1 || len(pass[0].Args) != 1 || proxyTarget(pass[0].Args[0]) != upstream {
		t.Errorf("location %s: want proxy_pass http://%s", path, upstream)
	}
	h := headers(levels...)
	// Herald checks a browser's Origin against Host, port included:
	// $host would drop the port and refuse browsers on :8080.
	if h["host"] != "$http_host" {
		t.Errorf("location %s: Host header %q, want $http_host", path, h["host"])
	}
	if h["x-real-ip"] != "$remote_addr" {
		t.Errorf("location %s: X-Real-IP header %q, want $remote_addr", path, h["x-real-ip"])
	}
	if h["x-forwarded-for"] != "$proxy_add_x_forwarded_for" {
		t.Errorf("location %s: X-Forwarded-For header %q, want $proxy_add_x_forwarded_for", path, h["x-forwarded-for"])
	}
}

func checkLongTimeout(t *testing.T, path string, levels [][]*directive) {
	t.Helper()
	v, ok := setting("proxy_read_timeout", levels...)
	if !ok {
		v = "60s" // nginx's default
	}
	d, err := nginxDuration(v)
	if err != nil {
		t.Errorf("location %s: proxy_read_timeout %q: %v", path, v, err)
	} else if d < longTimeout {
		t.Errorf("location %s: proxy_read_timeout %v, want at least %v for long-lived connections", path, d, longTimeout)
	}
}

// checkUpstreamServer checks one server of an upstream: passive health,
// and what "resolve" needs.
func checkUpstreamServer(t *testing.T, http []*directive, u, srv *directive) {
	t.Helper()
	params := map[string]string{}
	for _, a := range srv.Args[1:] {
		k, v, _ := strings.Cut(a, "=")
		params[k] = v
	}
	if n, err := strconv.Atoi(params["max_fails"]); err != nil || n < 1 {
		t.Errorf("nginx.conf line %d: server %s: want max_fails=N (N >= 1) for passive health checks", srv.Line, srv.Args[0])
	}
	if d, err := nginxDuration(params["fail_timeout"]); err != nil || d <= 0 {
		t.Errorf("nginx.conf line %d: server %s: want fail_timeout=T for passive health checks", srv.Line, srv.Args[0])
	}
	if _, ok := params["resolve"]; ok {
		if len(find(u.Block, "zone")) == 0 {
			t.Errorf("nginx.conf line %d: server %s resolve: the upstream needs a zone", srv.Line, srv.Args[0])
		}
		if len(find(u.Block, "resolver")) == 0 && len(find(http, "resolver")) == 0 {
			t.Errorf("nginx.conf line %d: server %s resolve: no resolver", srv.Line, srv.Args[0])
		}
	}
}

// proxyTarget is the upstream name in a proxy_pass URL.
func proxyTarget(pass string) string {
	host, ok := strings.CutPrefix(pass, "http://")
	if !ok {
		return ""
	}
	host, _, _ = strings.Cut(host, "/")
	return host
}

// listenPort is the port of a listen directive's address: "8080",
// "0.0.0.0:8080", "[::]:8080".
func listenPort(addr string) int {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		addr = addr[i+1:]
	}
	n, err := strconv.Atoi(addr)
	if err != nil {
		return 0
	}
	return n
}

func allIn(a, b map[string]bool) bool {
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// dockerfile is a Dockerfile as instructions, continuation lines joined
// and comments dropped, split into build stages.
type instruction struct {
	Cmd  string // upper case
	Args string
}

func parseDockerfile(src string) [][]instruction {
	var stages [][]instruction
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" || len(stages) == 0 {
			stages = append(stages, nil)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment, also inside a continued instruction
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

func TestDockerfile(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(string(src))
	// stages[0] holds what precedes the first FROM (ARGs), if anything.
	var builds [][]instruction
	for _, st := range stages {
		if st[0].Cmd == "FROM" {
			builds = append(builds, st)
		}
	}
	if len(builds) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a multi-stage build", len(builds))
	}
	final := builds[len(builds)-1]

	base := final[0].Args
	if strings.HasPrefix(base, "--platform") {
		_, base, _ = strings.Cut(base, " ")
	}
	if !strings.Contains(base, "distroless/static") && !strings.HasPrefix(base, "scratch") {
		t.Errorf("Dockerfile: final stage FROM %s, want distroless/static or scratch", base)
	}

	var built, cgoOff, copied bool
	for _, st := range builds[:len(builds)-1] {
		for _, in := range st {
			if in.Cmd != "RUN" && in.Cmd != "ENV" {
				continue
			}
			if regexp.MustCompile(`\bCGO_ENABLED[= ]0\b`).MatchString(in.Args) {
				cgoOff = true
			}
			if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
				built = true
				if !strings.Contains(in.Args, "-trimpath") {
					t.Errorf("Dockerfile: go build without -trimpath: %s", in.Args)
				}
				if !strings.Contains(in.Args, "./cmd/herald") {
					t.Errorf("Dockerfile: go build does not build ./cmd/herald: %s", in.Args)
				}
			}
		}
	}
	if !built {
		t.Error("Dockerfile: no `go build` in a build stage")
	}
	if !cgoOff {
		t.Error("Dockerfile: CGO_ENABLED=0 not set for the build: the binary must be static")
	}

	var user, entry string
	exposed := false
	for _, in := range final[1:] {
		switch in.Cmd {
		case "COPY":
			if strings.Contains(in.Args, "--from=") {
				copied = true
			}
		case "USER":
			user = in.Args
		case "ENTRYPOINT":
			entry = in.Args
		case "EXPOSE":
			for _, p := range strings.Fields(in.Args) {
				if strings.TrimSuffix(p, "/tcp") == strconv.Itoa(heraldPort) {
					exposed = true
				}
			}
		}
	}
	if !copied {
		t.Error("Dockerfile: the final stage copies nothing from a build stage")
	}
	name, _, _ := strings.Cut(user, ":")
	if uid, err := strconv.Atoi(name); name == "" || name == "root" || (err == nil && uid == 0) {
		t.Errorf("Dockerfile: final stage USER %q, want a non-root user", user)
	}
	if !exposed {
		t.Errorf("Dockerfile: final stage does not EXPOSE %d", heraldPort)
	}
	if entry != `["/herald"]` {
		t.Errorf("Dockerfile: ENTRYPOINT %s, want [\"/herald\"]", entry)
	}
}
