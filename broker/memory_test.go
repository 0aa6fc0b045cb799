package broker_test

import (
	"testing"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
)

func TestMemoryContract(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, h broker.Handler) broker.Broker {
		return broker.NewMemory(h)
	})
}
