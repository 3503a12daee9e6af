package state

import (
	"context"
	"fmt"
	"time"

	"github.com/weirstream/weir/core/job"
)

// Recovering handles a failed run: past the allowed restarts the job
// fails; otherwise the run is torn down and, after an exponential back-off,
// scheduled again from the last ready checkpoint. Entering counts a restart
// (see edges.go).
type Recovering struct {
	base
	Cause error
	until time.Time
}

func (*Recovering) Name() job.State { return job.Recovering }

func (r *Recovering) Enter(ctx context.Context, c *Context) (Transition, error) {
	cause := r.Cause
	if cause == nil {
		cause = fmt.Errorf("unknown failure")
	}
	f := failureOf(cause)
	allowed := c.Config.RestartPolicy.AllowedRestarts
	if allowed >= 0 && c.Status.Restarts > allowed {
		return Transition{}, &FatalError{Failure: job.Failure{
			Message: fmt.Sprintf("job failed: exhausted retries (restarted %d times, as many as its restart policy allows); last error: %s",
				allowed, f.Message),
			Domain: f.Domain,
		}}
	}
	// The time is that of the latest occurrence: an operator watching a
	// job that keeps failing the same way sees it is still failing.
	f.At = c.Now().UTC().Truncate(time.Millisecond)
	c.Status.Failure = &f
	c.MarkDirty()
	if err := c.teardown(ctx); err != nil {
		return Transition{}, err
	}
	wait := Backoff(c.Status.Restarts, c.Settings.BackoffInitial, c.Settings.BackoffMax, c.Rand)
	r.until = c.Now().Add(wait)
	c.Logger().Warn("job recovering", "restarts", c.Status.Restarts, "allowed", allowed, "back_off", wait.String(), "cause", f.Message)
	return stay()
}

func (r *Recovering) Tick(_ context.Context, c *Context) (Transition, error) {
	if c.Now().Before(r.until) {
		return stay()
	}
	return to(&Scheduling{}, fmt.Sprintf("restart %d after back-off", c.Status.Restarts))
}

func (r *Recovering) Config(_ context.Context, _ *Context, cfg job.Config) (Transition, error) {
	if cfg.Stop.Requested() {
		return to(stopWithoutRun(cfg.Stop), "stop requested while recovering")
	}
	return stay()
}
