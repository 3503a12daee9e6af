package state

import (
	"context"

	"github.com/weirstream/weir/core/job"
)

// Restarting carries out a restart requested through a new restart nonce:
// safe takes a final checkpoint first, force tears the run down at once.
// Either way the job is then scheduled again.
type Restarting struct {
	reschedule
	Mode job.RestartMode
}

func (*Restarting) Name() job.State { return job.Restarting }

// Adopt carries on a safe restart from its final checkpoint (a force
// restart is never adopted: it was tearing the run down).
func (r *Restarting) Adopt(ctx context.Context, c *Context) (Transition, error) {
	return adoptLive(ctx, c, r)
}

func (r *Restarting) Enter(ctx context.Context, c *Context) (Transition, error) {
	r.what = "restart"
	if r.Mode == job.RestartForce || c.Controller == nil {
		if err := c.teardown(ctx); err != nil {
			return Transition{}, err
		}
		if c.Config.Stop.Requested() {
			return to(&Stopped{}, "stop requested during restart")
		}
		return to(&Scheduling{}, "force restart")
	}
	return r.reschedule.Enter(ctx, c)
}
