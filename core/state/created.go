package state

import (
	"context"

	"github.com/weirstream/weir/core/job"
)

// Created is a job the controller has never scheduled.
type Created struct{ base }

func (*Created) Name() job.State { return job.Created }

func (*Created) Enter(_ context.Context, c *Context) (Transition, error) {
	if c.Config.Stop.Requested() {
		return to(&Stopped{}, "created with a stop request")
	}
	return to(&Scheduling{}, "new job")
}
