package bench

import (
	"bytes"
	"net"
	"slices"
	"strings"
	"testing"
)

func TestSplitURLs(t *testing.T) {
	h, w := SplitURLs(" http://a:1/ ,, https://b:2")
	if !slices.Equal(h, []string{"http://a:1", "https://b:2"}) || !slices.Equal(w, []string{"ws://a:1/ws", "wss://b:2/ws"}) {
		t.Fatalf("SplitURLs = %q, %q", h, w)
	}
}

func TestParseLists(t *testing.T) {
	if p, err := ParsePIDs("12, 34,"); err != nil || !slices.Equal(p, []int{12, 34}) {
		t.Errorf("ParsePIDs = %v, %v", p, err)
	}
	for _, bad := range []string{"x", "0", "-3"} {
		if _, err := ParsePIDs(bad); err == nil || !strings.Contains(err.Error(), "is not a pid") {
			t.Errorf("ParsePIDs(%q): %v, want an error", bad, err)
		}
	}
	if s, err := ParseSources("127.0.0.1,::1"); err != nil || len(s) != 2 || !s[1].Equal(net.IPv6loopback) {
		t.Errorf("ParseSources = %v, %v", s, err)
	}
	if _, err := ParseSources("127.0.0.1,host"); err == nil || !strings.Contains(err.Error(), "is not an IP address") {
		t.Errorf("ParseSources with a name: %v, want an error", err)
	}
}

func TestPrint(t *testing.T) {
	r := &Report{Conns: 3, ConnsUp: 2}
	var text, js bytes.Buffer
	if err := Print(&text, r, false); err != nil || text.String() != r.String()+"\n" {
		t.Errorf("Print text = %q, %v", text.String(), err)
	}
	if err := Print(&js, r, true); err != nil || !strings.Contains(js.String(), "\n  \"") {
		t.Errorf("Print JSON = %q, %v; want indented JSON", js.String(), err)
	}
}
