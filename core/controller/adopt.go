package controller

import (
	"context"
	"errors"
	"fmt"

	"github.com/weirstream/weir/core/job"
)

// ErrNotAdoptable: the stored run cannot be carried on as it is (no start
// command for it, or one that does not fit the job); the caller starts a
// new run instead.
var ErrNotAdoptable = errors.New("run cannot be adopted")

// AdoptRun rebuilds the JobController of a run an earlier leader started, so a
// new leader carries it on with its workers as they are: the run id, the
// task layout and the restored epoch come from the job's command record,
// and the checkpoints from the store. Nothing is asked of the workers. The
// heartbeats they keep sending carry their whole state, so within one
// heartbeat interval the controller knows which of them are registered,
// which tasks run and what they reported of the checkpoint in flight.
//
// A checkpoint of the run that was in flight at take-over is carried on:
// one the workers were asked for stays in flight (with a fresh time-out), one
// that was committing waits for the sinks' acknowledgements, and one whose
// command never reached the record is marked failed. The next epoch is
// above every epoch the job ever had.
func AdoptRun(ctx context.Context, d Deps, cfg job.Config, st job.Status) (*JobController, error) {
	cmds, err := d.Store.GetCommands(ctx, st.JobID)
	if err != nil {
		return nil, fmt.Errorf("read the command record of job %s: %w", st.JobID, err)
	}
	if err := sameRun(st, cmds); err != nil {
		return nil, err
	}
	cps, err := d.Store.ListCheckpoints(ctx, st.JobID)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints of job %s: %w", st.JobID, err)
	}
	maxEpoch, err := d.Store.MaxEpoch(ctx, st.JobID)
	if err != nil {
		return nil, fmt.Errorf("read the highest epoch of job %s: %w", st.JobID, err)
	}
	return AdoptRead(ctx, d, cfg, st, RunRecords{Commands: cmds, Checkpoints: cps, MaxEpoch: maxEpoch})
}

// RunRecords are the records of a job that adopting its run reads: the
// command record, the checkpoints (oldest first) and the epoch counter.
type RunRecords struct {
	Commands    job.Commands
	Checkpoints []job.Checkpoint
	MaxEpoch    int64
}

// sameRun says why a command record cannot carry on the status's run.
func sameRun(st job.Status, cmds job.Commands) error {
	if cmds.RunID != st.RunID || cmds.Start == nil {
		return fmt.Errorf("%w: the command record is of run %d, the status of run %d", ErrNotAdoptable, cmds.RunID, st.RunID)
	}
	return nil
}

// AdoptRead is AdoptRun from records the caller read after claiming the
// job (a bulk take-over, store.Takeover): it reads nothing.
func AdoptRead(ctx context.Context, d Deps, cfg job.Config, st job.Status, rec RunRecords) (*JobController, error) {
	cmds, cps, maxEpoch := rec.Commands, rec.Checkpoints, rec.MaxEpoch
	if err := sameRun(st, cmds); err != nil {
		return nil, err
	}
	layout, err := layoutOf(cfg, st.Parallelism, cmds.Start.Assignments)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAdoptable, err)
	}
	restore := Restore{Epoch: cmds.Start.RestoreEpoch, MinEpoch: st.MinEpoch, NextEpoch: maxEpoch + 1}
	var inFlight *job.Checkpoint
	for i := range cps {
		cp := &cps[i]
		restore.NextEpoch = max(restore.NextEpoch, cp.Epoch+1)
		if cp.RunID != st.RunID {
			continue
		}
		switch cp.State {
		case job.CheckpointReady:
			st.LastReadyEpoch = max(st.LastReadyEpoch, cp.Epoch)
		case job.CheckpointInProgress, job.CheckpointCommitting:
			if inFlight == nil || cp.Epoch > inFlight.Epoch {
				inFlight = cp
			}
		}
	}
	if restore.MinEpoch == 0 {
		restore.MinEpoch = restore.Epoch
	}
	c := New(d, Run{
		JobID:              st.JobID,
		RunID:              st.RunID,
		Layout:             layout,
		Program:            cmds.Start.Program,
		Restore:            restore,
		CheckpointInterval: cfg.CheckpointInterval,
	})
	c.lastReady = max(c.lastReady, st.LastReadyEpoch)
	inFlight, err = c.abandonUnasked(ctx, cps, inFlight, cmds)
	if err == nil {
		err = c.Adopt(cmds, inFlight)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.log.Info("run adopted", "workers", len(c.workers), "subtasks", len(c.tasks),
		"last_ready_epoch", c.lastReady, "checkpoint_in_flight", c.cp.active, "epoch", c.cp.epoch)
	return c, nil
}

// abandonUnasked marks failed the run's checkpoints still in progress that
// can never complete: every one but the one the command record asks for.
// It returns the checkpoint to carry on, if any.
func (c *JobController) abandonUnasked(ctx context.Context, cps []job.Checkpoint, inFlight *job.Checkpoint, cmds job.Commands) (*job.Checkpoint, error) {
	for _, cp := range cps {
		if cp.State != job.CheckpointInProgress || cp.RunID != c.runID {
			continue
		}
		if inFlight != nil && cp.Epoch == inFlight.Epoch && cmds.Checkpoint != nil && cmds.Checkpoint.Epoch == cp.Epoch {
			continue
		}
		cp.State = job.CheckpointFailed
		cp.FinishedAt = c.clock.Now()
		cp.Failure = "abandoned at controller take-over: the workers were never asked for it"
		if err := c.store.UpdateCheckpoint(ctx, c.fence, cp); err != nil {
			return nil, fmt.Errorf("mark abandoned checkpoint %d of job %s failed: %w", cp.Epoch, c.jobID, err)
		}
		if inFlight != nil && inFlight.Epoch == cp.Epoch {
			inFlight = nil
		}
	}
	return inFlight, nil
}

