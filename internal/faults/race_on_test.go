//go:build race

package faults

// raceEnabled reports whether the race detector is on: it slows every
// goroutine several times over and makes latency spiky, so a canary's p99
// under it says nothing about the server's.
const raceEnabled = true
