package ws

import (
	"strings"
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
		buf = appendFrames(buf[:0], frames, false, false)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkFanOutPerDelivery is what the writers do per delivery of a
// broadcast to 1,000 connections, plain or compressing: each message is a
// new frame, framed for every connection into its writer's reused buffer
// (appendFrames, what one write(2) then takes); compressing, the first
// connection deflates it (once per node) and the others reuse the bytes.
// ns/delivery is the figure to compare: compressed within 1.5x of plain
// (docs/performance.md). The write(2) itself, the same for both or
// cheaper compressed (fewer bytes), is left out.
func BenchmarkFanOutPerDelivery(b *testing.B) {
	const conns = 1000
	// A 1 KiB score update: JSON with the repetition real feeds have.
	data := []byte(`{"match":"ARS-CHE","minute":67,"score":[2,1],"events":[` +
		strings.Repeat(`{"type":"shot","team":"ARS","player":"Saka","xg":0.12},`, 17) +
		`{"type":"goal","team":"ARS","player":"Saka","xg":0.41}]}`)
	m := &broker.Message{Channel: "scores:ARS-CHE", Epoch: "e1", Offset: 42, Data: data}
	for _, deflate := range []bool{false, true} {
		name := "plain"
		if deflate {
			name = "deflate"
		}
		b.Run(name, func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				f := &push.Frame{Type: push.TypeMessage, Bytes: push.AppendMessage(nil, m, false)}
				frames := []*push.Frame{f}
				for range conns {
					buf = appendFrames(buf[:0], frames, false, deflate)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conns), "ns/delivery")
			b.ReportMetric(float64(len(buf)), "wire-bytes")
		})
	}
}
