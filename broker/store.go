package broker

import (
	"context"
	"sync"
	"time"
)

// Store is an optional engine capability: small state shared by every
// node, each entry with an expiry, so that what a dead node wrote fades on
// its own. Presence lives in member sets (refreshed by the node that owns
// each member); bans are keys. Engines implement it next to Broker; the
// hub finds it by type assertion.
type Store interface {
	// SetKey stores value under key for ttl.
	SetKey(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// GetKey returns key's value, or nil when it is absent or expired.
	GetKey(ctx context.Context, key string) ([]byte, error)
	// AddMembers adds or refreshes members of set, each valid for ttl.
	AddMembers(ctx context.Context, set string, members map[string][]byte, ttl time.Duration) error
	// RemoveMember removes member from set.
	RemoveMember(ctx context.Context, set, member string) error
	// Members returns set's unexpired members and their values.
	Members(ctx context.Context, set string) (map[string][]byte, error)
}

var _ Store = (*Memory)(nil)

// memStore is the memory engine's Store.
type memStore struct {
	mu   sync.Mutex
	keys map[string]memEntry
	sets map[string]map[string]memEntry
}

type memEntry struct {
	value   []byte
	expires time.Time
}

func (s *memStore) init() {
	s.keys = make(map[string]memEntry)
	s.sets = make(map[string]map[string]memEntry)
}

// expire drops what expired, including entries nobody reads again.
func (s *memStore) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.keys {
		if now.After(e.expires) {
			delete(s.keys, k)
		}
	}
	for name, set := range s.sets {
		for k, e := range set {
			if now.After(e.expires) {
				delete(set, k)
			}
		}
		if len(set) == 0 {
			delete(s.sets, name)
		}
	}
}

// SetKey implements Store.
func (m *Memory) SetKey(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	// A non-nil copy even of an empty value: nil means "absent".
	m.store.keys[key] = memEntry{value: append([]byte{}, value...), expires: m.now().Add(ttl)}
	return nil
}

// GetKey implements Store.
func (m *Memory) GetKey(ctx context.Context, key string) ([]byte, error) {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	e, ok := m.store.keys[key]
	if !ok || m.now().After(e.expires) {
		delete(m.store.keys, key)
		return nil, nil
	}
	return e.value, nil
}

// AddMembers implements Store.
func (m *Memory) AddMembers(ctx context.Context, set string, members map[string][]byte, ttl time.Duration) error {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	s := m.store.sets[set]
	if s == nil {
		s = make(map[string]memEntry)
		m.store.sets[set] = s
	}
	exp := m.now().Add(ttl)
	for k, v := range members {
		s[k] = memEntry{value: append([]byte(nil), v...), expires: exp}
	}
	return nil
}

// RemoveMember implements Store.
func (m *Memory) RemoveMember(ctx context.Context, set, member string) error {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	if s := m.store.sets[set]; s != nil {
		delete(s, member)
		if len(s) == 0 {
			delete(m.store.sets, set)
		}
	}
	return nil
}

// Members implements Store.
func (m *Memory) Members(ctx context.Context, set string) (map[string][]byte, error) {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	now := m.now()
	out := make(map[string][]byte)
	for k, e := range m.store.sets[set] {
		if now.After(e.expires) {
			delete(m.store.sets[set], k)
			continue
		}
		out[k] = e.value
	}
	return out, nil
}
