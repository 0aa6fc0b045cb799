//go:build linux && !race

package ws

// raceEnabled: the race detector makes frames, and so stacks, larger.
const raceEnabled = false
