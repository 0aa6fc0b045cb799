package api

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/labstack/echo/v4"
)

// presence handles GET /api/channels/:channel/presence?limit=&cursor=:
// the number of distinct users across the cluster and, in presence: true
// namespaces, a page of them (next_cursor fetches the next).
func (s *Server) presence(c echo.Context) error {
	channel, _, err := s.pathChannel(c)
	if err != nil {
		return err
	}
	limit := 0
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > push.MaxPresenceLimit {
			return newError(push.CodeBadRequest, fmt.Sprintf("limit must be an integer 1-%d", push.MaxPresenceLimit))
		}
		limit = n
	}
	page, err := s.node.Presence(c.Request().Context(), channel, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

// channels handles GET /api/channels?prefix=: channels with subscribers on
// any node, with their subscriber counts.
func (s *Server) channels(c echo.Context) error {
	counts, truncated := s.node.ChannelCounts(c.QueryParam("prefix"))
	type entry struct {
		Channel     string `json:"channel"`
		Subscribers int    `json:"subscribers"`
	}
	out := make([]entry, 0, len(counts))
	for name, n := range counts {
		out = append(out, entry{name, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Channel < out[j].Channel })
	return c.JSON(http.StatusOK, map[string]any{"channels": out, "truncated": truncated})
}

// stats handles GET /api/stats: totals across the nodes that reported in
// the last few stats intervals, and each node's figures.
func (s *Server) stats(c echo.Context) error {
	nodes := s.node.Cluster()
	type total struct {
		Nodes           int     `json:"nodes"`
		Connections     int     `json:"connections"`
		Subscriptions   int     `json:"subscriptions"`
		Channels        int     `json:"channels"`
		ReceivedPerSec  float64 `json:"messages_received_per_sec"`
		DeliveredPerSec float64 `json:"messages_delivered_per_sec"`
	}
	t := total{Nodes: len(nodes)}
	distinct := map[string]bool{}
	for i := range nodes {
		n := &nodes[i]
		t.Connections += n.Connections
		t.Subscriptions += n.Subscriptions
		t.ReceivedPerSec += n.ReceivedPerSec
		t.DeliveredPerSec += n.DeliveredPerSec
		for ch := range n.Channels {
			distinct[ch] = true
		}
		n.Channels = nil // listed by /api/channels
	}
	t.Channels = len(distinct)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Node < nodes[j].Node })
	return c.JSON(http.StatusOK, map[string]any{"total": t, "nodes": nodes})
}

// disconnect handles POST /api/disconnect {"user", "ban", "reason"}: every
// connection of user, on every node, is closed with 4004; with ban (a
// duration such as "10m") the user cannot connect again until it passes.
func (s *Server) disconnect(c echo.Context) error {
	var req struct {
		User   string `json:"user"`
		Ban    string `json:"ban"`
		Reason string `json:"reason"`
	}
	if err := s.readJSON(c, &req); err != nil {
		return err
	}
	if req.User == "" {
		return newError(push.CodeBadRequest, `missing "user"`)
	}
	var ban time.Duration
	if req.Ban != "" {
		d, err := time.ParseDuration(req.Ban)
		if err != nil || d < 0 {
			return newError(push.CodeBadRequest, `ban must be a duration such as "10m"`)
		}
		ban = d
	}
	if err := s.node.Disconnect(c.Request().Context(), req.User, req.Reason, ban); err != nil {
		return err
	}
	out := map[string]any{"user": req.User}
	if ban > 0 {
		out["banned_until"] = time.Now().Add(ban).UTC().Format(time.RFC3339)
	}
	return c.JSON(http.StatusOK, out)
}

// pathChannel reads the :channel path parameter (a percent-encoded ':' is
// accepted) and its namespace's rules.
func (s *Server) pathChannel(c echo.Context) (string, *push.Namespace, error) {
	channel, err := url.PathUnescape(c.Param("channel"))
	if err != nil {
		return "", nil, newError(push.CodeInvalidChannel, "bad channel escape in path")
	}
	ns, err := s.node.Namespaces().Lookup(channel)
	return channel, ns, err
}
