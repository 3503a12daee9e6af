package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

// Subtask names one subtask of the job: an operator and its index.
type Subtask struct {
	Operator string
	Index    int
}

// String renders the subtask as op[index].
func (s Subtask) String() string { return fmt.Sprintf("%s[%d]", s.Operator, s.Index) }

// StartRequest is the start command of the worker's run, for this worker.
type StartRequest struct {
	// Program is the job's program, as the job's spec names it.
	Program string
	// RestoreEpoch is the checkpoint to restore every subtask from; 0
	// means start empty. Where that state is, is the program's business
	// (each subtask's Snapshot.Metadata of the epoch says it).
	RestoreEpoch int64
	// Subtasks are the subtasks assigned to this worker.
	Subtasks []Subtask
}

// CheckpointRequest asks every subtask of the worker for its state at
// Epoch.
type CheckpointRequest struct {
	Epoch int64
	// MinEpoch is the oldest epoch still needed: state of older epochs may
	// be deleted.
	MinEpoch int64
	// ThenStop: the run stops after this checkpoint (and, for committing
	// sinks, its commit); the worker calls Stop with job.StopCheckpoint.
	ThenStop bool
}

// Snapshot is what one subtask wrote for a checkpoint.
type Snapshot struct {
	Subtask Subtask
	// Bytes is how much state the subtask wrote (0 if unchanged).
	Bytes int64
	// Metadata is what the subtask needs to restore from the epoch, at
	// most protocol.MaxMetadataBytes: where the state is, not the state.
	Metadata string
}

// Program is the worker program's own work. The worker calls its methods
// one at a time, from the goroutine that runs Worker.Run, as the command
// record asks; each gets Run's context. A method that blocks holds up the
// reading of further commands (heartbeats go on), so the controller's
// time-outs are what end a hung checkpoint.
type Program interface {
	// Start starts the worker's subtasks, restored from req.RestoreEpoch,
	// and returns once they run. Returning nil reports every subtask
	// running; an error reports every one failed with it (see Failure).
	// The Reporter stays valid for the whole run: use it for metrics and
	// for subtasks that finish or fail later.
	Start(ctx context.Context, req StartRequest, r *Reporter) error
	// Checkpoint writes every subtask's state for req.Epoch, finished
	// subtasks included (their final state), and returns one Snapshot per
	// subtask. A subtask left out is not reported, and the checkpoint
	// times out in the controller. An error is reported as a non-fatal
	// error; the checkpoint is not tried again.
	Checkpoint(ctx context.Context, req CheckpointRequest) ([]Snapshot, error)
	// Commit commits epoch in the worker's committing sinks (see
	// Options.CommittingOperators); it is only called when the worker has
	// some. Committing an epoch twice must be harmless: a new run replays
	// the commit of the epoch it restored. An error is reported and the
	// commit tried again on the next read.
	Commit(ctx context.Context, epoch int64) error
	// Stop stops every subtask: job.StopGraceful drains records in flight
	// first, job.StopImmediate and job.StopCheckpoint (after a final
	// checkpoint) do not. When it returns, every subtask that has not
	// failed is reported finished. The worker also calls it, with
	// job.StopImmediate, when its run is superseded or Run's context ends,
	// so the program's own goroutines end with the worker.
	Stop(ctx context.Context, mode job.StopMode) error
}

// Failure is an error with what the controller needs to decide about it:
// whose fault it is and whether retrying can help. Return it (or wrap it)
// from Program.Start or pass it to Reporter.Fail; other errors count as
// internal and retryable.
type Failure struct {
	Err    error
	Domain job.ErrorDomain
	Retry  protocol.RetryHint
}

// Error returns the underlying error's message.
func (f *Failure) Error() string { return f.Err.Error() }

// Unwrap returns the underlying error.
func (f *Failure) Unwrap() error { return f.Err }

