// Package leader declares the lease port: at most one controller acts at a
// time, and every grant carries a fence that strictly increases.
package leader

import (
	"context"

	"github.com/weirstream/weir/core/store"
)

// Lease elects the one controller that acts.
type Lease interface {
	// Acquire blocks until this process holds the lease or ctx ends.
	Acquire(ctx context.Context) (Grant, error)
}

// Grant is one tenure as leader.
type Grant interface {
	// Fence is this tenure's number; every controller write carries it.
	Fence() store.Fence
	// Lost is closed when the holder can no longer be sure it holds the
	// lease (it could not renew within its renew deadline), before anyone
	// else could take it over. Leader-only work must stop at once.
	Lost() <-chan struct{}
	// Release gives the lease up so a successor need not wait for expiry.
	Release(ctx context.Context) error
}
