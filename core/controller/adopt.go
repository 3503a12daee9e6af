package controller

import (
	"fmt"

	"github.com/weirstream/weir/core/job"
)

// Adopt makes a new controller take over a run an earlier leader started,
// without restarting it. cmds is the run's command record as it stands;
// inFlight is the record of the checkpoint it asks for while that is still
// in progress or committing (nil if none is). Nothing is written.
//
// Adopt needs nothing else from the old leader: every worker's heartbeat
// carries its whole state (registration, task states, the newest epoch it
// checkpointed and committed), so one heartbeat per worker tells this
// controller all it needs. Every worker's liveness clock starts now, so a
// worker that is gone is timed out within the heartbeat time-out.
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
	now := c.now()
	for i := range c.workers {
		c.workers[i].heard, c.workers[i].lastSeen = true, now
	}
	if inFlight == nil {
		return nil
	}
	timeout := c.settings.CheckpointTimeout
	if inFlight.ThenStop {
		timeout = c.settings.FinalCheckpointTimeout
	}
	c.cp.begin(c, inFlight.Epoch, inFlight.ThenStop, timeout)
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