// Fatal is a failure that restarting cannot fix (bad user code or
// config): the controller fails the job instead of restarting it.
func Fatal(domain job.ErrorDomain, err error) *Failure {
	return &Failure{Err: err, Domain: domain, Retry: protocol.RetryNone}
}

// Retryable is a failure that may pass: the controller restarts the job
// after a back-off.
func Retryable(domain job.ErrorDomain, err error) *Failure {
	return &Failure{Err: err, Domain: domain, Retry: protocol.RetryBackoff}
}

// describeFailure gives the error, domain and retry hint to report for err.
func describeFailure(err error) (string, job.ErrorDomain, protocol.RetryHint) {
	msg := err.Error()
	if len(msg) > protocol.MaxErrorBytes {
		msg = msg[:protocol.MaxErrorBytes]
	}
	if msg == "" {
		msg = "failed without a message"
	}
	var f *Failure
	if errors.As(err, &f) && f.Domain != "" && f.Retry != "" {
		return msg, f.Domain, f.Retry
	}
	return msg, job.DomainInternal, protocol.RetryBackoff
}

// Metrics are one subtask's counters: totals since it started.
type Metrics struct {
	RecordsIn, RecordsOut uint64
	BytesIn, BytesOut     uint64
	// Backpressure is the share of time the subtask waited on its
	// outputs, 0 to 1.
	Backpressure float64
	// Watermark is the subtask's event-time watermark (zero: none yet).
	Watermark time.Time
}

// Reporter is how a program tells the worker about its subtasks between
// commands. It is safe for concurrent use.
type Reporter struct{ w *Worker }

// SetMetrics records a subtask's counters; the next heartbeat carries
// them.
func (r *Reporter) SetMetrics(s Subtask, m Metrics) error {
	if math.IsNaN(m.Backpressure) || m.Backpressure < 0 || m.Backpressure > 1 {
		return fmt.Errorf("metrics of %s: backpressure %g must be from 0 to 1", s, m.Backpressure)
	}
	var wm int64
	if !m.Watermark.IsZero() {
		wm = max(m.Watermark.UnixMilli(), 0)
	}
	return r.w.update(s, false, func(t *protocol.Task) {
		t.RecordsIn, t.RecordsOut, t.BytesIn, t.BytesOut = m.RecordsIn, m.RecordsOut, m.BytesIn, m.BytesOut
		t.Backpressure, t.WatermarkMs = m.Backpressure, wm
	})
}

// Finish reports that a subtask ended normally (a bounded source ran out
// of input). A failed subtask stays failed.
func (r *Reporter) Finish(s Subtask) error {
	return r.w.updateNews(s, true, true, finish)
}

// Fail reports that a subtask cannot go on; err says why (see Failure).
// The controller recovers or fails the job. A finished subtask stays
// finished.
func (r *Reporter) Fail(s Subtask, err error) error {
	if err == nil {
		return fmt.Errorf("fail %s: say why: the error is nil", s)
	}
	return r.w.update(s, true, failWith(err))
}

// Warn reports an error the worker survived; the controller logs it. Name
// the subtask it concerns, if one does.
func (r *Reporter) Warn(err error, s ...Subtask) error {
	return r.w.warn(err, s...)
}

// Phase reports a subtask's progress through a checkpoint, for display.
func (r *Reporter) Phase(s Subtask, epoch int64, p protocol.Phase) error {
	return r.w.event(protocol.Event{Kind: protocol.CheckpointEvent, Operator: s.Operator, Subtask: s.Index, Epoch: epoch, Phase: p})
}

func finish(t *protocol.Task) {
	if t.State == protocol.Scheduled || t.State == protocol.Running {
		t.State = protocol.Finished
	}
}

func failWith(err error) func(t *protocol.Task) {
	msg, domain, retry := describeFailure(err)
	return func(t *protocol.Task) {
		if t.State == protocol.Scheduled || t.State == protocol.Running {
			t.State, t.Error, t.Domain, t.Retry = protocol.Failed, msg, domain, retry
		}
	}
}
