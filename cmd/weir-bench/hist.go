package main

import (
	"sync/atomic"
	"time"
)

// hist is a histogram of durations safe for concurrent use without locks:
// 0.1 ms buckets up to 1 s, 10 ms buckets up to about 100 s.
type hist struct {
	buckets [20000]atomic.Int64
	max     atomic.Int64
	n       atomic.Int64
}

func newHist() *hist { return &hist{} }

func bucketOf(d time.Duration) int {
	v := int(d / (100 * time.Microsecond))
	if v < 0 {
		v = 0
	}
	if v >= 10000 {
		v = 10000 + (v-10000)/100
	}
	return min(v, 19999)
}

// upper is the largest duration in bucket b.
func upper(b int) time.Duration {
	if b < 10000 {
		return time.Duration(b+1) * 100 * time.Microsecond
	}
	return time.Second + time.Duration(b-10000+1)*10*time.Millisecond
}

func (h *hist) add(d time.Duration) {
	h.buckets[bucketOf(d)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func (h *hist) reset() {
	for i := range h.buckets {
		h.buckets[i].Store(0)
	}
	h.max.Store(0)
	h.n.Store(0)
}

func (h *hist) count() int64 { return h.n.Load() }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (h *hist) maxMs() float64 { return ms(time.Duration(h.max.Load())) }

// quantileMs is the upper bound of the bucket holding quantile q.
func (h *hist) quantileMs(q float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := int64(q*float64(n-1)) + 1
	var seen int64
	for b := range h.buckets {
		seen += h.buckets[b].Load()
		if seen >= rank {
			return min(ms(upper(b)), h.maxMs())
		}
	}
	return h.maxMs()
}
