package dynamo

import "github.com/weirstream/weir/core/leader"

// GrantDone is closed when a grant's renew loop has returned, so tests can
// check that no goroutine outlives its grant.
func GrantDone(g leader.Grant) <-chan struct{} { return g.(*grant).done }

// GrantRenewals counts the renewal attempts whose outcome the grant's loop
// has acted on, so tests know when it is waiting for time again.
func GrantRenewals(g leader.Grant) int64 { return g.(*grant).handled.Load() }
