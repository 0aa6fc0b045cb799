package push

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeCommand feeds arbitrary frames to the command decoder and
// checks that it never panics and that what it accepts re-encodes.
// Inputs are also split in two, as partial reads would deliver them.
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","channel":"news","id":1}`,
		`{"type":"subscribe","channel":"a","since":{"epoch":"e","offset":3}}`,
		`{"type":"publish","channel":"chat:x","data":{"t":"hi"}}`,
		`{"type":"history","channel":"a","limit":10}`,
		`{"type":"auth","token":"x.y.z"}`,
		`{"type":"pong"}`, `{}`, `[]`, `null`, `{"id":1e999}`, `{"type":"subscribe","since":{"offset":-1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c command
		if json.Unmarshal(b, &c) != nil {
			return
		}
		if _, err := json.Marshal(c); err != nil {
			t.Fatalf("decoded command does not re-encode: %v", err)
		}
		half := len(b) / 2
		var c2 command
		_ = json.Unmarshal(b[:half], &c2) // a partial frame must not panic either
	})
}

// FuzzChannelNames checks the channel validator and the grant matcher:
// they agree with a slow reference and never panic.
func FuzzChannelNames(f *testing.F) {
	for _, s := range [][2]string{{"chat:*", "chat:lobby"}, {"news", "news"}, {"*", "x"}, {"a:b*", "a:bc"}, {"", ""}, {"x", strings.Repeat("y", 300)}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, channel string) {
		valid := ValidChannel(channel)
		ref := len(channel) > 0 && len(channel) <= MaxChannelLen
		for _, r := range channel {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:@=-", r)) {
				ref = false
			}
		}
		if valid != ref {
			t.Fatalf("ValidChannel(%q) = %v, reference says %v", channel, valid, ref)
		}
		got := MatchChannel(pattern, channel)
		want := pattern != "" && pattern == channel
		if p, ok := strings.CutSuffix(pattern, "*"); ok && !strings.Contains(p, "*") {
			want = strings.HasPrefix(channel, p)
		}
		if got != want {
			t.Fatalf("MatchChannel(%q, %q) = %v, want %v", pattern, channel, got, want)
		}
		if got && !strings.HasSuffix(pattern, "*") && pattern != channel {
			t.Fatalf("exact pattern %q matched %q", pattern, channel)
		}
	})
}

// FuzzMessageHead checks that MessageHead reads back what AppendMessage
// wrote and never panics on other input.
func FuzzMessageHead(f *testing.F) {
	f.Add("news", "ab12", uint64(7), []byte(`{"x":1}`))
	f.Add("a", "", uint64(0), []byte(`null`))
	f.Fuzz(func(t *testing.T, channel, epoch string, offset uint64, data []byte) {
		_, _, _, _ = MessageHead(data)
		if !ValidChannel(channel) || strings.ContainsAny(epoch, `"\`) {
			return
		}
		m := messageFor(channel, epoch, offset, data)
		ch, ep, off, ok := MessageHead(AppendMessage(nil, m, false))
		if !ok || ch != channel || ep != epoch || off != offset {
			t.Fatalf("MessageHead = %q %q %d %v, want %q %q %d", ch, ep, off, ok, channel, epoch, offset)
		}
	})
}
