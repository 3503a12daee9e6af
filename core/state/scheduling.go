package state

import (
	"context"
	"fmt"
	"time"

	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

// Scheduling starts a new run: it tears down what is left of earlier runs,
// finds the checkpoint to restore, launches the workers, hands them their
// tasks and waits until every worker registered and every task started.
type Scheduling struct {
	base
	waitingForTasks bool
	deadline        time.Time
}

func (*Scheduling) Name() job.State { return job.Scheduling }

func (s *Scheduling) Enter(ctx context.Context, c *Context) (Transition, error) {
	if c.Config.Stop.Requested() {
		return to(stopWithoutRun(c.Config.Stop), "stop requested before the job ran")
	}
	c.closeController()
	id, run := c.Status.JobID, c.Status.RunID
	if err := c.Fleet.Stop(ctx, id, run-1); err != nil {
		return Transition{}, fmt.Errorf("stop workers of earlier runs: %w", err)
	}
	restore, err := controller.PrepareRestore(ctx, c.Store, c.Fence, id)
	if err != nil {
		return Transition{}, fmt.Errorf("find the checkpoint to restore: %w", err)
	}
	layout := controller.NewLayout(c.Config)
	ctl := controller.New(c.controllerDeps(), controller.Run{
		JobID:              id,
		RunID:              run,
		Layout:             layout,
		Program:            c.Config.Spec.Program,
		Restore:            restore,
		CheckpointInterval: c.Config.CheckpointInterval,
	})
	if err := c.Fleet.Start(ctx, fleet.Request{
		JobID:          id,
		RunID:          run,
		Workers:        layout.Workers,
		SlotsPerWorker: c.Config.Spec.SlotsPerWorker,
		Program:        c.Config.Spec.Program,
	}); err != nil {
		ctl.Close()
		return Transition{}, fmt.Errorf("launch %d workers: %w", len(layout.Workers), err)
	}
	if err := ctl.Start(ctx); err != nil {
		ctl.Close()
		return Transition{}, fmt.Errorf("send the start command: %w", err)
	}
	c.Controller = ctl
	c.Status.Parallelism = layout.Parallelism()
	c.Status.RestartNonce = c.Config.RestartNonce
	c.MarkDirty()
	s.waitingForTasks = false
	s.deadline = c.Now().Add(c.Settings.WorkerStartupTimeout)
	c.Logger().Info("run scheduled", "workers", len(layout.Workers),
		"subtasks", layout.Subtasks(), "restore_epoch", restore.Epoch)
	return stay()
}

// Adopt carries on a run whose workers are starting: the start command is
// out, so only the wait is set up again, from take-over. Registration and
// task starts arrive with the workers' next heartbeats.
func (s *Scheduling) Adopt(_ context.Context, c *Context) (Transition, error) {
	s.waitingForTasks = false
	s.deadline = c.Now().Add(c.Settings.WorkerStartupTimeout)
	return stay()
}

func (s *Scheduling) Tick(_ context.Context, c *Context) (Transition, error) {
	ctl := c.Controller
	if err := ctl.CheckWorkers(); err != nil {
		return Transition{}, err
	}
	if f, ok := ctl.TaskFailure(); ok {
		return taskFailed(f)
	}
	now := c.Now()
	if !s.waitingForTasks {
		reg, want := ctl.WorkersRegistered()
		if reg < want {
			if now.After(s.deadline) {
				return Transition{}, Recover(job.DomainExternal, fmt.Errorf(
					"only %d of %d workers registered within %s: check that the workers can start and reach the queue",
					reg, want, c.Settings.WorkerStartupTimeout))
			}
			return stay()
		}
		s.waitingForTasks = true
		s.deadline = now.Add(c.Settings.TaskStartupTimeout)
	}
	running, total := ctl.TasksRunning()
	if running < total {
		if now.After(s.deadline) {
			return Transition{}, Recover(job.DomainExternal, fmt.Errorf(
				"only %d of %d tasks started within %s", running, total, c.Settings.TaskStartupTimeout))
		}
		return stay()
	}
	return to(&Running{}, "every task started")
}

func (s *Scheduling) Config(_ context.Context, c *Context, cfg job.Config) (Transition, error) {
	switch {
	case cfg.Stop.Requested():
		return to(stopWithoutRun(cfg.Stop), "stop requested while scheduling")
	case cfg.RestartNonce != c.Status.RestartNonce:
		return to(&Restarting{Mode: job.RestartForce}, "restart requested while scheduling")
	case layoutChanged(cfg, c.Status.Parallelism):
		return to(&Restarting{Mode: job.RestartForce}, "parallelism changed while scheduling")
	}
	return stay()
}

// stopWithoutRun: before a run is up there is nothing to checkpoint or
// drain, so every stop but force is carried out as immediate.
func stopWithoutRun(mode job.StopMode) State {
	if mode == job.StopForce {
		return &Stopping{Mode: job.StopForce}
	}
	return &Stopping{Mode: job.StopImmediate}
}

// taskFailed decides what a failed task means: a failure the worker marked
// as not retryable fails the job; any other recovers it.
func taskFailed(f controller.TaskFailure) (Transition, error) {
	err := fmt.Errorf("task %s[%d] on worker %s failed: %s", f.Operator, f.Subtask, f.WorkerID, f.Message)
	if f.Retry == protocol.RetryNone {
		return Transition{}, &FatalError{Failure: job.Failure{Message: err.Error() + " (not retryable)", Domain: f.Domain}}
	}
	return Transition{}, Recover(f.Domain, err)
}
