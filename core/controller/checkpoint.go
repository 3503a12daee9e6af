package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// OutcomeKind says where the in-flight checkpoint stands.
type OutcomeKind int

const (
	// NoCheckpoint: none is in flight.
	NoCheckpoint OutcomeKind = iota
	// InFlight: still waiting for subtasks to report or commits to be
	// acknowledged.
	InFlight
	// Completed: the epoch is ready.
	Completed
	// Failed: the checkpoint timed out.
	Failed
)

func (k OutcomeKind) String() string {
	switch k {
	case NoCheckpoint:
		return "no checkpoint"
	case InFlight:
		return "in flight"
	case Completed:
		return "completed"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("OutcomeKind(%d)", int(k))
}

// CheckpointOutcome is what AdvanceCheckpoint found.
type CheckpointOutcome struct {
	Kind     OutcomeKind
	Epoch    int64
	ThenStop bool
	// Reason says why a checkpoint failed.
	Reason string
}

// checkpoints is the controller's checkpoint bookkeeping.
type checkpoints struct {
	interval time.Duration
	// jitter in [0,1) delays the first checkpoint by that fraction of the
	// interval, so jobs started together do not checkpoint together.
	jitter     float64
	anchored   bool
	anchor     time.Duration // first Progress call
	startedAny bool
	lastStart  time.Duration
	endedAny   bool
	lastEnd    time.Duration

	nextEpoch int64
	epoch     int64 // the highest epoch this run created (or, before any, the highest before it)
	minEpoch  int64
	lastReady int64
	ownReady  int // checkpoints this run made ready
	failures  int // consecutive failed checkpoints

	commitSubtasks int // subtasks of committing sinks
	cp             inflight
}

// inflight is the one checkpoint in flight; its storage is allocated once
// per run and cleared for every epoch.
type inflight struct {
	active     bool
	replay     bool // replaying the restored epoch's commit
	committing bool // every subtask reported; waiting for commit acks
	thenStop   bool
	epoch      int64
	startedAt  time.Duration
	startWall  time.Time
	timeout    time.Duration

	reported  [][]uint64 // per operator, a bit per subtask
	counts    []int
	bytes     []int64
	meta      []map[int]string
	opsDone   int
	acked     [][]uint64 // per committing operator, a bit per subtask
	acks      int
	committed *job.Checkpoint // the record written when committing began
}

func (c *JobController) initCheckpoints(r Run, jitter float64) {
	c.interval = r.CheckpointInterval
	if c.interval <= 0 {
		c.interval = job.DefaultCheckpointInterval
	}
	c.jitter = min(max(jitter, 0), 1)
	c.nextEpoch = max(r.Restore.NextEpoch, 1)
	c.epoch = c.nextEpoch - 1
	c.minEpoch = r.Restore.MinEpoch
	c.lastReady = r.Restore.Epoch
	cp := &c.cp
	cp.reported = make([][]uint64, len(c.ops))
	cp.acked = make([][]uint64, len(c.ops))
	cp.counts = make([]int, len(c.ops))
	cp.bytes = make([]int64, len(c.ops))
	cp.meta = make([]map[int]string, len(c.ops))
	for i, o := range c.ops {
		words := (o.parallelism + 63) / 64
		cp.reported[i] = make([]uint64, words)
		if o.committing {
			cp.acked[i] = make([]uint64, words)
			c.commitSubtasks += o.parallelism
		}
	}
}

// SetCheckpointInterval applies a new checkpoint interval from now on; zero
// or less means the default.
func (c *JobController) SetCheckpointInterval(d time.Duration) {
	if d <= 0 {
		d = job.DefaultCheckpointInterval
	}
	c.interval = d
}

// CheckpointInFlight reports whether a checkpoint (or the replay of a
// restored epoch's commit) is in flight.
func (c *JobController) CheckpointInFlight() bool { return c.cp.active }

// LastReadyEpoch is the newest ready epoch (the restored one until this run
// made one ready).
func (c *JobController) LastReadyEpoch() int64 { return c.lastReady }

// MinEpoch is the oldest epoch whose state is still needed.
func (c *JobController) MinEpoch() int64 { return c.minEpoch }

func (cp *inflight) begin(c *JobController, epoch int64, thenStop bool, timeout time.Duration) {
	*cp = inflight{
		active: true, thenStop: thenStop, epoch: epoch,
		startedAt: c.now(), startWall: c.clock.Now(), timeout: timeout,
		reported: cp.reported, counts: cp.counts, bytes: cp.bytes, meta: cp.meta, acked: cp.acked,
	}
	for i := range cp.reported {
		clear(cp.reported[i])
		clear(cp.acked[i])
		cp.counts[i], cp.bytes[i], cp.meta[i] = 0, 0, nil
		if c.ops[i].parallelism == 0 {
			cp.opsDone++
		}
	}
}

// beginReplay makes the restored epoch's commit the checkpoint in flight:
// no new checkpoint starts before the sinks have acknowledged it.
func (c *JobController) beginReplay() {
	if c.cp.active {
		return
	}
	c.cp.begin(c, c.restore.Epoch, false, c.settings.CheckpointTimeout)
	c.cp.replay, c.cp.committing = true, true
}

// StartCheckpoint starts a checkpoint: it creates the next epoch in the store
// (in progress) and asks the workers for it. thenStop makes it the final
// checkpoint of the run: the workers stop once it is taken, and it gets
// FinalCheckpointTimeout. It returns ErrCheckpointInFlight while one is in
// flight, except that a retry after the command could not be written
// writes it again.
func (c *JobController) StartCheckpoint(ctx context.Context, thenStop bool) error {
	if c.cp.active {
		if !c.cp.replay && !c.cp.committing && c.cp.thenStop == thenStop && c.cmdsDirty {
			if err := c.flushCommands(ctx); err != nil {
				return fmt.Errorf("ask the workers for checkpoint %d: %w", c.cp.epoch, err)
			}
			return nil
		}
		return fmt.Errorf("checkpoint %d: %w", c.cp.epoch, ErrCheckpointInFlight)
	}
	epoch, err := c.createEpoch(ctx, thenStop)
	if err != nil {
		return err
	}
	timeout := c.settings.CheckpointTimeout
	if thenStop {
		timeout = c.settings.FinalCheckpointTimeout
	}
	c.cp.begin(c, epoch, thenStop, timeout)
	c.startedAny, c.lastStart = true, c.cp.startedAt
	c.cmds.JobID, c.cmds.RunID = c.jobID, c.runID
	c.cmds.Checkpoint = &job.CheckpointCommand{Epoch: epoch, MinEpoch: c.minEpoch, ThenStop: thenStop}
	c.cmdsDirty = true
	c.log.Debug("checkpoint started", "epoch", epoch, "min_epoch", c.minEpoch, "then_stop", thenStop)
	if err := c.flushCommands(ctx); err != nil {
		// The epoch exists and is in flight; AdvanceCheckpoint (or a retry
		// of this call) writes the command again.
		return fmt.Errorf("ask the workers for checkpoint %d: %w", epoch, err)
	}
	return nil
}

// createEpoch records the next epoch as in progress. If the store knows a
// higher epoch than this controller (written by an earlier leader after
// the run was prepared), it moves past it.
func (c *JobController) createEpoch(ctx context.Context, thenStop bool) (int64, error) {
	epoch := c.nextEpoch
	for attempt := 0; ; attempt++ {
		err := c.store.CreateCheckpoint(ctx, c.fence, job.Checkpoint{
			JobID: c.jobID, Epoch: epoch, RunID: c.runID, State: job.CheckpointInProgress,
			ThenStop: thenStop, StartedAt: c.clock.Now(),
		})
		if err == nil {
			c.nextEpoch, c.epoch = epoch+1, epoch
			return epoch, nil
		}
		if !errors.Is(err, store.ErrEpochNotIncreasing) || attempt == 2 {
			return 0, fmt.Errorf("create checkpoint %d of job %s: %w", epoch, c.jobID, err)
		}
		top, merr := c.store.MaxEpoch(ctx, c.jobID)
		if merr != nil {
			return 0, fmt.Errorf("read the highest epoch of job %s after epoch %d was refused: %w", c.jobID, epoch, merr)
		}
		c.log.Warn("checkpoint epoch already used; moving past it", "epoch", epoch, "max_epoch", top)
		epoch = max(top+1, epoch+1)
		c.nextEpoch = epoch
	}
}

// checkpointDue reports whether Progress should start a periodic checkpoint.
func (c *JobController) checkpointDue(now time.Duration) bool {
	due := c.lastStart + c.interval
	if !c.startedAny {
		due = c.anchor + time.Duration(c.jitter*float64(c.interval))
	}
	if now < due {
		return false
	}
	return !c.endedAny || now-c.lastEnd >= c.settings.MinCheckpointPause
}

// AdvanceCheckpoint moves the checkpoint in flight on: once every subtask of
// every operator reported it, the epoch becomes ready, or committing with a
// commit command to the two-phase sinks and ready once each of their
// subtasks acknowledged; past its time-out it fails. It only ever moves the
// in-flight checkpoint; starting one is StartCheckpoint's. Store errors
// leave the checkpoint where it was, so a retry repeats the step.
func (c *JobController) AdvanceCheckpoint(ctx context.Context) (CheckpointOutcome, error) {
	cp := &c.cp
	if !cp.active {
		return CheckpointOutcome{Kind: NoCheckpoint}, nil
	}
	inFlight := CheckpointOutcome{Kind: InFlight, Epoch: cp.epoch, ThenStop: cp.thenStop}
	if err := c.flushCommands(ctx); err != nil {
		return inFlight, fmt.Errorf("checkpoint %d: %w", cp.epoch, err)
	}
	if !cp.committing && cp.opsDone == len(c.ops) {
		if c.commitSubtasks == 0 {
			return c.finishCheckpoint(ctx)
		}
		rec := c.checkpointRecord(job.CheckpointCommitting)
		if err := c.store.UpdateCheckpoint(ctx, c.fence, rec); err != nil {
			return inFlight, fmt.Errorf("record checkpoint %d of job %s as committing: %w", cp.epoch, c.jobID, err)
		}
		cp.committing, cp.committed = true, &rec
		c.cmds.Commit = &job.CommitCommand{Epoch: cp.epoch}
		c.cmdsDirty = true
		c.log.Info("checkpoint committing", "epoch", cp.epoch)
		if err := c.flushCommands(ctx); err != nil {
			return inFlight, fmt.Errorf("ask the sinks to commit checkpoint %d: %w", cp.epoch, err)
		}
	}
	if cp.committing && cp.acks >= c.commitSubtasks {
		return c.finishCheckpoint(ctx)
	}
	if c.now()-cp.startedAt > cp.timeout {
		return c.failCheckpoint(ctx)
	}
	return inFlight, nil
}

// checkpointRecord is the in-flight epoch's record with what every operator
// reported.
func (c *JobController) checkpointRecord(state job.CheckpointState) job.Checkpoint {
	cp := &c.cp
	ops := make(map[string]job.OperatorCheckpoint, len(c.ops))
	for i, o := range c.ops {
		ops[o.id] = job.OperatorCheckpoint{Bytes: cp.bytes[i], Metadata: cp.meta[i]}
	}
	return job.Checkpoint{
		JobID: c.jobID, Epoch: cp.epoch, RunID: c.runID, State: state,
		ThenStop: cp.thenStop, StartedAt: cp.startWall, Operators: ops,
	}
}

func (c *JobController) finishCheckpoint(ctx context.Context) (CheckpointOutcome, error) {
	cp := &c.cp
	inFlight := CheckpointOutcome{Kind: InFlight, Epoch: cp.epoch, ThenStop: cp.thenStop}
	var rec job.Checkpoint
	switch {
	case cp.replay:
		// The restored record holds the operators' metadata from the run
		// that took it; keep it.
		stored, found, err := c.storedCheckpoint(ctx, cp.epoch)
		if err != nil {
			return inFlight, err
		}
		if !found {
			c.log.Warn("replayed commit acknowledged, but its checkpoint record is gone", "epoch", cp.epoch)
			break
		}
		rec = stored
	case cp.committed != nil:
		rec = *cp.committed
	default:
		rec = c.checkpointRecord(job.CheckpointReady)
	}
	if rec.Epoch != 0 {
		rec.State, rec.FinishedAt = job.CheckpointReady, c.clock.Now()
		if err := c.store.UpdateCheckpoint(ctx, c.fence, rec); err != nil {
			return inFlight, fmt.Errorf("record checkpoint %d of job %s as ready: %w", cp.epoch, c.jobID, err)
		}
	}
	took := c.now() - cp.startedAt
	c.lastReady = max(c.lastReady, cp.epoch)
	if !cp.replay {
		c.ownReady++
	}
	c.failures = 0
	c.endedAny, c.lastEnd = true, c.now()
	cp.active = false
	// Written to the record; the next checkpoint starts afresh.
	clear(cp.meta)
	cp.committed = nil
	c.tel.CheckpointFinished(c.jobID, cp.epoch, took, true)
	c.log.Info("checkpoint ready", "epoch", cp.epoch, "took", took.String(), "replayed_commit", cp.replay)
	return CheckpointOutcome{Kind: Completed, Epoch: cp.epoch, ThenStop: cp.thenStop}, nil
}

func (c *JobController) storedCheckpoint(ctx context.Context, epoch int64) (job.Checkpoint, bool, error) {
	cps, err := c.store.ListCheckpoints(ctx, c.jobID)
	if err != nil {
		return job.Checkpoint{}, false, fmt.Errorf("read checkpoint %d of job %s: %w", epoch, c.jobID, err)
	}
	for _, cp := range cps {
		if cp.Epoch == epoch {
			return cp, true, nil
		}
	}
	return job.Checkpoint{}, false, nil
}

// failCheckpoint gives up on the in-flight checkpoint after its time-out.
// An epoch that was committing stays committing: every subtask had written
// its state and the commit decision stands, so the next run replays it.
func (c *JobController) failCheckpoint(ctx context.Context) (CheckpointOutcome, error) {
	cp := &c.cp
	var reason string
	if cp.committing {
		reason = fmt.Sprintf("%d of %d committing subtasks did not acknowledge the commit within %s (first missing: %s)",
			c.commitSubtasks-cp.acks, c.commitSubtasks, cp.timeout, c.firstMissing(cp.acked, true))
	} else {
		reported := 0
		for _, n := range cp.counts {
			reported += n
		}
		reason = fmt.Sprintf("%d of %d subtasks did not report within %s (first missing: %s)",
			len(c.tasks)-reported, len(c.tasks), cp.timeout, c.firstMissing(cp.reported, false))
		rec := c.checkpointRecord(job.CheckpointFailed)
		rec.FinishedAt, rec.Failure = c.clock.Now(), "timed out: "+reason
		if err := c.store.UpdateCheckpoint(ctx, c.fence, rec); err != nil {
			return CheckpointOutcome{Kind: InFlight, Epoch: cp.epoch, ThenStop: cp.thenStop},
				fmt.Errorf("record checkpoint %d of job %s as failed: %w", cp.epoch, c.jobID, err)
		}
	}
	took := c.now() - cp.startedAt
	c.failures++
	c.endedAny, c.lastEnd = true, c.now()
	cp.active = false
	clear(cp.meta) // written to the record
	c.tel.CheckpointFinished(c.jobID, cp.epoch, took, false)
	c.log.Warn("checkpoint failed", "epoch", cp.epoch, "reason", reason,
		"consecutive_failures", c.failures, "tolerated", c.settings.TolerableCheckpointFailures)
	return CheckpointOutcome{Kind: Failed, Epoch: cp.epoch, ThenStop: cp.thenStop, Reason: reason}, nil
}

// firstMissing names the first subtask whose bit is not set, for messages.
func (c *JobController) firstMissing(bits [][]uint64, committingOnly bool) string {
	for i, o := range c.ops {
		if committingOnly && !o.committing {
			continue
		}
		for s := range o.parallelism {
			if bits[i][s>>6]&(1<<(s&63)) == 0 {
				return fmt.Sprintf("%s[%d] on %s", o.id, s, c.workerName(c.tasks[o.offset+s].worker))
			}
		}
	}
	return "none"
}

func (c *JobController) workerName(w int32) string {
	if w < 0 {
		return "no worker"
	}
	return c.workers[w].id
}

// checkpointReported counts one subtask's report that it completed epoch
// (with the bytes it wrote and its restore metadata) if that is the epoch
// in flight; reports of other epochs and repeats are ignored.
func (c *JobController) checkpointReported(t int32, epoch, bytes int64, metadata string) {
	cp := &c.cp
	if !cp.active || cp.committing || epoch != cp.epoch {
		return
	}
	oi := c.opOf(t)
	s := int(t) - c.ops[oi].offset
	word, bit := s>>6, uint64(1)<<(s&63)
	if cp.reported[oi][word]&bit != 0 {
		return
	}
	cp.reported[oi][word] |= bit
	cp.counts[oi]++
	cp.bytes[oi] += bytes
	if metadata != "" {
		if cp.meta[oi] == nil {
			cp.meta[oi] = make(map[int]string, c.ops[oi].parallelism)
		}
		// A copy: the decoded envelope's strings share its whole body.
		cp.meta[oi][s] = strings.Clone(metadata)
	}
	if cp.counts[oi] == c.ops[oi].parallelism {
		cp.opsDone++
	}
}

// commitAcked counts one committing subtask's acknowledgement that it
// committed epoch, if that is the epoch being committed; acks of other
// epochs and repeats are ignored.
func (c *JobController) commitAcked(t int32, epoch int64) {
	cp := &c.cp
	if !cp.active || !cp.committing || epoch != cp.epoch {
		return
	}
	oi := c.opOf(t)
	s := int(t) - c.ops[oi].offset
	word, bit := s>>6, uint64(1)<<(s&63)
	if cp.acked[oi][word]&bit != 0 {
		return
	}
	cp.acked[oi][word] |= bit
	cp.acks++
}
