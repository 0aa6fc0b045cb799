package push

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// stallTransport stands for a socket: Schedule only records the flush,
// TryWrite takes everything until full is set, and then Drain waits until
// Interrupt. Only the session under test runs it, so it needs no locks
// beyond the channels.
type stallTransport struct {
	pending     func()
	full        bool
	interrupted chan struct{}
	closed      chan uint16
}

func newStallTransport() *stallTransport {
	return &stallTransport{interrupted: make(chan struct{}), closed: make(chan uint16, 1)}
}

func (t *stallTransport) Schedule(flush func()) { t.pending = flush }
func (t *stallTransport) Write([]*Frame) error  { return nil }
func (t *stallTransport) Close(code uint16, _ string) {
	t.closed <- code
}
func (t *stallTransport) TryWrite([]*Frame) (bool, error) { return !t.full, nil }
func (t *stallTransport) Drain() error {
	<-t.interrupted
	return errors.New("interrupted")
}
func (t *stallTransport) Interrupt()                          { close(t.interrupted) }
func (t *stallTransport) Pace() (time.Duration, bool)         { return 0, false }
func (t *stallTransport) ScheduleAfter(time.Duration, func()) {}

// A queue past MaxQueueBytes closes the session only once its client
// stopped taking data (the socket is full): a burst the writers have not
// reached yet is no sign of a slow client, up to burstQueueFactor times the
// limit.
func TestSlowConsumerIsTheStalledOne(t *testing.T) {
	const limit = 1000
	h := NewNode(Options{Node: "t", MaxQueueBytes: limit})
	frame := &Frame{Type: TypeMessage, Bytes: bytes.Repeat([]byte("x"), 300)}

	burst := newStallTransport()
	s := h.NewSession(burst, false)
	for range 3 * limit / len(frame.Bytes) { // 3x the limit, nothing written yet
		s.send(frame)
	}
	if s.isClosed() {
		t.Fatal("a burst of 3x the limit closed a client that was never seen to stall")
	}
	for s.queued+len(frame.Bytes) <= burstQueueFactor*limit {
		s.send(frame)
	}
	s.send(frame)
	if !s.isClosed() {
		t.Fatalf("still open with %d bytes queued, past %dx the limit", s.queued, burstQueueFactor)
	}

	stalled := newStallTransport()
	s = h.NewSession(stalled, false)
	s.send(frame)
	stalled.full = true
	stalled.pending() // the socket takes nothing: the session waits on it
	for i := 0; i <= limit/len(frame.Bytes); i++ {
		s.send(frame)
	}
	select {
	case code := <-stalled.closed:
		if code != CloseSlowConsumer {
			t.Fatalf("closed with %d, want %d", code, CloseSlowConsumer)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled client past the limit was not closed")
	}
	if got := h.Rejections()["slow_consumer"]; got != 2 {
		t.Errorf("%d slow consumers counted, want 2", got)
	}
}

// panicTransport panics in its writes, as a bug in a transport would.
type panicTransport struct{ closed chan uint16 }

func (t *panicTransport) Schedule(flush func())       { go flush() }
func (t *panicTransport) Write([]*Frame) error        { panic("test: a bug in a write") }
func (t *panicTransport) Close(code uint16, _ string) { t.closed <- code }

// A panic in a session's writer closes that session with 1011.
func TestWriterPanicClosesTheSession(t *testing.T) {
	h := NewNode(Options{Node: "t"})
	tr := &panicTransport{closed: make(chan uint16, 1)}
	s := h.NewSession(tr, true)
	before := RecoveredPanics()
	s.send(&Frame{Type: "x", Bytes: []byte(`{"type":"x"}`)})
	select {
	case code := <-tr.closed:
		if code != CloseInternal {
			t.Fatalf("closed with %d, want %d", code, CloseInternal)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session was not closed")
	}
	if !s.isClosed() || RecoveredPanics() == before {
		t.Fatalf("closed %v, panics counted %d", s.isClosed(), RecoveredPanics()-before)
	}
}

// resumeTransport's socket is full at first; its Drain waits until the
// test lets the client read (resume), and each TryWrite after that takes
// everything, the n-th one once the test closes gates[n] (if there is
// one), after telling it so on entered.
type resumeTransport struct {
	resume  chan struct{}
	entered chan int
	gates   map[int]chan struct{}
	calls   int
}

func (t *resumeTransport) Schedule(flush func())               { go flush() }
func (t *resumeTransport) Write([]*Frame) error                { return nil }
func (t *resumeTransport) Close(code uint16, _ string)         {}
func (t *resumeTransport) Interrupt()                          {}
func (t *resumeTransport) Pace() (time.Duration, bool)         { return 0, false }
func (t *resumeTransport) ScheduleAfter(time.Duration, func()) {}
func (t *resumeTransport) Drain() error                        { <-t.resume; return nil }
func (t *resumeTransport) TryWrite([]*Frame) (bool, error) {
	t.calls++
	if t.calls == 1 {
		return false, nil
	}
	if g, ok := t.gates[t.calls]; ok {
		t.entered <- t.calls
		<-g
	}
	return true, nil
}

// A client that stalled and then took everything again counts as reading
// (a burst may queue up to 8x before it is closed), even while more frames
// keep coming, as they do on a steady feed: it used to count as stalled
// until its queue was found empty, and a reader caught up behind a busy
// writer could be closed 4001 at 1x.
func TestResumedClientIsNotStalled(t *testing.T) {
	const limit = 1000
	h := NewNode(Options{Node: "t", MaxQueueBytes: limit})
	frame := &Frame{Type: TypeMessage, Bytes: bytes.Repeat([]byte("x"), 300)}
	tr := &resumeTransport{resume: make(chan struct{}), entered: make(chan int),
		gates: map[int]chan struct{}{2: make(chan struct{}), 3: make(chan struct{})}}
	s := h.NewSession(tr, false)
	s.send(frame) // its flush finds the socket full and waits in Drain
	waitFor(t, "stalled", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.stalled })
	s.send(frame)    // queued behind the full socket
	close(tr.resume) // the client reads: Drain returns, the queue is written
	<-tr.entered     // the second write is under way
	s.send(frame)    // and a frame more comes meanwhile
	close(tr.gates[2])
	<-tr.entered // the third write, for that frame, is under way
	s.mu.Lock()
	stalled := s.stalled
	s.mu.Unlock()
	if stalled {
		t.Error("the session counts as stalled after its socket took everything")
	}
	for range 2 * limit / len(frame.Bytes) { // 2x the limit
		s.send(frame)
	}
	if s.isClosed() {
		t.Error("a reading client was closed at 2x the limit")
	}
	close(tr.gates[3])
}
