package state

import (
	"context"

	"github.com/weirstream/weir/core/job"
)

// Stopped is a job at rest by request. Clearing the stop schedules it
// again — unless its TTL has run out, which would only stop it once more.
type Stopped struct{ base }

func (*Stopped) Name() job.State { return job.Stopped }

func (*Stopped) Enter(context.Context, *Context) (Transition, error) { return stay() }

func (*Stopped) Config(_ context.Context, c *Context, cfg job.Config) (Transition, error) {
	if cfg.Stop.Requested() {
		return stay()
	}
	if deadline, ok := ttlDeadline(c); ok && !c.Now().Before(deadline) {
		c.Logger().Info("stop cleared but the job's TTL has run out; it stays stopped (raise or remove the ttl to run it again)")
		return stay()
	}
	return to(&Scheduling{}, "stop cleared")
}
