package redisbroker

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestReadReply(t *testing.T) {
	in := "*3\r\n$10\r\nssubscribe\r\n$4\r\np{1}\r\n:1\r\n" +
		"-MOVED 3999 127.0.0.1:6381\r\n" +
		"*2\r\n$4\r\npong\r\n$0\r\n\r\n" +
		"+OK\r\n" +
		"*1\r\n*2\r\n$-1\r\n*0\r\n" +
		">3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$4\r\na\r\nb\r\n"
	want := []any{
		[]any{"ssubscribe", "p{1}", int64(1)},
		respError("MOVED 3999 127.0.0.1:6381"),
		[]any{"pong", ""},
		"OK",
		[]any{[]any{nil, []any{}}},
		[]any{"smessage", "c", "a\r\nb"},
	}
	r := bufio.NewReader(strings.NewReader(in))
	for i, w := range want {
		got, err := readReply(r)
		if err != nil || !reflect.DeepEqual(got, w) {
			t.Fatalf("reply %d: %#v, %v; want %#v", i, got, err, w)
		}
	}
	for _, bad := range []string{"$5\r\nab\r\n", "*9999999999\r\n", "?x\r\n", "$3\r\nabcd\r\n", ":x\r\n", "+OK\n", "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"} {
		if v, err := readReply(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("%q: read %#v, want an error", bad, v)
		}
	}
}

func TestWriteCommand(t *testing.T) {
	var sb strings.Builder
	w := bufio.NewWriter(&sb)
	writeCommand(w, "SSUBSCRIBE", "h:{5}", "")
	_ = w.Flush()
	if want := "*3\r\n$10\r\nSSUBSCRIBE\r\n$5\r\nh:{5}\r\n$0\r\n\r\n"; sb.String() != want {
		t.Fatalf("%q, want %q", sb.String(), want)
	}
}

func TestMovedAndSlotMaster(t *testing.T) {
	if slot, addr, ok := moved("MOVED 3999 127.0.0.1:6381"); !ok || slot != 3999 || addr != "127.0.0.1:6381" {
		t.Fatalf("moved: %d %q %v", slot, addr, ok)
	}
	for _, r := range []string{"ASK 3999 127.0.0.1:6381", "MOVED x a:1", "CLUSTERDOWN"} {
		if _, _, ok := moved(r); ok {
			t.Errorf("moved(%q) ok", r)
		}
	}
	slots := []any{
		[]any{int64(0), int64(5460), []any{"127.0.0.1", int64(7000), "id0"}},
		[]any{int64(5461), int64(10922), []any{"", int64(7001), "id1", []any{}}, []any{"127.0.0.1", int64(7004), "r1"}},
	}
	for _, c := range []struct {
		slot int
		want string
	}{{0, "127.0.0.1:7000"}, {5460, "127.0.0.1:7000"}, {6000, "10.0.0.9:7001"}} {
		if got, err := slotMaster(slots, c.slot, "10.0.0.9:7003"); err != nil || got != c.want {
			t.Errorf("slot %d: %q, %v; want %q", c.slot, got, err, c.want)
		}
	}
	if _, err := slotMaster(slots, 16000, "x:1"); err == nil {
		t.Error("slot 16000 served by nobody: want an error")
	}
}

// A deadline before a reply starts is idleness; inside one, a broken
// stream.
func TestReadReplyIdle(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	r := bufio.NewReader(a)
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := readReply(r); !errors.Is(err, errIdle) {
		t.Fatalf("quiet connection: %v, want errIdle", err)
	}
	go func() { _, _ = b.Write([]byte("*2\r\n$4\r\npong\r\n")) }()
	_ = a.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := readReply(r); err == nil || errors.Is(err, errIdle) {
		t.Fatalf("reply cut short: %v, want a read error other than errIdle", err)
	}
}

// Bulk strings larger than the reader's buffer take the copying path.
func TestReadReplyLargeBulk(t *testing.T) {
	big := strings.Repeat("x", 10000)
	r := bufio.NewReaderSize(strings.NewReader("$10000\r\n"+big+"\r\n$8\r\nsmessage\r\n"), 16)
	for _, want := range []string{big, "smessage"} {
		if got, err := readReply(r); err != nil || got != want {
			t.Fatalf("read %d bytes, %v; want %d", len(fmt.Sprint(got)), err, len(want))
		}
	}
}
