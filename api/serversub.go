package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"
)

// serverSubscribe handles POST /api/subscribe {"user", "channel"}: every
// connection of user, on every node, is subscribed to channel (push's
// serversub.go). It answers once the request is on the broker.
func (s *Server) serverSubscribe(c echo.Context) error {
	return s.serverSub(c, s.node.SubscribeUser)
}

// serverUnsubscribe handles POST /api/unsubscribe {"user", "channel"}.
func (s *Server) serverUnsubscribe(c echo.Context) error {
	return s.serverSub(c, s.node.UnsubscribeUser)
}

func (s *Server) serverSub(c echo.Context, do func(ctx context.Context, user, channel string) error) error {
	var req struct {
		User    string `json:"user"`
		Channel string `json:"channel"`
	}
	if err := s.readJSON(c, &req); err != nil {
		return err
	}
	if err := do(c.Request().Context(), req.User, req.Channel); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"user": req.User, "channel": req.Channel})
}
