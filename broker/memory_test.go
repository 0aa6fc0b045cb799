package broker_test

import (
	"context"
	"testing"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/broker/brokertest"
)

func TestMemoryContract(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, h broker.Handler) broker.Broker {
		return broker.NewMemory(h)
	})
}

func TestMemoryStore(t *testing.T) {
	m := broker.NewMemory(brokertest.NewRecorder())
	defer m.Close(context.Background())
	brokertest.RunStore(t, m)
}

func TestMemoryPresence(t *testing.T) {
	m := broker.NewMemory(brokertest.NewRecorder())
	defer m.Close(context.Background())
	brokertest.RunPresence(t, m)
}
