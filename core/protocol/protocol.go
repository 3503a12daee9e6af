// Package protocol is worker protocol v1: the JSON envelopes workers send to
// the controller through the queue. One envelope carries a worker's
// heartbeat and the news of all its tasks since the last one.
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

// Envelope is one message from one worker.
type Envelope struct {
	V        int    `json:"v"`
	JobID    job.ID `json:"job"`
	RunID    int64  `json:"run"`
	WorkerID string `json:"worker"`
	// Seq grows with every envelope a worker sends in a run; the controller
	// uses it to drop duplicates and stale heartbeats.
	Seq    uint64    `json:"seq"`
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
	Operator     string  `json:"op"`
	Subtask      int     `json:"subtask"`
	RecordsIn    uint64  `json:"records_in"`
	RecordsOut   uint64  `json:"records_out"`
	BytesIn      uint64  `json:"bytes_in"`
	BytesOut     uint64  `json:"bytes_out"`
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

// RetryHint says whether a failed task may be retried.
type RetryHint string

const (
	RetryNone    RetryHint = "none"
	RetryBackoff RetryHint = "backoff"
)

// Event is one piece of news from a worker. Which fields are set depends on
// Kind; Decode checks them.
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

	// checkpoint_event: the phase a subtask reached (for example
	// "alignment_started", "sync_finished"); informational.
	Phase string `json:"phase,omitempty"`

	// checkpoint_completed: the bytes the subtask wrote and what it needs to
	// restore, opaque to weir.
	Bytes    int64  `json:"bytes,omitempty"`
	Metadata string `json:"metadata,omitempty"`
}