// WatchAllWorkers starts the heartbeat clock of every worker now: a
// worker of an adopted running run that sends nothing from here on is
// taken as dead after the heartbeat time-out, like one that fell silent.
func (c *JobController) WatchAllWorkers() {
	now := c.now()
	for i := range c.workers {
		w := &c.workers[i]
		if !w.heard || w.lastSeen < now {
			w.heard, w.lastSeen = true, now
		}
	}
}

// InFlight describes the checkpoint in flight, if any.
func (c *JobController) InFlight() (epoch int64, thenStop, ok bool) {
	return c.cp.epoch, c.cp.thenStop, c.cp.active && !c.cp.replay
}

// RunID is the run this controller drives.
func (c *JobController) RunID() int64 { return c.runID }

// layoutOf rebuilds a run's layout from the job's spec, the parallelism it
// was scheduled with and the assignments of its start command.
func layoutOf(cfg job.Config, parallelism map[string]int, as []job.TaskAssignment) (Layout, error) {
	var l Layout
	ops := make(map[string]int, len(cfg.Spec.Operators))
	for _, op := range cfg.Spec.Operators {
		p, ok := parallelism[op.ID]
		if !ok {
			return Layout{}, fmt.Errorf("operator %s has no recorded parallelism", op.ID)
		}
		ops[op.ID] = p
		l.Operators = append(l.Operators, OperatorLayout{ID: op.ID, Parallelism: p, Source: op.Source, Committing: op.Committing})
	}
	seen := map[string]bool{}
	placed := 0
	for _, a := range as {
		p, ok := ops[a.OperatorID]
		if !ok || a.Subtask < 0 || a.Subtask >= p {
			return Layout{}, fmt.Errorf("assignment %s[%d] does not fit the job's operators", a.OperatorID, a.Subtask)
		}
		if !seen[a.WorkerID] {
			seen[a.WorkerID] = true
			l.Workers = append(l.Workers, a.WorkerID)
		}
		placed++
	}
	if placed != l.Subtasks() {
		return Layout{}, fmt.Errorf("%d assignments for %d subtasks", placed, l.Subtasks())
	}
	l.Assignments = as
	return l, nil
}

// Adopt makes this controller, built for a run an earlier leader started,
// take the run over without restarting it. cmds is the run's command
// record as it stands; inFlight is the record of the checkpoint it asks for
// while that is still in progress or committing (nil if none is). Nothing
// is written.
//
// Adopt needs nothing else from the old leader: every worker's heartbeat
// carries its whole state (registration, task states, the newest epoch it
// checkpointed and committed), so one heartbeat per worker tells this
// controller all it needs. Liveness is left to the caller: a live run
// starts every worker's heartbeat clock (WatchAllWorkers), a run whose
// workers are still starting waits for them under the start-up time-out.
func (c *JobController) Adopt(cmds job.Commands, inFlight *job.Checkpoint) error {
	if cmds.JobID != c.jobID || cmds.RunID != c.runID {
		return fmt.Errorf("adopt run %d of job %s: the command record is of run %d of job %s: adopt only the run it names",
			c.runID, c.jobID, cmds.RunID, cmds.JobID)
	}
	if inFlight != nil {
		switch {
		case inFlight.JobID != c.jobID || inFlight.RunID != c.runID:
			return fmt.Errorf("adopt run %d of job %s: checkpoint %d belongs to run %d of job %s",
				c.runID, c.jobID, inFlight.Epoch, inFlight.RunID, inFlight.JobID)
		case inFlight.State != job.CheckpointInProgress && inFlight.State != job.CheckpointCommitting:
			return fmt.Errorf("adopt run %d of job %s: checkpoint %d is %s, not in flight: pass nil",
				c.runID, c.jobID, inFlight.Epoch, inFlight.State)
		}
	}
	c.cmds = cmds
	c.cmdsDirty = false
	if inFlight == nil {
		return nil
	}
	timeout := c.settings.CheckpointTimeout
	if inFlight.ThenStop {
		timeout = c.settings.FinalCheckpointTimeout
	}
	c.cp.begin(c, inFlight.Epoch, inFlight.ThenStop, timeout)
	c.cp.startWall = inFlight.StartedAt
	c.startedAny, c.lastStart = true, c.cp.startedAt
	c.epoch = max(c.epoch, inFlight.Epoch)
	c.nextEpoch = max(c.nextEpoch, inFlight.Epoch+1)
	if inFlight.State == job.CheckpointCommitting {
		rec := *inFlight
		c.cp.committing, c.cp.committed = true, &rec
		if c.cmds.Commit == nil || c.cmds.Commit.Epoch != inFlight.Epoch {
			// The old leader recorded the decision but may not have asked
			// the sinks yet; AdvanceCheckpoint writes the request.
			c.cmds.Commit = &job.CommitCommand{Epoch: inFlight.Epoch}
			c.cmdsDirty = true
		}
	}
	return nil
}
