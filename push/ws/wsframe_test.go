package ws

import (
	"github.com/heraldpush/herald/push"
	"strings"
	"testing"
	"unicode/utf8"
)

// A close reason is cut to what a control frame holds (125 bytes with the
// code), at a rune boundary: it must stay UTF-8.
func TestWSCloseFrameCutsAtRune(t *testing.T) {
	reason := strings.Repeat("é", 100) // 200 bytes
	f := wsCloseFrame(4001, reason)
	if f[0] != 0x88 || int(f[1]) != len(f)-2 || len(f)-2 > 125 {
		t.Fatalf("header %x, %d bytes of payload", f[:2], len(f)-2)
	}
	if code := uint16(f[2])<<8 | uint16(f[3]); code != 4001 {
		t.Fatalf("code %d", code)
	}
	if got := f[4:]; !utf8.Valid(got) || len(got) != 122 {
		t.Fatalf("reason %d bytes, valid UTF-8 %v", len(got), utf8.Valid(got))
	}
}

// appendFrames gives each message its header (7-, 16- and 64-bit lengths),
// packs runs of messages on batch connections and leaves control frames
// whole, in order.
func TestAppendFrames(t *testing.T) {
	small, mid, big := []byte(`{"a":1}`), []byte(strings.Repeat("m", 300)), []byte(strings.Repeat("b", 70000))
	msg := func(b []byte) *push.Frame { return &push.Frame{Type: push.TypeMessage, Bytes: b} }
	got := appendFrames(nil, []*push.Frame{msg(small), wsPingFrame, msg(mid), msg(big)}, false, false)
	want := append([]byte{0x81, 7}, small...)
	want = append(want, wsPingFrame.Bytes...)
	want = append(append(want, 0x81, 126, 1, 44), mid...)
	want = append(append(want, 0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70), big...)
	if string(got) != string(want) {
		t.Fatalf("plain: got %d bytes, want %d", len(got), len(want))
	}

	got = appendFrames(nil, []*push.Frame{msg(small), msg(small), wsPingFrame, msg(small)}, true, false)
	want = append([]byte{0x81, 15}, `{"a":1}`+"\n"+`{"a":1}`...)
	want = append(want, wsPingFrame.Bytes...)
	want = append(append(want, 0x81, 7), small...)
	if string(got) != string(want) {
		t.Fatalf("batch: got %q, want %q", got, want)
	}
}

// frameEnd and unsentHead find the end of the frame under way in a run of
// server frames, for the 7-bit, 16-bit and 64-bit lengths.
func TestFrameEnd(t *testing.T) {
	var b []byte
	var ends []int
	for _, n := range []int{10, 300, 70000, 5} {
		b = appendTextHeader(b, n)
		b = append(b, make([]byte, n)...)
		ends = append(ends, len(b))
	}
	for _, c := range []struct{ at, want int }{
		{0, 0}, {1, ends[0]}, {ends[0], ends[0]}, {ends[0] + 1, ends[1]},
		{ends[1] + 3, ends[2]}, {ends[2], ends[2]}, {ends[3] - 1, ends[3]},
	} {
		if got := frameEnd(b, c.at); got != c.want {
			t.Errorf("frameEnd(at %d) = %d, want %d", c.at, got, c.want)
		}
	}
	// 5 bytes of the first frame went out: its other 7 are the head.
	head := unsentHead(b, 0, 5)
	if head != ends[0]-5 {
		t.Fatalf("head after 5 bytes: %d, want %d", head, ends[0]-5)
	}
	rest := b[5:]
	// Then 3 more of the head, then 20 more: into the second frame.
	if got := unsentHead(rest, head, 3); got != head-3 {
		t.Errorf("head after 3 more: %d, want %d", got, head-3)
	}
	if got, want := unsentHead(rest, head, 20), ends[1]-(5+20); got != want {
		t.Errorf("head after 20 more: %d, want %d", got, want)
	}
}
