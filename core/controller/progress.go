package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

// ProgressKind is what the Running state should do after a Progress call.
type ProgressKind int

const (
	// Continue: nothing calls for a transition.
	Continue ProgressKind = iota
	// Finishing: every source subtask finished; the job is draining.
	Finishing
	// TaskFailed: a task failed; Progress.Failure says which and how.
	TaskFailed
)

func (k ProgressKind) String() string {
	switch k {
	case Continue:
		return "continue"
	case Finishing:
		return "finishing"
	case TaskFailed:
		return "task failed"
	}
	return fmt.Sprintf("ProgressKind(%d)", int(k))
}

// Progress is the result of one pass of the Running loop.
type Progress struct {
	Kind    ProgressKind
	Failure *TaskFailure
}

// TaskFailure is the first task failure a run saw.
type TaskFailure struct {
	WorkerID string
	Operator string
	Subtask  int
	Message  string
	Domain   job.ErrorDomain
	Retry    protocol.RetryHint
}

// Progress is one pass of the Running loop. In order, it checks worker
// liveness (an error wrapping ErrWorkerTimedOut), task failures
// (TaskFailed), source completion (Finishing), then cleans up old
// checkpoints in the background, starts or moves on checkpoints (an error
// wrapping ErrCheckpointsFailing once more fail in a row than tolerated),
// and aggregates metrics. An idle pass costs O(workers): every other check
// reads counters.
func (c *JobController) Progress(ctx context.Context) (Progress, error) {
	if err := c.CheckWorkers(); err != nil {
		return Progress{}, err
	}
	if c.failure != nil {
		f := *c.failure
		return Progress{Kind: TaskFailed, Failure: &f}, nil
	}
	if c.sources > 0 && c.sourcesFinished == c.sources {
		return Progress{Kind: Finishing}, nil
	}
	now := c.now()
	if !c.anchored {
		c.anchored, c.anchor = true, now
	}

	c.cleanupStep()

	if c.cp.active {
		out, err := c.AdvanceCheckpoint(ctx)
		if err != nil {
			return Progress{}, err
		}
		if out.Kind == Failed && c.failures > c.settings.TolerableCheckpointFailures {
			return Progress{}, fmt.Errorf("%d checkpoints in a row failed (%d tolerated); the last, epoch %d: %s: %w",
				c.failures, c.settings.TolerableCheckpointFailures, out.Epoch, out.Reason, ErrCheckpointsFailing)
		}
	} else if !c.cleaning && c.checkpointDue(now) {
		if err := c.StartCheckpoint(ctx, false); err != nil {
			return Progress{}, err
		}
	}

	c.metricsStep(now)
	return Progress{Kind: Continue}, nil
}

// Urgent says a worker has reported what the job must react to now (a
// failed subtask, the end of every source): the next tick acts on it.
func (c *JobController) Urgent() bool {
	return c.failure != nil || (c.sources > 0 && c.sourcesFinished == c.sources)
}

// Quiet is how long from now Progress has nothing to do that time alone
// brings on: the next checkpoint (or the time-out of the one in flight),
// metrics export or worker heartbeat time-out. It is zero whenever
// something is already due: a checkpoint's commands or record to write, a
// cleanup in the background to collect, a failure or finished sources to
// report. What a worker message brings on is not counted: the job's loop
// ticks soon after each.
func (c *JobController) Quiet() time.Duration {
	if !c.anchored || c.cleaning || c.cleanupDue() || c.metricsDue || c.failure != nil ||
		(c.sources > 0 && c.sourcesFinished == c.sources) {
		return 0
	}
	now := c.now()
	var due time.Duration
	switch cp := &c.cp; {
	case !cp.active:
		due = c.lastStart + c.interval
		if !c.startedAny {
			due = c.anchor + time.Duration(c.jitter*float64(c.interval))
		}
		if c.endedAny {
			due = max(due, c.lastEnd+c.settings.MinCheckpointPause)
		}
	case c.cmdsDirty || (!cp.committing && cp.opsDone == len(c.ops)) || (cp.committing && cp.acks >= c.commitSubtasks):
		return 0
	default:
		// Waiting for the subtasks' reports, which come as messages.
		due = cp.startedAt + cp.timeout + 1
	}
	due = min(due, c.nextMetrics)
	for i := range c.workers {
		if w := &c.workers[i]; w.heard {
			due = min(due, w.lastSeen+c.settings.HeartbeatTimeout)
		}
	}
	return max(due-now, 0)
}
