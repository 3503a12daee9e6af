// Package telemetry declares what the core reports about jobs, so the
// OpenTelemetry adapter (or a test recorder) can export it.
package telemetry

import (
	"time"

	"github.com/weirstream/weir/core/job"
)

// JobMetrics is the aggregate of what a job's workers last reported.
type JobMetrics struct {
	RecordsIn, RecordsOut uint64
	BytesIn, BytesOut     uint64
	// RecordsInRate, RecordsOutRate, BytesInRate and BytesOutRate are per
	// second over the metrics window.
	RecordsInRate, RecordsOutRate float64
	BytesInRate, BytesOutRate     float64
	// Backpressure is the worst of any subtask, 0 to 1.
	Backpressure float64
	// WatermarkLag is now minus the lowest subtask watermark (0 if none).
	WatermarkLag time.Duration
	// HeartbeatAge is how long ago the job's most silent worker (of those
	// heard from in this run) was last heard from.
	HeartbeatAge time.Duration
}

// MessageOutcome says what became of a worker message the controller
// received.
type MessageOutcome string

// The outcomes of a received worker message.
const (
	// MessageDispatched: handed to the job it belongs to.
	MessageDispatched MessageOutcome = "dispatched"
	// MessageRejected: malformed or of an unknown version; left for the
	// dead-letter queue.
	MessageRejected MessageOutcome = "rejected"
	// MessageDropped: of a job this controller does not run, or at rest.
	MessageDropped MessageOutcome = "dropped"
	// MessageReleased: its job's mailbox was full; handed back for
	// redelivery.
	MessageReleased MessageOutcome = "released"
)

// Recorder receives the job events worth exporting. Calls must not block.
type Recorder interface {
	Transition(id job.ID, from, to job.State, in time.Duration)
	CheckpointFinished(id job.ID, epoch int64, took time.Duration, ok bool)
	Restarted(id job.ID, restarts int)
	Metrics(id job.ID, m JobMetrics)
	// WorkerMessages counts n worker messages received with one outcome.
	WorkerMessages(outcome MessageOutcome, n int)
	// Forget drops what is reported of the job now (its gauges): this
	// controller no longer runs it, because the job came to rest or the
	// lease was lost, and a successor reports it from now on.
	Forget(id job.ID)
}

// Nop discards everything.
type Nop struct{}

func (Nop) Transition(job.ID, job.State, job.State, time.Duration) {}
func (Nop) CheckpointFinished(job.ID, int64, time.Duration, bool)  {}
func (Nop) Restarted(job.ID, int)                                  {}
func (Nop) Metrics(job.ID, JobMetrics)                             {}
func (Nop) Forget(job.ID)                                          {}
func (Nop) WorkerMessages(MessageOutcome, int)                     {}
