package state

import (
	"context"
	"time"

	"github.com/weirstream/weir/core/job"
)

// Failing records why the job failed and tears its workers down.
type Failing struct {
	base
	Failure job.Failure
}

func (*Failing) Name() job.State { return job.Failing }

func (f *Failing) Enter(ctx context.Context, c *Context) (Transition, error) {
	if cur := c.Status.Failure; cur == nil || cur.Message != f.Failure.Message || cur.Domain != f.Failure.Domain {
		failure := f.Failure
		failure.At = c.Now().UTC().Truncate(time.Millisecond)
		c.Status.Failure = &failure
		c.MarkDirty()
	}
	if err := c.teardown(ctx); err != nil {
		return Transition{}, err
	}
	c.Logger().Error("job failed", "domain", f.Failure.Domain, "failure", f.Failure.Message)
	return to(&Failed{}, f.Failure.Message)
}

func (*Failing) retryLimit(d Deps) int { return d.Settings.StopRetryLimit }

// If the workers cannot be torn down the job is failed all the same; the
// log says so.
func (*Failing) escalation(error) State { return &Failed{} }
