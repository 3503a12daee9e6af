package state

import (
	"context"
	"errors"

	"github.com/weirstream/weir/core/job"
)

// CheckpointStopping stops a job after a final checkpoint, so it can be
// started again later exactly where it stopped.
type CheckpointStopping struct {
	base
	final finalCheckpoint
}

func (*CheckpointStopping) Name() job.State { return job.CheckpointStopping }

func (s *CheckpointStopping) Enter(_ context.Context, c *Context) (Transition, error) {
	s.final.begin(c)
	return stay()
}

// Adopt carries on the stop: a final checkpoint already in flight is
// awaited, otherwise one is taken.
func (s *CheckpointStopping) Adopt(ctx context.Context, c *Context) (Transition, error) {
	return adoptLive(ctx, c, s)
}

func (s *CheckpointStopping) Tick(ctx context.Context, c *Context) (Transition, error) {
	done, err := s.final.step(ctx, c)
	if errors.Is(err, errFinalCheckpoint) {
		// Stopping was asked for; without the checkpoint it still happens,
		// and the last ready checkpoint stays the one to restore.
		c.Logger().Warn("stopping without a final checkpoint", "err", err)
		return to(&Stopping{Mode: job.StopImmediate}, err.Error())
	}
	if err != nil {
		return Transition{}, err
	}
	if !done {
		return stay()
	}
	if err := c.teardown(ctx); err != nil {
		return Transition{}, err
	}
	return to(&Stopped{}, "stopped after the final checkpoint")
}

func (s *CheckpointStopping) Config(_ context.Context, _ *Context, cfg job.Config) (Transition, error) {
	// A stop in progress can be made harder, never undone.
	if cfg.Stop == job.StopGraceful || cfg.Stop == job.StopImmediate || cfg.Stop == job.StopForce {
		return to(&Stopping{Mode: cfg.Stop}, "stop escalated to "+string(cfg.Stop))
	}
	return stay()
}

// Stop paths do not restart the job when their retries run out.
func (*CheckpointStopping) escalation(err error) State {
	return &Stopping{Mode: job.StopForce}
}

func (*CheckpointStopping) retryLimit(d Deps) int { return d.Settings.StopRetryLimit }
