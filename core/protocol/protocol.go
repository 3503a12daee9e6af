// Package protocol is the worker protocol: the JSON envelopes workers send
// to the controller through the queue. In version 2, which Builder speaks,
// every envelope carries the worker's whole current state (its slots, and
// per subtask its state, checkpoint and commit progress and metrics), so a
// lost or repeated message is healed by the next one; events are left for
// news that has no lasting state. Version 1 envelopes (a heartbeat of
// metrics plus one-shot events) are still decoded.
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

// Protocol versions. Decode accepts both; Builder produces Version.
const (
	// V1 is the first version: a heartbeat of metrics and one-shot events.
	V1 = 1
	// V2 carries the worker's whole state in every envelope.
	V2 = 2
	// Version is the newest version, the one workers should send.
	Version = V2
)

// MaxEnvelopeBytes bounds one encoded envelope (SQS allows 1 MiB; staying far
// below keeps each send one billed 64 KiB request).
const MaxEnvelopeBytes = 64 * 1024

// Bounds on the parts of an envelope. They keep a hostile or buggy message
// from making the controller allocate much more than its size, and keep what
// ends up in a checkpoint record small.
const (
	// MaxEvents is the most events one envelope may carry.
	MaxEvents = 1024
	// MaxMetrics is the most subtasks one v1 heartbeat may report (about as
	// many as fit in MaxEnvelopeBytes).
	MaxMetrics = 512
	// MaxTasks is the most subtasks one v2 envelope may report.
	MaxTasks = 512
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

// Timing defaults of the heartbeat contract, chosen for cost: SQS bills
// every send, and heartbeats are most of a quiet job's requests (see the
// cost section of docs/protocol.md for what a shorter interval buys).
const (
	// DefaultHeartbeatInterval: a worker sends at least one envelope this
	// often, and at most one unless its state changes in a way the
	// controller waits on.
	DefaultHeartbeatInterval = 20 * time.Second
	// DefaultHeartbeatTimeout: a worker the controller has not heard from
	// for this long is taken as dead. Five intervals, so that a few lost or
	// late envelopes never kill a healthy worker, and below the default
	// healthy duration of the restart policy (2 minutes): a job whose
	// workers die must be found out before it counts as healthy, or its
	// restarts would never run out.
	DefaultHeartbeatTimeout = 5 * DefaultHeartbeatInterval
)

// Envelope is one message from one worker. Which fields it has depends on
// V: Slots and Tasks belong to version 2, Heartbeat to version 1; Validate
// rejects a field of the other version.
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

	// Slots (v2) is the number of task slots the worker offers. Every v2
	// envelope carries it: receiving one registers the worker.
	Slots int `json:"slots,omitempty"`
	// Tasks (v2) is the state of the worker's subtasks, one entry each.
	Tasks []Task `json:"tasks,omitempty"`

	// Heartbeat (v1 only) says the worker is alive and carries metrics.
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	Events    []Event    `json:"events,omitempty"`
}

// TaskState is where a subtask stands on its worker. It only moves
// forward: scheduled, running, then finished or failed.
type TaskState string

const (
	// Scheduled: assigned to the worker, not yet running (it may be
	// restoring its state).
	Scheduled TaskState = "scheduled"
	// Running: processing records.
	Running TaskState = "running"
	// Finished: ended normally (a bounded source ran out, a stop was
	// carried out, a final checkpoint was taken).
	Finished TaskState = "finished"
	// Failed: cannot go on; Error, Domain and Retry say why.
	Failed TaskState = "failed"
)

// TaskStates lists every task state, in the order a subtask moves through
// them (finished and failed are both final).
var TaskStates = []TaskState{Scheduled, Running, Finished, Failed}

// Task is one subtask's whole state in a v2 envelope: where it stands, its
// checkpoint and commit progress and its counters. It is flat and holds no
// pointers, so a heartbeat decodes into one slice.
type Task struct {
	Operator string    `json:"op"`
	Subtask  int       `json:"subtask"`
	State    TaskState `json:"state"`

	// Counters are totals since the subtask started, as in TaskMetrics.
	RecordsIn    uint64  `json:"records_in,omitempty"`
	RecordsOut   uint64  `json:"records_out,omitempty"`
	BytesIn      uint64  `json:"bytes_in,omitempty"`
	BytesOut     uint64  `json:"bytes_out,omitempty"`
	Backpressure float64 `json:"backpressure,omitempty"`
	WatermarkMs  int64   `json:"watermark_ms,omitempty"`

	// Checkpointed is the newest epoch whose state the subtask has
	// durably written (0: none yet in this run), with the bytes it wrote
	// and what it needs to restore from that epoch.
	Checkpointed       int64  `json:"checkpointed,omitempty"`
	CheckpointBytes    int64  `json:"checkpoint_bytes,omitempty"`
	CheckpointMetadata string `json:"checkpoint_metadata,omitempty"`
	// Committed is the newest epoch a committing sink subtask has
	// committed (0: none yet in this run).
	Committed int64 `json:"committed,omitempty"`

	// Error, Domain and Retry say why a failed subtask failed; they are
	// set only while State is Failed.
	Error  string          `json:"error,omitempty"`
	Domain job.ErrorDomain `json:"domain,omitempty"`
	Retry  RetryHint       `json:"retry,omitempty"`
}

// Metrics returns the subtask's counters in the form v1 heartbeats carry.
func (t *Task) Metrics() TaskMetrics {
	return TaskMetrics{
		Operator: t.Operator, Subtask: t.Subtask,
		RecordsIn: t.RecordsIn, RecordsOut: t.RecordsOut, BytesIn: t.BytesIn, BytesOut: t.BytesOut,
		Backpressure: t.Backpressure, WatermarkMs: t.WatermarkMs,
	}
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

// Kinds lists every event kind of protocol v1. Version 2 keeps only those
// that carry news without lasting state (see InV2); the rest became state.
var Kinds = []Kind{
	WorkerRegistered, TaskStarted, TaskFinished, TaskFailed,
	CheckpointEvent, CheckpointCompleted, CommitFinished, NonFatalError,
}

// InV2 reports whether events of this kind exist in protocol v2: checkpoint
// phases and non-fatal errors. What the other kinds told in v1 is state in
// v2 (Envelope.Slots, Task.State, Task.Checkpointed, Task.Committed), sent
// again in every envelope rather than once.
func (k Kind) InV2() bool { return k == CheckpointEvent || k == NonFatalError }

// Urgent reports whether news of this v1 kind should reach the controller
// before the next heartbeat: the controller waits on it (registration, task
// start and end, checkpoint and commit completion) or must act on it (a
// failure). Checkpoint phases and non-fatal errors are informational and
// ride along with the next heartbeat. In v2 the same news is a change of
// state, which Builder.SetTask treats as urgent.
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
