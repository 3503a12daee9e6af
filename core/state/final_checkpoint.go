package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weirstream/weir/core/controller"
)

// finalCheckpoint takes the last checkpoint of a run before it is stopped,
// rescaled or restarted: it lets a periodic checkpoint already in flight
// finish (or fail) first — a safe restart requested mid-checkpoint must not
// hang — then takes a then-stop checkpoint and waits for the tasks to
// finish. The whole of it is bounded by the final checkpoint time-out.
type finalCheckpoint struct {
	phase    finalPhase
	deadline time.Time
	// tasksBy bounds the wait for tasks to finish after the checkpoint.
	tasksBy time.Time
	epoch   int64
}

type finalPhase int

const (
	awaitInFlight finalPhase = iota
	awaitFinal
	awaitTasks
	finalDone
)

var errFinalCheckpoint = errors.New("final checkpoint not taken")

func (f *finalCheckpoint) begin(c *Context) {
	f.phase = awaitInFlight
	f.deadline = c.Now().Add(c.Settings.FinalCheckpointTimeout)
	if c.Controller == nil {
		return
	}
	if epoch, thenStop, ok := c.Controller.InFlight(); ok && thenStop {
		// An adopted run whose final checkpoint is already in flight.
		f.phase, f.epoch = awaitFinal, epoch
	}
}

// step moves the final checkpoint on. done is true once the checkpoint is
// ready and the tasks finished (or the stop wait ran out). An error
// wrapping errFinalCheckpoint means it cannot be taken; other errors are
// the controller's and retryable.
func (f *finalCheckpoint) step(ctx context.Context, c *Context) (done bool, err error) {
	ctl := c.Controller
	if ctl == nil || f.phase == finalDone {
		return true, nil
	}
	now := c.Now()
	if f.phase != awaitTasks && now.After(f.deadline) {
		return false, fmt.Errorf("%w: not ready within %s", errFinalCheckpoint, c.Settings.FinalCheckpointTimeout)
	}
	if err := ctl.CheckWorkers(); err != nil {
		return false, fmt.Errorf("%w: %w", errFinalCheckpoint, err)
	}
	if fl, ok := ctl.TaskFailure(); ok {
		return false, fmt.Errorf("%w: task %s[%d] failed: %s", errFinalCheckpoint, fl.Operator, fl.Subtask, fl.Message)
	}
	switch f.phase {
	case awaitInFlight:
		if ctl.CheckpointInFlight() {
			out, err := ctl.AdvanceCheckpoint(ctx)
			if err != nil {
				return false, err
			}
			if out.Kind == controller.InFlight {
				return false, nil
			}
		}
		if err := ctl.StartCheckpoint(ctx, true); err != nil {
			return false, err
		}
		f.phase = awaitFinal
		return false, nil
	case awaitFinal:
		out, err := ctl.AdvanceCheckpoint(ctx)
		if err != nil {
			return false, err
		}
		switch out.Kind {
		case controller.InFlight:
			return false, nil
		case controller.Completed:
			f.epoch = out.Epoch
			f.phase = awaitTasks
			f.tasksBy = now.Add(c.Settings.StopWait)
			// The transition that follows persists the status: a
			// stopped job's status then names the checkpoint it restores.
			syncEpochs(c)
			c.Logger().Info("final checkpoint ready", "epoch", out.Epoch)
		case controller.Failed:
			return false, fmt.Errorf("%w: epoch %d failed: %s", errFinalCheckpoint, out.Epoch, out.Reason)
		default:
			return false, fmt.Errorf("%w: the checkpoint vanished", errFinalCheckpoint)
		}
		fallthrough
	case awaitTasks:
		if ctl.AllTasksFinished() {
			f.phase = finalDone
			return true, nil
		}
		if now.After(f.tasksBy) {
			c.Logger().Warn("tasks did not finish after the final checkpoint; tearing down", "stop_wait", c.Settings.StopWait.String())
			f.phase = finalDone
			return true, nil
		}
	}
	return false, nil
}
