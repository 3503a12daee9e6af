package state

import (
	"context"

	"github.com/weirstream/weir/core/job"
)

// Rescaling takes a final checkpoint and reschedules the job with the task
// layout of the new parallelism.
type Rescaling struct{ reschedule }

func (*Rescaling) Name() job.State { return job.Rescaling }

func (r *Rescaling) Enter(ctx context.Context, c *Context) (Transition, error) {
	r.what = "rescale"
	return r.reschedule.Enter(ctx, c)
}

// Adopt carries on the rescale from its final checkpoint.
func (r *Rescaling) Adopt(ctx context.Context, c *Context) (Transition, error) {
	return adoptLive(ctx, c, r)
}
