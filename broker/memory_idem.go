package broker

import "time"

// idemEntry is what the memory engine remembers of a keyed publish: the
// answer a repeat gets, until when.
type idemEntry struct {
	pos     Position
	expires time.Time
}

// seenLocked returns the position of the publish that used key within its
// window. ch.mu is held.
func (ch *memChannel) seenLocked(key string, now time.Time) (Position, bool) {
	e, ok := ch.keys[key]
	if !ok || now.After(e.expires) {
		return Position{}, false
	}
	return e.pos, true
}

// rememberLocked records key's publish at pos until expires. ch.mu is held.
func (ch *memChannel) rememberLocked(key string, pos Position, expires time.Time) {
	if ch.keys == nil {
		ch.keys = make(map[string]idemEntry)
	}
	ch.keys[key] = idemEntry{pos: pos, expires: expires}
}

// expireKeysLocked forgets the keys past their window (the sweep calls it,
// as Redis expires its keys). ch.mu is held.
func (ch *memChannel) expireKeysLocked(now time.Time) {
	for k, e := range ch.keys {
		if now.After(e.expires) {
			delete(ch.keys, k)
		}
	}
	if len(ch.keys) == 0 {
		ch.keys = nil
	}
}
