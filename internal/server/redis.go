package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/redisbroker"
)

// redisPrefix starts every key and pub/sub channel Herald uses in Redis.
const redisPrefix = "herald:"

// redisStartTimeout bounds connecting to Redis at start.
const redisStartTimeout = 10 * time.Second

// openRedis connects the Redis engine named by cfg.RedisURL (any form of
// the redisbroker package doc: redis://, rediss://, redis+sentinel://,
// redis+cluster://). Losing and regaining the connection is logged by the
// engine; the hub (h) fills the gap from history.
func openRedis(ctx context.Context, cfg Config, h broker.Handler, logger *slog.Logger) (broker.Broker, error) {
	log := logger.With("broker", "redis")
	// go-redis logs failed dials on its own; keep them in our log format.
	redisbroker.SetLibraryLogger(log)
	ctx, cancel := context.WithTimeout(ctx, redisStartTimeout)
	defer cancel()
	return redisbroker.New(ctx, redisbroker.Options{
		URL:    cfg.RedisURL,
		Prefix: redisPrefix,
		Logger: log,
	}, h)
}
