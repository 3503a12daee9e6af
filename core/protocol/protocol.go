// Package protocol is worker protocol v1: the JSON envelopes workers send to
// the controller through the queue. One envelope carries a worker's
// heartbeat and the news of all its tasks since the last one.
//
// Decode is strict: anything it accepts is an envelope the controller can act
// on, and anything it rejects is reported with the path of the offending field
// so the message can be dead-lettered with a useful log line. Workers build
// envelopes with a Builder (or by hand) and check them with Encode, which
// applies the same rules.
package protocol

import (
	"time"

	"github.com/weirstream/weir/core/job"
)

// Version is the protocol version this package speaks.
const Version = 1

// MaxEnvelopeBytes bounds one encoded envelope (SQS allows 1 MiB; staying far
// below keeps each send one billed 64 KiB request).
const MaxEnvelopeBytes = 64 * 1024

// Bounds on the parts of an envelope. They keep a hostile or buggy message
// from making the controller allocate much more than its size, and keep what
// ends up in a checkpoint record small.
const (
	// MaxEvents is the most events one envelope may carry.
	MaxEvents = 1024
	// MaxMetrics is the most subtasks one heartbeat may report (about as many
	// as fit in MaxEnvelopeBytes).
	MaxMetrics = 512
	// MaxNameBytes bounds worker and operator ids.
	MaxNameBytes = 256
	// MaxErrorBytes bounds an error message; workers should cut long stack
	// traces down to their first lines.
	MaxErrorBytes = 4096
	// MaxMetadataBytes bounds a subtask's restore metadata. It is stored in
	// the checkpoint record, so it should point at the state (an object key
	// and version), not hold it.
	MaxMetadataBytes = 1024
	// MaxSlots bounds the slots one worker may offer.
	MaxSlots = 1024
)

// Timing defaults of the heartbeat contract (those of the source system).
const (
	// DefaultHeartbeatInterval: a worker sends at least one envelope this
	// often, and at most one unless something urgent happens.
	DefaultHeartbeatInterval = 5 * time.Second
	// DefaultHeartbeatTimeout: a worker the controller has not heard from
	// for this long is taken as dead.
	DefaultHeartbeatTimeout = 30 * time.Second
)

// Envelope is one message from one worker.
type Envelope struct {
	V        int    `json:"v"`
	JobID    job.ID `json:"job"`
	RunID    int64  `json:"run"`
	WorkerID string `json:"worker"`
	// Seq grows with every envelope a worker sends in a run; the controller
	// uses it to drop duplicates and stale heartbeats.
	Seq uint64 `json:"seq"`
	// SentAt is the worker's clock when it sent the envelope. It is for
	// logs and latency figures only: liveness is judged on the controller's
	// own clock. Decode returns it in UTC.
	SentAt time.Time `json:"sent_at"`

	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	Events    []Event    `json:"events,omitempty"`
}

// Heartbeat says the worker is alive and carries its tasks' metrics.
type Heartbeat struct {
	Metrics []TaskMetrics `json:"metrics,omitempty"`
}

// TaskMetrics is one subtask's counters at the time of the heartbeat.
// Counters are totals since the task started, so a lost heartbeat loses no
// counts.
type TaskMetrics struct {
	Operator   string `json:"op"`
	Subtask    int    `json:"subtask"`
	RecordsIn  uint64 `json:"records_in"`
	RecordsOut uint64 `json:"records_out"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	// Backpressure is the share of time the subtask waited on its outputs,
	// 0 to 1.
	Backpressure float64 `json:"backpressure"`
	// WatermarkMs is the subtask's event-time watermark in Unix
	// milliseconds (0: none yet).
	WatermarkMs int64 `json:"watermark_ms,omitempty"`
}

// Kind names an event.
type Kind string

const (
	WorkerRegistered    Kind = "worker_registered"
	TaskStarted         Kind = "task_started"
	TaskFinished        Kind = "task_finished"
	TaskFailed          Kind = "task_failed"
	CheckpointEvent     Kind = "checkpoint_event"
	CheckpointCompleted Kind = "checkpoint_completed"
	CommitFinished      Kind = "commit_finished"
	NonFatalError       Kind = "error"
)

// Kinds lists every event kind of protocol v1.
var Kinds = []Kind{
	WorkerRegistered, TaskStarted, TaskFinished, TaskFailed,
	CheckpointEvent, CheckpointCompleted, CommitFinished, NonFatalError,
}

// Urgent reports whether news of this kind should reach the controller
// before the next heartbeat: the controller waits on it (registration, task
// start and end, checkpoint and commit completion) or must act on it (a
// failure). Checkpoint phases and non-fatal errors are informational and
// ride along with the next heartbeat.
func (k Kind) Urgent() bool {
	switch k {
	case WorkerRegistered, TaskStarted, TaskFinished, TaskFailed, CheckpointCompleted, CommitFinished:
		return true
	}
	return false
}

// RetryHint says whether a failed task may be retried.
type RetryHint string

const (
	// RetryNone: retrying cannot help (bad user code or config); the
	// controller fails the job instead of restarting it.
	RetryNone RetryHint = "none"
	// RetryBackoff: the failure may pass; restart after a back-off.
	RetryBackoff RetryHint = "backoff"
)

// Phase is a step a subtask reached while checkpointing, reported with
// checkpoint_event for progress display.
type Phase string

const (
	PhaseAlignmentStarted  Phase = "alignment_started"
	PhaseCheckpointStarted Phase = "checkpoint_started"
	PhaseSyncFinished      Phase = "sync_finished"
	PhasePreCommit         Phase = "pre_commit"
)

// Phases lists every checkpoint phase of protocol v1, in the order a subtask
// goes through them.
var Phases = []Phase{PhaseAlignmentStarted, PhaseCheckpointStarted, PhaseSyncFinished, PhasePreCommit}

// Event is one piece of news from a worker. Which fields are set depends on
// Kind; Validate checks them, and fields that do not belong to the kind must
// be left empty.
type Event struct {
	Kind     Kind   `json:"kind"`
	Operator string `json:"op,omitempty"`
	Subtask  int    `json:"subtask"`
	Epoch    int64  `json:"epoch,omitempty"`

	// worker_registered
	Slots int `json:"slots,omitempty"`

	// task_failed, error
	Error  string          `json:"error,omitempty"`
	Domain job.ErrorDomain `json:"domain,omitempty"`
	Retry  RetryHint       `json:"retry,omitempty"`

	// checkpoint_event: the phase a subtask reached; informational.
	Phase Phase `json:"phase,omitempty"`

	// checkpoint_completed: the bytes the subtask wrote and what it needs to
	// restore, opaque to weir.
	Bytes    int64  `json:"bytes,omitempty"`
	Metadata string `json:"metadata,omitempty"`
}
