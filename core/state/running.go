package state

import (
	"context"
	"time"

	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/job"
)

// Running is the steady state: every tick runs the JobController's
// progress checks, config changes either apply live or lead out of the
// state, the TTL is watched and a job_running event is logged periodically.
type Running struct {
	base
	lastLog time.Time
	// loggedEpoch is the last ready epoch persisted by the periodic log step.
	loggedEpoch int64
}

// syncEpochs copies the controller's checkpoint progress into the status.
// It is persisted with the next status write, and at least every log
// interval — not after every checkpoint, which would double the job's
// write cost for a figure the checkpoint records already hold.
func syncEpochs(c *Context) {
	c.Status.LastReadyEpoch, c.Status.MinEpoch = c.Controller.LastReadyEpoch(), c.Controller.MinEpoch()
}

func (*Running) Name() job.State { return job.Running }

func (r *Running) Enter(_ context.Context, c *Context) (Transition, error) {
	r.lastLog = c.Now()
	r.loggedEpoch = c.Status.LastReadyEpoch
	return stay()
}

// Adopt carries on the running run as it is.
func (r *Running) Adopt(ctx context.Context, c *Context) (Transition, error) {
	return adoptLive(ctx, c, r)
}

func (r *Running) Config(_ context.Context, c *Context, cfg job.Config) (Transition, error) {
	switch {
	case cfg.Stop.Requested():
		return to(stopPath(cfg.Stop), "stop requested ("+string(cfg.Stop)+")")
	case cfg.RestartNonce != c.Status.RestartNonce:
		return to(&Restarting{Mode: cfg.RestartMode}, "restart requested ("+string(cfg.RestartMode)+")")
	case layoutChanged(cfg, c.Status.Parallelism):
		return to(&Rescaling{}, "parallelism changed")
	}
	// Anything else applies to the running job as it is.
	c.Controller.SetCheckpointInterval(cfg.CheckpointInterval)
	return stay()
}

func (r *Running) Tick(ctx context.Context, c *Context) (Transition, error) {
	now := c.Now()
	// The TTL is checked first so a failing progress step cannot hold it up.
	if deadline, ok := ttlDeadline(c); ok && !now.Before(deadline) {
		return to(&Stopping{Mode: job.StopImmediate}, "ttl expired")
	}
	p, err := c.Controller.Progress(ctx)
	if err != nil {
		return Transition{}, err
	}
	switch p.Kind {
	case controller.Finishing:
		return to(&Finishing{}, "every source finished")
	case controller.TaskFailed:
		return taskFailed(*p.Failure)
	}
	healthy := c.Config.RestartPolicy.HealthyDuration
	if c.Status.Restarts > 0 && now.Sub(c.Status.RunStartedAt) >= healthy {
		c.Logger().Info("job healthy again; restart count reset", "restarts", c.Status.Restarts, "healthy_for", now.Sub(c.Status.RunStartedAt).String())
		c.Status.Restarts = 0
		c.Status.Failure = nil
		c.MarkDirty()
	}
	syncEpochs(c)
	if now.Sub(r.lastLog) >= c.Settings.LogInterval {
		r.lastLog = now
		if c.Status.LastReadyEpoch != r.loggedEpoch {
			r.loggedEpoch = c.Status.LastReadyEpoch
			c.MarkDirty()
		}
		c.Logger().Info("job_running",
			"since_transition", now.Sub(c.Status.TransitionedAt).String(),
			"last_ready_epoch", c.Controller.LastReadyEpoch())
	}
	return stay()
}

// QuietUntil is when a tick next has something to do that time alone
// brings on: the controller's next deadline, the TTL, the reset of the
// restart count, the periodic log line.
func (r *Running) QuietUntil(c *Context, now time.Time) time.Time {
	until := now.Add(c.Controller.Quiet())
	if deadline, ok := ttlDeadline(c); ok && deadline.Before(until) {
		until = deadline
	}
	if c.Status.Restarts > 0 {
		if healthy := c.Status.RunStartedAt.Add(c.Config.RestartPolicy.HealthyDuration); healthy.Before(until) {
			until = healthy
		}
	}
	if logAt := r.lastLog.Add(c.Settings.LogInterval); logAt.Before(until) {
		until = logAt
	}
	return until
}
