package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldpush/herald/broker"
)

// Channel-name errors, returned by Namespaces.Lookup.
var (
	ErrInvalidChannel   = errors.New("push: invalid channel name")
	ErrUnknownNamespace = errors.New("push: unknown namespace")
)

// MaxChannelLen is the longest channel name accepted, in bytes.
const MaxChannelLen = 255

// DefaultMaxMessageBytes caps a message's data when a namespace sets no cap.
const DefaultMaxMessageBytes = 64 << 10

// Namespace holds the rules for the channels of one namespace (DESIGN.md §2).
type Namespace struct {
	HistorySize     int           `yaml:"history_size" json:"history_size"`
	HistoryTTL      time.Duration `yaml:"history_ttl" json:"history_ttl"`
	Snapshot        bool          `yaml:"snapshot" json:"snapshot"`
	Private         bool          `yaml:"private" json:"private"`
	Presence        PresenceMode  `yaml:"presence" json:"presence"`
	ClientPublish   bool          `yaml:"client_publish" json:"client_publish"`
	PublishRate     Rate          `yaml:"publish_rate" json:"publish_rate"`
	MaxMessageBytes int           `yaml:"max_message_bytes" json:"max_message_bytes"`
	// IdempotencyWindow is how long a publish's idempotency_key is
	// remembered on its channel; 0 means broker.DefaultIdempotencyWindow.
	IdempotencyWindow time.Duration `yaml:"idempotency_window" json:"idempotency_window"`
	// Conflate: a subscriber that falls behind its send queue gets the
	// latest message of each channel only, until its queue drains,
	// instead of being closed with 4001 (conflate.go).
	Conflate bool `yaml:"conflate" json:"conflate"`
	// Anonymous false requires a valid token (any user) to subscribe or
	// publish; nil or true lets connections without a token in.
	Anonymous *bool `yaml:"anonymous" json:"anonymous,omitempty"`
	// UserChannels makes each channel NS:NAME the user NAME's own: only a
	// connection whose token's sub is NAME may subscribe (or publish, or
	// read history) there, with no channel claim needed; others get
	// forbidden. The HTTP API publishes to them as to any channel.
	UserChannels bool `yaml:"user_channels" json:"user_channels,omitempty"`
}

// ChannelUser is the user a channel of a user_channels namespace belongs
// to: the part of its name after the namespace ("alice" for inbox:alice).
func ChannelUser(channel string) string {
	_, name, _ := strings.Cut(channel, ":")
	return name
}

// PresenceMode is the presence rule of a namespace: off, true (members:
// who is there, with join and leave events) or counts (only the number of
// distinct users, for rooms too big to list or to tell of every arrival).
type PresenceMode uint8

const (
	PresenceOff PresenceMode = iota
	PresenceMembers
	PresenceCounts
)

// Tracked reports whether presence is kept at all.
func (m PresenceMode) Tracked() bool { return m != PresenceOff }

// UnmarshalText reads true, false or counts (config files write the rule
// as a YAML boolean or the word counts).
func (m *PresenceMode) UnmarshalText(b []byte) error {
	switch strings.ToLower(strings.TrimSpace(string(b))) {
	case "", "false", "off", "no":
		*m = PresenceOff
	case "true", "on", "yes", "members":
		*m = PresenceMembers
	case "counts":
		*m = PresenceCounts
	default:
		return fmt.Errorf("push: bad presence rule %q: want true, false or counts", b)
	}
	return nil
}

// MarshalText is the inverse of UnmarshalText.
func (m PresenceMode) MarshalText() ([]byte, error) {
	switch m {
	case PresenceMembers:
		return []byte("true"), nil
	case PresenceCounts:
		return []byte("counts"), nil
	}
	return []byte("false"), nil
}

// AllowsAnonymous reports whether connections without a token may use the
// namespace.
func (ns *Namespace) AllowsAnonymous() bool { return ns.Anonymous == nil || *ns.Anonymous }

// Retention is the history the namespace asks the broker to keep. A
// snapshot namespace keeps at least the latest message.
func (ns *Namespace) Retention() broker.Retention {
	size := ns.HistorySize
	if ns.Snapshot && size < 1 {
		size = 1
	}
	return broker.Retention{Size: size, TTL: ns.HistoryTTL}
}

// CompactData checks that data is one JSON value and returns it without
// insignificant whitespace: stored and sent compact, a message never holds
// a newline (batch frames separate messages with '\n') and its size is
// what the size limits count.
func CompactData(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(data))
	if err := json.Compact(&buf, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// MessageLimit is the namespace's cap on a message's data, in bytes.
func (ns *Namespace) MessageLimit() int {
	if ns.MaxMessageBytes > 0 {
		return ns.MaxMessageBytes
	}
	return DefaultMaxMessageBytes
}

// Rate is a number of events per interval, written "5/s", "100/m" or "2/500ms".
// The zero Rate means unlimited.
type Rate struct {
	N   int
	Per time.Duration
}

// ParseRate parses "N/unit" where unit is s, m, h or a Go duration.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return Rate{}, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if !ok || err != nil || n <= 0 {
		return Rate{}, fmt.Errorf("push: bad rate %q: want N/s, N/m, N/h or N/<duration>", s)
	}
	var per time.Duration
	switch unit = strings.TrimSpace(unit); unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		per, err = time.ParseDuration(unit)
		if err != nil || per <= 0 {
			return Rate{}, fmt.Errorf("push: bad rate %q: unknown unit %q", s, unit)
		}
	}
	return Rate{N: n, Per: per}, nil
}

func (r Rate) String() string {
	if r.N == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%s", r.N, r.Per)
}

// UnmarshalText lets config files write rates as strings.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalText is the inverse of UnmarshalText.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Namespaces resolves channel names to their namespace's rules.
type Namespaces struct {
	// Default applies to channel names without ':'.
	Default Namespace
	// Named maps a namespace name to its rules. A channel in a namespace
	// that is not listed is rejected.
	Named map[string]*Namespace
}

// ValidChannel reports whether name is 1-255 bytes of [A-Za-z0-9_.:@=-].
func ValidChannel(name string) bool {
	if len(name) == 0 || len(name) > MaxChannelLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !channelByte[name[i]] {
			return false
		}
	}
	return true
}

var channelByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_.:@=-" {
		t[c] = true
	}
	return t
}()

// NamespaceOf returns the namespace part of a channel name ("" for the
// default namespace).
func NamespaceOf(channel string) string {
	ns, _, ok := strings.Cut(channel, ":")
	if !ok {
		return ""
	}
	return ns
}

// Lookup validates channel and returns its namespace's rules.
func (n *Namespaces) Lookup(channel string) (*Namespace, error) {
	if !ValidChannel(channel) {
		return nil, fmt.Errorf("%w: %q: want 1-%d bytes of A-Z a-z 0-9 _ . : @ = -", ErrInvalidChannel, truncate(channel, 64), MaxChannelLen)
	}
	name := NamespaceOf(channel)
	if name == "" {
		return &n.Default, nil
	}
	if ns := n.Named[name]; ns != nil {
		return ns, nil
	}
	if name == SystemNamespace {
		// Not "add it to the config": the config refuses this name.
		return nil, fmt.Errorf("%w %q (channel %q): it is reserved for the server's own channels (%s) and cannot be configured; publish to a namespace of your own", ErrUnknownNamespace, name, channel, StatsChannel)
	}
	return nil, fmt.Errorf("%w %q (channel %q): add it to the config's namespaces", ErrUnknownNamespace, name, channel)
}

// truncate cuts s to at most n bytes, at a rune boundary: the result goes
// into close frames and error messages, which must stay valid UTF-8.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
