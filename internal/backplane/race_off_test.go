//go:build !race

package backplane

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
