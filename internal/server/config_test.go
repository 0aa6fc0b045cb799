package server

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/heraldpush/herald/push"
)

// goTypes matches what a config error must not show: Go's names for
// types.
var goTypes = regexp.MustCompile(`time\.Duration|\bint(64)?\b|\bbool\b|\[\]string|server\.Config|push\.|!!\w+|unmarshal`)

func TestConfigFileErrorsSpeakYAML(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"namespaces:\n  s:\n    history_ttl: ten\n", `line 3: history_ttl: want a duration like 10m, 30s or 1h, got "ten"`},
		{"max_queue_bytes: lots\n", `line 1: max_queue_bytes: want a whole number of bytes, got "lots"`},
		{"max_channels_per_connection: many\n", `line 1: max_channels_per_connection: want a whole number, got "many"`},
		{"compression: maybe\n", `line 1: compression: want true or false, got "maybe"`},
		{"allowed_origins: {a: 1}\n", "line 1: allowed_origins: want a list of strings, got a mapping"},
		{"namespaces: [1]\n", "line 1: namespaces: want a mapping of namespace names to their rules, got a list"},
		{"namespaces:\n  s: 5\n", `line 2: s: want a mapping of namespace rules (history_size, history_ttl, `},
		{"namespaces:\n  chat:\n    client_publsh: true\n", "line 3: unknown key client_publsh (did you mean client_publish?)"},
		{"heartbaet: 5s\n", "line 1: unknown key heartbaet (did you mean heartbeat?)"},
		{"namespaces:\n  chat:\n    publish_rate: 5/fortnight\n", `publish_rate: want a rate like 5/s, 100/m or 2/500ms`},
		// Two errors, both said.
		{"heartbeat: soon\nlog_level: debug\nmax_frame_bytes: 8k\n", `line 1: heartbeat: want a duration like 10m, 30s or 1h, got "soon"; line 3: max_frame_bytes: want a whole number of bytes, got "8k"`},
	} {
		path := filepath.Join(t.TempDir(), "herald.yaml")
		if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		err := cfg.LoadFile(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to say %q", tc.file, err, tc.want)
			continue
		}
		if m := goTypes.FindString(err.Error()); m != "" {
			t.Errorf("%q: error %q names Go's %q", tc.file, err, m)
		}
	}
}

func TestConfigEnvErrorsSpeakYAML(t *testing.T) {
	for _, tc := range []struct{ name, val, want string }{
		{"HERALD_HEARTBEAT", "soon", `HERALD_HEARTBEAT (heartbeat): want a duration like 10m, 30s or 1h, got "soon"`},
		{"HERALD_MAX_FRAME_BYTES", "64k", `HERALD_MAX_FRAME_BYTES (max_frame_bytes): want a whole number of bytes, got "64k"`},
		{"HERALD_COMPRESSION", "maybe", `HERALD_COMPRESSION (compression): want true or false, got "maybe"`},
		{"HERALD_NAMESPACES", "{chat: {client_publsh: true}}", "HERALD_NAMESPACES (namespaces, YAML): line 1: unknown key client_publsh (did you mean client_publish?)"},
		{"HERALD_NAMESPACES", "{s: {history_ttl: ten}}", `HERALD_NAMESPACES (namespaces, YAML): line 1: history_ttl: want a duration like 10m, 30s or 1h, got "ten"`},
	} {
		cfg := DefaultConfig()
		err := cfg.LoadEnv(func(k string) string {
			if k == tc.name {
				return tc.val
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: error %v, want it to say %q", tc.name, tc.val, err, tc.want)
			continue
		}
		if m := goTypes.FindString(err.Error()); m != "" {
			t.Errorf("%s=%s: error %q names Go's %q", tc.name, tc.val, err, m)
		}
	}
}

func TestEnvWarnings(t *testing.T) {
	got := EnvWarnings([]string{
		"HERALD_REDIS_ULR=redis://localhost:6379/0",
		"HERALD_REDIS_URL=redis://localhost:6379/0", // known
		"HERALD_CONFIG=/etc/herald.yaml",            // known, not a key
		"HERALD_APIKEY=x",
		"HERALD_COMPLETELY_DIFFERENT=1",
		"PATH=/usr/bin", // not ours
		"HERALD_URL=http://localhost:8080",
	})
	want := []string{
		"HERALD_APIKEY is not a Herald setting (did you mean HERALD_API_KEY?); it is ignored",
		"HERALD_COMPLETELY_DIFFERENT is not a Herald setting; it is ignored",
		"HERALD_REDIS_ULR is not a Herald setting (did you mean HERALD_REDIS_URL?); it is ignored",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EnvWarnings:\n got %q\nwant %q", got, want)
	}
}

func TestNamespaceHeraldReserved(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Namespaces = map[string]*push.Namespace{"herald": {}}
	_, err := cfg.NamespaceRules()
	if err == nil || !strings.Contains(err.Error(), "reserved for the server's own channels (herald:stats)") {
		t.Fatalf("namespace herald: %v", err)
	}
}

// user_channels names the user after the namespace: the default
// namespace (channels without ':') has no place for it.
func TestUserChannelsNeedANamespace(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DefaultNamespace.UserChannels = true
	if _, err := cfg.NamespaceRules(); err == nil || !strings.Contains(err.Error(), "user_channels needs a namespace") {
		t.Fatalf("default_namespace with user_channels: %v", err)
	}
	cfg = DefaultConfig()
	if err := cfg.LoadEnv(func(k string) string {
		if k == "HERALD_NAMESPACES" {
			return "inbox: {user_channels: true}"
		}
		return ""
	}); err != nil {
		t.Fatal(err)
	}
	if ns, err := cfg.NamespaceRules(); err != nil || !ns.Named["inbox"].UserChannels {
		t.Fatalf("namespaces.inbox.user_channels: %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"ULR", "URL", 2}, {"kitten", "sitting", 3}, {"same", "same", 0}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}
