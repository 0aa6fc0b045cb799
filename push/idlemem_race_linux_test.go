//go:build linux && race

package push

// raceEnabled: the race detector makes frames, and so stacks, larger.
const raceEnabled = true
