package state

import (
	"context"
	"fmt"
	"time"

	"github.com/weirstream/weir/core/job"
)

// Finishing waits, after every source finished, for the rest of the
// pipeline to drain and finish. The finishing time-out bounds only a wait
// without progress: a pipeline whose sinks drain slowly (tasks finishing,
// record counts moving) is waited for, since recovering it would replay a
// bounded job from its last checkpoint; one that is stuck recovers.
type Finishing struct {
	base
	deadline time.Time
	activity uint64
}

func (*Finishing) Name() job.State { return job.Finishing }

func (f *Finishing) Enter(_ context.Context, c *Context) (Transition, error) {
	f.deadline = c.Now().Add(c.Settings.FinishingTimeout)
	if c.Controller != nil {
		f.activity = c.Controller.Activity()
	}
	return stay()
}

// Adopt carries on draining the run as it is.
func (f *Finishing) Adopt(ctx context.Context, c *Context) (Transition, error) {
	return adoptLive(ctx, c, f)
}

func (f *Finishing) Tick(ctx context.Context, c *Context) (Transition, error) {
	ctl := c.Controller
	if err := ctl.CheckWorkers(); err != nil {
		return Transition{}, err
	}
	if fl, ok := ctl.TaskFailure(); ok {
		return taskFailed(fl)
	}
	if ctl.AllTasksFinished() {
		if err := c.teardown(ctx); err != nil {
			return Transition{}, err
		}
		return to(&Finished{}, "every task finished")
	}
	if a := ctl.Activity(); a != f.activity {
		f.activity = a
		f.deadline = c.Now().Add(c.Settings.FinishingTimeout)
	}
	if c.Now().After(f.deadline) {
		return Transition{}, Recover(job.DomainInternal, fmt.Errorf(
			"sources finished but the pipeline made no progress for %s (no task finished, no records moved)", c.Settings.FinishingTimeout))
	}
	return stay()
}

func (f *Finishing) Config(_ context.Context, _ *Context, cfg job.Config) (Transition, error) {
	if cfg.Stop.Requested() {
		mode := cfg.Stop
		if mode == job.StopCheckpoint {
			// The sources are done: draining is the checkpoint's equivalent.
			mode = job.StopGraceful
		}
		return to(&Stopping{Mode: mode}, "stop requested while finishing")
	}
	return stay()
}
