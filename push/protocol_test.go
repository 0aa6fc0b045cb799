package push

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/heraldpush/herald/broker"
)

func messageFor(channel, epoch string, offset uint64, data []byte) *broker.Message {
	return &broker.Message{Channel: channel, Epoch: epoch, Offset: offset, Data: data, Time: 1700000000000}
}

// TestAppendMessageIsJSON checks the hand-written encoder against
// encoding/json's reading of it.
func TestAppendMessageIsJSON(t *testing.T) {
	b := AppendMessage(nil, messageFor("stocks:AAPL", "e1", 42, []byte(`{"p":1.5}`)), true)
	var f struct {
		Type     string          `json:"type"`
		Channel  string          `json:"channel"`
		Offset   uint64          `json:"offset"`
		Epoch    string          `json:"epoch"`
		TS       int64           `json:"ts"`
		Snapshot bool            `json:"snapshot"`
		Data     json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if f.Type != "message" || f.Channel != "stocks:AAPL" || f.Offset != 42 || f.Epoch != "e1" || f.TS != 1700000000000 || !f.Snapshot || string(f.Data) != `{"p":1.5}` {
		t.Fatalf("decoded %+v from %s", f, b)
	}
	if FrameType(b) != "message" || FrameType([]byte(`{"type":"ping"}`)) != "ping" || FrameType([]byte(`x`)) != "" {
		t.Fatal("FrameType")
	}
}

func TestMessageCapFits(t *testing.T) {
	m := &broker.Message{Channel: "ns:" + strings.Repeat("c", 200), Epoch: "a1b2c3d4e5f6",
		Offset: math.MaxUint64, Time: math.MaxInt64, Data: json.RawMessage(`{"x":1}`)}
	for _, snap := range []bool{false, true} {
		if got := len(AppendMessage(nil, m, snap)); got > messageCap(m) {
			t.Errorf("snapshot=%v: frame is %d bytes, messageCap says %d", snap, got, messageCap(m))
		}
	}
}
