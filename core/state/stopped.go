package state

import (
	"context"

	"github.com/weirstream/weir/core/job"
)

// Stopped is a job at rest by request. Clearing the stop schedules it
// again — unless its TTL has run out, which would only stop it once more.
type Stopped struct{ base }

func (*Stopped) Name() job.State { return job.Stopped }

// Enter acts on the config as it stands: a stop cleared while the job was
// stopping (a stop in progress is not undone) has already been recorded as
// seen, so no later config event would schedule the job.
func (s *Stopped) Enter(ctx context.Context, c *Context) (Transition, error) {
	return s.Config(ctx, c, c.Config)
}

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
