package sqs

import (
	"math/rand/v2"
	"time"
)

// backoff spaces out retries: exponential from base up to max, with "equal
// jitter" (half the delay fixed, half random) so that many receivers that
// failed together do not retry together, while none retries at once.
type backoff struct {
	base, max time.Duration
}

func (b backoff) delay(attempt int) time.Duration {
	d := b.max
	if attempt < 32 {
		if e := b.base << attempt; e > 0 && e < b.max {
			d = e
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
