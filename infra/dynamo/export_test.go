package dynamo

import (
	"context"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/leader"
	"github.com/weirstream/weir/core/store"
)

// GrantDone is closed when a grant's renew loop has returned, so tests can
// check that no goroutine outlives its grant.
func GrantDone(g leader.Grant) <-chan struct{} { return g.(*grant).done }

// GrantRenewals counts the renewal attempts whose outcome the grant's loop
// has acted on, so tests know when it is waiting for time again.
func GrantRenewals(g leader.Grant) int64 { return g.(*grant).handled.Load() }

// PutReservedCheckpoint writes cp's item as CreateCheckpoint does once the
// epoch is reserved: a put whose reservation happened long before, as
// from a controller paused between the two.
func PutReservedCheckpoint(ctx context.Context, s *Store, f store.Fence, cp job.Checkpoint) error {
	tok := newToken()
	item, err := s.checkpointAttrs(f, tok, cp)
	if err != nil {
		return err
	}
	return s.putCheckpoint(ctx, f, tok, cp, item)
}
