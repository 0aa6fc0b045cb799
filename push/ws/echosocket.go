package ws

import (
	"bufio"
	"net/http"
	"time"

	"github.com/lxzan/gws"
)

// NewEchoSocket returns a handler for GET /echo: a WebSocket that sends back
// every frame it receives, as pywebsocket's echo handler and
// echo.websocket.org do. It is for checking a network path (proxies,
// load balancers) before blaming Herald.
func NewEchoSocket(maxFrameBytes int, handshake time.Duration) http.Handler {
	up := gws.NewUpgrader(echoHandler{}, &gws.ServerOption{
		ReadMaxPayloadSize: maxFrameBytes,
		ReadBufferSize:     1024,
		CheckUtf8Enabled:   true,
		HandshakeTimeout:   handshake,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, "cannot take over the connection", http.StatusInternalServerError)
			return
		}
		guard, arm := guardConn(nc, maxFrameBytes, false, nil) // see wsguard.go
		conn, err := up.UpgradeFromConn(nc, bufio.NewReaderSize(guard, 1024), r)
		if err != nil {
			return
		}
		arm(conn)
		go echoReadLoop(conn) // recovers panics: recover.go
	})
}

type echoHandler struct{ gws.BuiltinEventHandler }

func (echoHandler) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	_ = c.WriteMessage(m.Opcode, m.Bytes())
}
