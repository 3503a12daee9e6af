package state

import (
	"context"

	"github.com/weirstream/weir/core/job"
)

// Failed is a job at rest after a failure. A new restart nonce schedules
// it again, with its restart count and failure cleared.
type Failed struct{ base }

func (*Failed) Name() job.State { return job.Failed }

func (*Failed) Enter(context.Context, *Context) (Transition, error) { return stay() }

func (*Failed) Config(_ context.Context, c *Context, cfg job.Config) (Transition, error) {
	if cfg.RestartNonce != c.Status.RestartNonce && !cfg.Stop.Requested() {
		return to(&Scheduling{}, "restart requested after failure")
	}
	return stay()
}
