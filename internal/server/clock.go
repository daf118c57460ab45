package server

import "time"

// epoch anchors mono readings.
var epoch = time.Now()

// mono is a reading of the monotonic clock for timing requests: the time
// since epoch. It costs one vDSO call, where time.Now makes two (wall and
// monotonic), and its arithmetic is an integer's.
type mono time.Duration

// monoNow reads the monotonic clock.
func monoNow() mono { return mono(time.Since(epoch)) }

// monoOf is the mono reading of a time taken with time.Now.
func monoOf(t time.Time) mono { return mono(t.Sub(epoch)) }

// since is the time elapsed from m until now.
func (m mono) since() time.Duration { return time.Since(epoch) - time.Duration(m) }

// add is the time d after m, as a time.Time whose monotonic reading is
// right (its wall-clock part, process start plus m, must not be compared
// with the wall clock).
func (m mono) add(d time.Duration) time.Time { return epoch.Add(time.Duration(m) + d) }
