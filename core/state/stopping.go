package state

import (
	"context"
	"fmt"
	"time"

	"github.com/weirstream/weir/core/job"
)

// Stopping asks the workers to stop (graceful or immediate) and waits for
// their tasks to finish, up to the stop wait; then, or at once for a force
// stop, it tears the workers down.
type Stopping struct {
	base
	Mode     job.StopMode
	deadline time.Time
	asked    bool
}

func (*Stopping) Name() job.State { return job.Stopping }

func (s *Stopping) Enter(ctx context.Context, c *Context) (Transition, error) {
	s.deadline = c.Now().Add(c.Settings.StopWait)
	if s.Mode == job.StopForce || c.Controller == nil {
		return s.tearDown(ctx, c, "force stop")
	}
	if !s.asked {
		if err := c.Controller.Stop(ctx, s.Mode); err != nil {
			return Transition{}, fmt.Errorf("send the stop command: %w", err)
		}
		s.asked = true
	}
	return stay()
}

func (s *Stopping) Tick(ctx context.Context, c *Context) (Transition, error) {
	if c.Controller == nil || c.Controller.AllTasksFinished() {
		return s.tearDown(ctx, c, "every task stopped")
	}
	if c.Now().After(s.deadline) {
		c.Logger().Warn("workers did not stop in time; tearing down", "stop_wait", c.Settings.StopWait.String())
		return s.tearDown(ctx, c, "stop wait ran out")
	}
	return stay()
}

func (s *Stopping) Config(ctx context.Context, c *Context, cfg job.Config) (Transition, error) {
	if cfg.Stop == job.StopForce && s.Mode != job.StopForce {
		s.Mode = job.StopForce
		return s.tearDown(ctx, c, "stop escalated to force")
	}
	return stay()
}

func (s *Stopping) tearDown(ctx context.Context, c *Context, reason string) (Transition, error) {
	if err := c.teardown(ctx); err != nil {
		return Transition{}, err
	}
	return to(&Stopped{}, reason)
}

func (*Stopping) escalation(err error) State {
	return &Failing{Failure: job.Failure{Message: "could not stop the job's workers: " + err.Error(), Domain: job.DomainExternal}}
}

func (*Stopping) retryLimit(d Deps) int { return d.Settings.StopRetryLimit }
