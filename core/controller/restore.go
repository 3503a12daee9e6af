package controller

import (
	"context"
	"fmt"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// Restore says where a new run starts from.
type Restore struct {
	// Epoch is the checkpoint the run restores (0: start empty).
	Epoch int64
	// Commit: Epoch was committing when the last run ended. Every subtask
	// had written its state, so the commit decision stands and the run
	// replays it before the epoch counts as ready.
	Commit bool
	// MinEpoch is the oldest epoch whose state is still needed.
	MinEpoch int64
	// NextEpoch is the first epoch this run may create: above every epoch
	// the job ever had, so epochs only grow across runs and fail-overs.
	NextEpoch int64
}

// restorable reports whether a checkpoint's state is complete.
func restorable(s job.CheckpointState) bool {
	return s == job.CheckpointReady || s == job.CheckpointCommitting
}

// PrepareRestore reads a job's checkpoints before a new run: it restores the
// newest ready epoch, or the newest committing one (whose commit the run
// replays) when that is newer. Checkpoints still in progress can never
// complete now that their run is over, so they are marked failed (fenced).
func PrepareRestore(ctx context.Context, s store.Store, f store.Fence, id job.ID) (Restore, error) {
	cps, err := s.ListCheckpoints(ctx, id)
	if err != nil {
		return Restore{}, fmt.Errorf("list checkpoints of job %s: %w", id, err)
	}
	maxEpoch, err := s.MaxEpoch(ctx, id)
	if err != nil {
		return Restore{}, fmt.Errorf("read the highest epoch of job %s: %w", id, err)
	}
	var r Restore
	for _, cp := range cps {
		maxEpoch = max(maxEpoch, cp.Epoch)
		if !restorable(cp.State) {
			continue
		}
		if r.MinEpoch == 0 {
			r.MinEpoch = cp.Epoch
		}
		if cp.Epoch > r.Epoch {
			r.Epoch = cp.Epoch
			r.Commit = cp.State == job.CheckpointCommitting
		}
	}
	for _, cp := range cps {
		if cp.State != job.CheckpointInProgress {
			continue
		}
		cp.State = job.CheckpointFailed
		cp.Failure = fmt.Sprintf("abandoned: run %d ended before every subtask reported", cp.RunID)
		if err := s.UpdateCheckpoint(ctx, f, cp); err != nil {
			return Restore{}, fmt.Errorf("mark abandoned checkpoint %d of job %s failed: %w", cp.Epoch, id, err)
		}
	}
	r.NextEpoch = maxEpoch + 1
	if r.MinEpoch == 0 {
		r.MinEpoch = r.NextEpoch
	}
	return r, nil
}
