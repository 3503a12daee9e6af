package state

import (
	"context"

	"github.com/weirstream/weir/core/job"
)

// Finished is a job whose sources all finished and whose tasks drained. A
// new restart nonce runs it again from the start.
type Finished struct{ base }

func (*Finished) Name() job.State { return job.Finished }

func (*Finished) Enter(context.Context, *Context) (Transition, error) { return stay() }

func (*Finished) Config(_ context.Context, c *Context, cfg job.Config) (Transition, error) {
	if cfg.RestartNonce != c.Status.RestartNonce && !cfg.Stop.Requested() {
		return to(&Scheduling{}, "restart requested after finishing")
	}
	return stay()
}
