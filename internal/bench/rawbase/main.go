// Command rawbase is the baseline for herald bench: a raw TCP write loop
// behind the same handshake and wire format as Herald. A WebSocket to
// /ws?channel=X (gws, Herald's server options) is answered "subscribed" and
// joins X; POST /api/publish {"channel","data"} builds the message's
// WebSocket frame once and writes it to every connection of the channel in
// the handler, in a loop, straight to the socket (net.Conn.Write: no queue,
// no hub, no broker, no history). Compare its figures with a Herald
// server's, from the same herald bench command.
//
//	go run ./internal/bench/rawbase -listen 127.0.0.1:8091
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strconv"
	"sync"

	"github.com/lxzan/gws"
)

type server struct {
	gws.BuiltinEventHandler
	mu    sync.Mutex
	chans map[string]*channel
}

// channel orders its publishes and joins under mu, as Herald does.
type channel struct {
	mu     sync.Mutex
	conns  []*gws.Conn
	offset uint64
}

func (s *server) channel(name string) *channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.chans[name]
	if ch == nil {
		ch = &channel{}
		s.chans[name] = ch
	}
	return ch
}

func (s *server) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	if string(m.Bytes()) == `{"type":"ping"}` {
		_ = c.WriteMessage(gws.OpcodeText, []byte(`{"type":"pong"}`))
	}
}

func (s *server) OnClose(c *gws.Conn, _ error) {
	v, _ := c.Session().Load("channel")
	name, _ := v.(string)
	ch := s.channel(name)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for i, x := range ch.conns {
		if x == c {
			ch.conns[i] = ch.conns[len(ch.conns)-1]
			ch.conns = ch.conns[:len(ch.conns)-1]
			break
		}
	}
}

func (s *server) publish(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Channel == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	ch := s.channel(req.Channel)
	ch.mu.Lock()
	ch.offset++
	off := ch.offset
	msg := []byte(`{"type":"message","channel":"` + req.Channel + `","offset":` + strconv.FormatUint(off, 10) + `,"epoch":"raw","data":`)
	msg = append(append(msg, req.Data...), '}')
	frame := textFrame(msg)
	for _, c := range ch.conns {
		_, _ = c.NetConn().Write(frame)
	}
	ch.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"channel":"` + req.Channel + `","epoch":"raw","offset":` + strconv.FormatUint(off, 10) + `}`))
}

// textFrame is msg as an unmasked, final WebSocket text frame.
func textFrame(msg []byte) []byte {
	var f []byte
	switch n := len(msg); {
	case n < 126:
		f = []byte{0x81, byte(n)}
	case n <= 0xFFFF:
		f = binary.BigEndian.AppendUint16([]byte{0x81, 126}, uint16(n))
	default:
		f = binary.BigEndian.AppendUint64([]byte{0x81, 127}, uint64(n))
	}
	return append(f, msg...)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8091", "address")
	flag.Parse()
	s := &server{chans: make(map[string]*channel)}
	up := gws.NewUpgrader(s, &gws.ServerOption{ReadBufferSize: 1024, CheckUtf8Enabled: true})
	http.HandleFunc("POST /api/publish", s.publish)
	http.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("channel")
		c, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		c.Session().Store("channel", name)
		ch := s.channel(name)
		ch.mu.Lock()
		_ = c.WriteMessage(gws.OpcodeText, []byte(`{"type":"subscribed","channel":"`+name+`","epoch":"raw","offset":`+strconv.FormatUint(ch.offset, 10)+`}`))
		ch.conns = append(ch.conns, c)
		ch.mu.Unlock()
		go c.ReadLoop()
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}
