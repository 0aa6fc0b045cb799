package redisbroker

import (
	"strings"
	"testing"
)

func TestDecodePayload(t *testing.T) {
	msgs, err := decodePayload(`abc 1700 41 5:"a:b"2:{}11:[1,"x y",3]`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`"a:b"`, `{}`, `[1,"x y",3]`}
	if len(msgs) != len(want) {
		t.Fatalf("got %d messages, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if m.Epoch != "abc" || m.Time != 1700 || m.Offset != uint64(41+i) || string(m.Data) != want[i] {
			t.Fatalf("message %d: %+v (data %s)", i, m, m.Data)
		}
	}
	// The format of earlier versions: one broker.Message in JSON.
	msgs, err = decodePayload(`{"channel":"c","offset":7,"epoch":"e","ts":9,"data":{"x":1}}`)
	if err != nil || len(msgs) != 1 || msgs[0].Offset != 7 || msgs[0].Epoch != "e" || string(msgs[0].Data) != `{"x":1}` {
		t.Fatalf("JSON payload: %+v, %v", msgs, err)
	}
	for _, bad := range []string{"", "abc", "abc 1 2", "abc 1 2 ", "abc x 2 1:1", "abc 1 x 1:1", "abc 1 2 3:12", "abc 1 2 0:", "abc 1 2 :1", "abc 1 2 " + strings.Repeat("1", 20) + ":1", "{bad"} {
		if msgs, err := decodePayload(bad); err == nil {
			t.Errorf("decodePayload(%q) = %+v, want an error", bad, msgs)
		}
	}
}

func FuzzDecodePayload(f *testing.F) {
	f.Add(`abc 1700 41 5:"a:b"2:{}`)
	f.Add(`{"offset":1}`)
	f.Fuzz(func(t *testing.T, p string) {
		msgs, err := decodePayload(p)
		if err == nil && len(msgs) == 0 {
			t.Fatal("no error and no message")
		}
	})
}
