package state

import (
	"context"
	"errors"

	"github.com/weirstream/weir/core/job"
)

// reschedule is what Rescaling and a safe Restarting share: a final
// checkpoint, then a new run (or a stop, if one was requested meanwhile).
type reschedule struct {
	base
	final finalCheckpoint
	what  string
}

func (r *reschedule) Enter(_ context.Context, c *Context) (Transition, error) {
	r.final.begin(c)
	return stay()
}

func (r *reschedule) Tick(ctx context.Context, c *Context) (Transition, error) {
	done, err := r.final.step(ctx, c)
	if errors.Is(err, errFinalCheckpoint) {
		// The new run restores from the last ready checkpoint instead.
		c.Logger().Warn(r.what+" without a final checkpoint", "err", err)
	} else if err != nil {
		return Transition{}, err
	} else if !done {
		return stay()
	}
	if err := c.teardown(ctx); err != nil {
		return Transition{}, err
	}
	if c.Config.Stop.Requested() {
		return to(&Stopped{}, "stop requested during "+r.what)
	}
	return to(&Scheduling{}, r.what)
}

func (r *reschedule) Config(_ context.Context, _ *Context, cfg job.Config) (Transition, error) {
	switch cfg.Stop {
	case job.StopForce, job.StopImmediate:
		return to(&Stopping{Mode: cfg.Stop}, "stop requested during "+r.what)
	}
	// A graceful or checkpoint stop lets the final checkpoint finish and
	// then stops instead of rescheduling (see Tick); a newer restart or
	// parallelism is picked up by the new run.
	return stay()
}

func (*reschedule) retryLimit(d Deps) int { return d.Settings.StopRetryLimit }
