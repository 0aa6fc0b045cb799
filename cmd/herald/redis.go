package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/heraldpush/herald/broker"
)

func openRedis(ctx context.Context, cfg Config, h broker.Handler, logger *slog.Logger) (broker.Broker, error) {
	return nil, errors.New("redis: engine not wired yet")
}
