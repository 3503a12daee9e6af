package job

import "time"

// CheckpointState is the life of one checkpoint epoch.
type CheckpointState string

const (
	CheckpointInProgress CheckpointState = "in_progress"
	// CheckpointCommitting: every subtask has written its state; two-phase
	// sinks are committing and the epoch is ready once all have acknowledged.
	CheckpointCommitting CheckpointState = "committing"
	CheckpointReady      CheckpointState = "ready"
	CheckpointFailed     CheckpointState = "failed"
	// CheckpointCompacted: superseded and cleaned up; kept as a tombstone
	// only until it is deleted.
	CheckpointCompacted CheckpointState = "compacted"
)

// Checkpoint is one epoch's record. Epochs of a job only grow: the store
// refuses to create an epoch that is not above every epoch it has seen.
type Checkpoint struct {
	JobID      ID              `json:"job_id"`
	Epoch      int64           `json:"epoch"`
	RunID      int64           `json:"run_id"`
	State      CheckpointState `json:"state"`
	ThenStop   bool            `json:"then_stop,omitempty"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	// Operators holds what each operator's subtasks reported, for restore.
	Operators map[string]OperatorCheckpoint `json:"operators,omitempty"`
	Failure   string                        `json:"failure,omitempty"`
}

// OperatorCheckpoint is the metadata of one operator in one epoch.
type OperatorCheckpoint struct {
	Bytes int64 `json:"bytes"`
	// Metadata is opaque to weir: what each subtask said it needs to restore.
	Metadata map[int]string `json:"metadata,omitempty"`
}
