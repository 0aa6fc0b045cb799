package server_test

import (
	"testing"

	"github.com/heraldpush/herald/internal/e2e"
	"github.com/heraldpush/herald/internal/server"
)

// TestE2E runs the end-to-end suite against the nodes the binary runs.
func TestE2E(t *testing.T) { e2e.Run(t, server.Start) }
