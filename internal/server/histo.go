package server

import (
	"slices"
	"sync/atomic"
	"time"
)

// shards spreads the hot request counters over several copies, each on
// its own cache lines: connections served at the same moment on different
// cores then rarely increment the same counter, which costs far more than
// the increment itself. A session always uses the shard of its id.
const shards = 8

// histShard is one shard of a duration histogram.
type histShard struct {
	counts []atomic.Uint64 // per bucket; the last is +Inf
	sumNs  atomic.Uint64
	_      [64]byte // keep the next shard off this one's last cache line
}

// durHist is a sharded histogram of durations.
type durHist struct {
	bounds []int64 // upper bounds in nanoseconds, for the hot path
	shard  [shards]histShard
}

// newDurHist returns a histogram with the given upper bounds in seconds.
func newDurHist(bounds []float64) *durHist {
	h := &durHist{bounds: make([]int64, len(bounds))}
	for i, s := range bounds {
		h.bounds[i] = int64(s * 1e9)
	}
	for i := range h.shard {
		h.shard[i].counts = make([]atomic.Uint64, len(bounds)+1)
	}
	return h
}

// observe records one duration in a shard.
func (h *durHist) observe(shard int, d time.Duration) { h.observeN(shard, d, 1) }

// observeN counts n durations of d each.
func (h *durHist) observeN(shard int, d time.Duration, n int) {
	sh := &h.shard[shard%shards]
	i, _ := slices.BinarySearch(h.bounds, int64(d)) // first bound >= d: buckets are "le"
	sh.counts[i].Add(uint64(n))
	sh.sumNs.Add(uint64(max(d, 0)) * uint64(n))
}

// snapshot sums the shards.
func (h *durHist) snapshot() Histogram {
	out := Histogram{Counts: make([]uint64, len(h.bounds)+1)}
	var ns uint64
	for s := range h.shard {
		sh := &h.shard[s]
		for i := range sh.counts {
			n := sh.counts[i].Load()
			out.Counts[i] += n
			out.Count += n
		}
		ns += sh.sumNs.Load()
	}
	out.Sum = float64(ns) / 1e9
	return out
}
