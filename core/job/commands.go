package job

import "time"

// Commands is the desired state of a job's workers: one small record per job
// that workers read, level-triggered. A worker that missed an update still
// sees the current command because the whole record carries it. Version
// grows with every write so a worker can skip records it has acted on.
type Commands struct {
	JobID   ID    `json:"job_id"`
	RunID   int64 `json:"run_id"`
	Version int64 `json:"version"`

	Start      *StartCommand      `json:"start,omitempty"`
	Checkpoint *CheckpointCommand `json:"checkpoint,omitempty"`
	Commit     *CommitCommand     `json:"commit,omitempty"`
	Stop       *StopCommand       `json:"stop,omitempty"`

	// CheckpointInterval is the controller's periodic checkpoint interval
	// (0: not stated). The controller starts a periodic checkpoint no
	// sooner than this after the previous one started, so a worker that
	// has seen one need not look for the next before this has passed:
	// it reads the record when the next is due and seldom otherwise.
	CheckpointInterval time.Duration `json:"checkpoint_interval,omitempty"`
}

// StartCommand tells the workers of a run which tasks to run and from which
// epoch to restore (0: start empty).
type StartCommand struct {
	Program      string           `json:"program"`
	RestoreEpoch int64            `json:"restore_epoch"`
	Assignments  []TaskAssignment `json:"assignments"`
}

// TaskAssignment places one subtask of one operator on a worker.
type TaskAssignment struct {
	WorkerID   string `json:"worker_id"`
	OperatorID string `json:"operator_id"`
	Subtask    int    `json:"subtask"`
}

// CheckpointCommand asks every task to checkpoint Epoch; MinEpoch is the
// oldest epoch still needed, so workers may drop older state.
type CheckpointCommand struct {
	Epoch    int64 `json:"epoch"`
	MinEpoch int64 `json:"min_epoch"`
	ThenStop bool  `json:"then_stop,omitempty"`
}

// CommitCommand asks two-phase sinks to commit Epoch.
type CommitCommand struct {
	Epoch int64 `json:"epoch"`
}

// StopCommand asks workers to stop in the given mode.
type StopCommand struct {
	Mode StopMode `json:"mode"`
}
