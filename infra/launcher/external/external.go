// Package external is the fleet.Launcher for workers that someone else
// starts and stops: a Kubernetes Deployment or Job, an EC2 Auto Scaling
// group, systemd units. It launches nothing. Each worker registers itself
// through the worker queue with the identity its environment gives it
// (see launcher.WorkerEnv and docs/operations.md), and leaves when the
// command record supersedes its run or tells it to stop.
//
// Start and Stop only check their arguments and log what the controller
// expects, so that an operator can see which workers to provide.
package external

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/infra/launcher"
)

// Launcher launches nothing. It is safe for concurrent use.
type Launcher struct {
	log *slog.Logger
}

var _ fleet.Launcher = (*Launcher)(nil)

// New returns a launcher that logs to log (nil: slog.Default()).
func New(log *slog.Logger) *Launcher {
	if log == nil {
		log = slog.Default()
	}
	return &Launcher{log: log}
}

// Start logs the workers the run waits for; they must be started, with the
// identity variables launcher.WorkerEnv lists, by whatever runs them.
func (l *Launcher) Start(ctx context.Context, req fleet.Request) error {
	if err := launcher.CheckRequest(req); err != nil {
		return fmt.Errorf("external launcher: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.log.Info("waiting for externally started workers to register",
		"job", string(req.JobID), "run_id", req.RunID, "workers", req.Workers,
		"slots_per_worker", req.SlotsPerWorker, "program", req.Program)
	return nil
}

// Stop logs that the job's runs up to runID are over. The workers learn it
// from the command record; whatever started them should let them exit
// (not restart them).
func (l *Launcher) Stop(ctx context.Context, id job.ID, runID int64) error {
	if err := launcher.CheckStop(id, runID); err != nil {
		return fmt.Errorf("external launcher: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.log.Info("runs over: externally started workers should exit", "job", string(id), "up_to_run", runID)
	return nil
}
