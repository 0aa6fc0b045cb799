package ws

import (
	"testing"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
)

// BenchmarkAppendFrames builds what the WebSocket writer hands write(2)
// for a connection with 4 queued messages, into its reused buffer.
func BenchmarkAppendFrames(b *testing.B) {
	frame := &push.Frame{Type: push.TypeMessage, Bytes: push.AppendMessage(nil, &broker.Message{Channel: "stocks:AAPL", Epoch: "e1", Offset: 42, Data: []byte(`{"price":187.12}`)}, false)}
	frames := []*push.Frame{frame, frame, frame, frame}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendFrames(buf[:0], frames, false)
	}
	b.SetBytes(int64(len(buf)))
}
