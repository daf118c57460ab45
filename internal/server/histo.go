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

// bucketBounds are durationBuckets in nanoseconds, for the hot path.
var bucketBounds = func() []int64 {
	b := make([]int64, len(durationBuckets))
	for i, s := range durationBuckets {
		b[i] = int64(s * 1e9)
	}
	return b
}()

// histShard is one shard of a duration histogram.
type histShard struct {
	counts [nBuckets + 1]atomic.Uint64 // per bucket; the last is +Inf
	sumNs  atomic.Uint64
	_      [64]byte // keep the next shard off this one's last cache line
}

// durHist is a sharded histogram of durations with durationBuckets.
type durHist struct {
	shard [shards]histShard
}

// observe records one duration in a shard.
func (h *durHist) observe(shard int, d time.Duration) {
	sh := &h.shard[shard%shards]
	i, _ := slices.BinarySearch(bucketBounds, int64(d)) // first bound >= d: buckets are "le"
	sh.counts[i].Add(1)
	sh.sumNs.Add(uint64(max(d, 0)))
}

// snapshot sums the shards: per-bucket counts (not cumulative), the total
// count and the sum in seconds.
func (h *durHist) snapshot() (counts [nBuckets + 1]uint64, total uint64, sum float64) {
	var ns uint64
	for s := range h.shard {
		sh := &h.shard[s]
		for i := range sh.counts {
			n := sh.counts[i].Load()
			counts[i] += n
			total += n
		}
		ns += sh.sumNs.Load()
	}
	return counts, total, float64(ns) / 1e9
}

// cumulative returns the Prometheus form of a snapshot: upper bound to
// cumulative count, +Inf left out.
func cumulative(counts [nBuckets + 1]uint64) map[float64]uint64 {
	out := make(map[float64]uint64, len(durationBuckets))
	var c uint64
	for i, ub := range durationBuckets {
		c += counts[i]
		out[ub] = c
	}
	return out
}
