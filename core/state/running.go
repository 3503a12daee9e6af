package state

import (
	"context"
	"math"
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
	// firstHealth is when the run's first health summary is due: the one
	// written on entry has no rates yet, and waiting a whole log interval
	// would show a busy job as idle for a minute. Zero once done.
	firstHealth time.Time
}

// firstHealthAfter is how long into Running the first summary is checked
// at the earliest (at most twice that, by the job's phase): the metrics
// have aggregated rates by then (every 2 s by default).
const firstHealthAfter = 10 * time.Second

// syncEpochs copies the controller's checkpoint progress into the status.
// It is persisted with the next status write, and at least every log
// interval — not after every checkpoint, which would double the job's
// write cost for a figure the checkpoint records already hold.
func syncEpochs(c *Context) {
	if e := c.Controller.LastReadyEpoch(); e > c.Status.LastReadyEpoch {
		c.Status.LastReadyAt = c.Now().UTC().Truncate(time.Millisecond)
	}
	c.Status.LastReadyEpoch, c.Status.MinEpoch = c.Controller.LastReadyEpoch(), c.Controller.MinEpoch()
}

func (*Running) Name() job.State { return job.Running }

// healthMoved reports whether the stored health summary would mislead a
// reader now: a worker heard from for the first time, a stored heartbeat
// that reads (now - heartbeat_at, at read time) older than half the
// heartbeat time-out while newer ones were heard, or a record rate that
// changed by more than a tenth. Half the time-out: refreshed once per log
// interval, a healthy job's heartbeat then never reads as timed out (60 s
// since the write plus 20 s between heartbeats stays below the default
// 100 s time-out).
func healthMoved(stored, cur job.Health, now time.Time, timeout time.Duration) bool {
	switch {
	case stored.HeartbeatAt.IsZero() != cur.HeartbeatAt.IsZero():
		return true
	case !cur.HeartbeatAt.IsZero() && now.Sub(stored.HeartbeatAt) > timeout/2 && cur.HeartbeatAt.After(stored.HeartbeatAt):
		return true
	}
	return rateMoved(stored.RecordsInPerSec, cur.RecordsInPerSec) || rateMoved(stored.RecordsOutPerSec, cur.RecordsOutPerSec)
}

func rateMoved(a, b float64) bool {
	return math.Abs(a-b) > 0.1*max(math.Abs(a), math.Abs(b))
}

func (r *Running) Enter(_ context.Context, c *Context) (Transition, error) {
	// Each job takes its periodic step (the job_running line and the
	// status write it may bring) and its first health summary at a phase
	// of its own. Jobs entering Running together (all of them, when a new
	// leader adopts them) would otherwise write their statuses in the same
	// instant every interval: a burst the store answers slowly to every
	// other write, a failure's Recovering among them.
	now, phase := c.Now(), c.Rand()
	r.lastLog = now.Add(-time.Duration(phase * float64(c.Settings.LogInterval)))
	r.loggedEpoch = c.Status.LastReadyEpoch
	first := min(firstHealthAfter, c.Settings.LogInterval)
	r.firstHealth = now.Add(first + time.Duration(phase*float64(first)))
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
	if !r.firstHealth.IsZero() && !now.Before(r.firstHealth) {
		r.firstHealth = time.Time{}
		if healthMoved(c.Status.Health, c.Controller.Health(), now, c.Settings.HeartbeatTimeout) {
			c.MarkDirty()
		}
	}
	if now.Sub(r.lastLog) >= c.Settings.LogInterval {
		r.lastLog = now
		// At most one status write per log interval, and only when an
		// operator would read something else: a new ready epoch, or a
		// health summary that moved (see healthMoved).
		if c.Status.LastReadyEpoch != r.loggedEpoch || healthMoved(c.Status.Health, c.Controller.Health(), now, c.Settings.HeartbeatTimeout) {
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
// restart count, the periodic log line, the run's first health summary.
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
	if !r.firstHealth.IsZero() && r.firstHealth.Before(until) {
		until = r.firstHealth
	}
	return until
}
