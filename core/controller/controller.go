// Package controller is the JobController of one run of a job: its model of
// the run's workers, tasks and checkpoints, the command record it keeps for
// the workers, and Progress, the ordered checks of the Running loop.
//
// A JobController is driven by one goroutine (the job's state machine): its
// methods are not safe for concurrent use. The only goroutine it starts
// itself is the background cleanup of old checkpoints, which it owns and
// which Close stops.
package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/telemetry"
)

var (
	// ErrWorkerTimedOut: a worker stopped sending heartbeats.
	ErrWorkerTimedOut = errors.New("worker timed out")
	// ErrCheckpointsFailing: more checkpoints failed in a row than tolerated.
	ErrCheckpointsFailing = errors.New("checkpoints keep failing")
	// ErrCheckpointInFlight: a checkpoint was asked for while one is running.
	ErrCheckpointInFlight = errors.New("a checkpoint is already in flight")
	// ErrOtherRun: a message belongs to another run of the job; it is
	// stale, and callers acknowledge and drop it.
	ErrOtherRun = errors.New("message from another run of the job")
	// ErrRefused: a message names what the run does not have (a worker,
	// operator or subtask, or a subtask of another worker) and was not
	// applied; redelivering it cannot help, so callers log and drop it.
	ErrRefused = errors.New("message refused")
)

// Deps are what a JobController needs from outside.
type Deps struct {
	Store     store.Store
	Clock     clock.Clock
	Telemetry telemetry.Recorder
	Log       *slog.Logger
	// Fence is the lease's fence number; every write carries it.
	Fence    store.Fence
	Settings Settings
	// Rand returns a number in [0,1) to jitter the first checkpoint; nil
	// uses math/rand.
	Rand func() float64
}

// Run is one run (generation) of a job.
type Run struct {
	JobID              job.ID
	RunID              int64
	Layout             Layout
	Program            string
	Restore            Restore
	CheckpointInterval time.Duration
}

type taskState uint8

const (
	taskScheduled taskState = iota
	taskRunning
	taskFinished
	taskFailed
)

type operator struct {
	id          string
	parallelism int
	offset      int // index of subtask 0 in tasks
	source      bool
	committing  bool
}

type worker struct {
	id         string
	registered bool
	// heard: an envelope of this run arrived from the worker, so its
	// liveness is watched.
	heard    bool
	lastSeen time.Duration // on the controller's clock, since base
	seqSeen  bool
	maxSeq   uint64
	// window has bit i set when envelope maxSeq-i was applied.
	window uint64
}

type task struct {
	state  taskState
	worker int32 // index into workers; -1 when no worker was assigned
}

// JobController runs one run of a job. Build it with New.
type JobController struct {
	store    store.Store
	clock    clock.Clock
	tel      telemetry.Recorder
	log      *slog.Logger
	fence    store.Fence
	settings Settings

	jobID   job.ID
	runID   int64
	program string
	restore Restore
	layout  Layout

	ops         []operator
	opIndex     map[string]int
	workers     []worker
	workerIndex map[string]int
	tasks       []task

	registered      int
	started         int // running or finished
	finished        int
	failed          int
	sources         int // source subtasks
	sourcesFinished int
	failure         *TaskFailure

	// scratch holds the tasks an envelope names, resolved before any of
	// it is applied; reused so a heartbeat allocates nothing.
	scratch []int32
	// lastOp caches the last operator looked up: a worker's metrics come
	// grouped by operator.
	lastOp    string
	lastOpIdx int

	cmds      job.Commands
	cmdsDirty bool

	// base anchors the controller's monotonic time: durations since base.
	base time.Time

	checkpoints
	cleanup
	metrics
}

// New builds the JobController of a run. Settings left zero take their
// defaults; a nil clock, recorder or logger uses the real clock, no
// telemetry and no logging.
func New(d Deps, r Run) *JobController {
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Telemetry == nil {
		d.Telemetry = telemetry.Nop{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Settings == (Settings{}) {
		d.Settings = DefaultSettings()
	}
	if d.Rand == nil {
		d.Rand = rand.Float64
	}
	c := &JobController{
		store:    d.Store,
		clock:    d.Clock,
		tel:      d.Telemetry,
		log:      d.Log.With("job", string(r.JobID), "run_id", r.RunID),
		fence:    d.Fence,
		settings: d.Settings,
		jobID:    r.JobID,
		runID:    r.RunID,
		program:  r.Program,
		restore:  r.Restore,
		layout:   r.Layout,
		base:     d.Clock.Now(),
	}
	c.buildModel(r.Layout)
	c.initCheckpoints(r, d.Rand())
	c.initCleanup()
	c.initMetrics()
	return c
}

func (c *JobController) buildModel(l Layout) {
	c.opIndex = make(map[string]int, len(l.Operators))
	c.ops = make([]operator, 0, len(l.Operators))
	total := 0
	for _, o := range l.Operators {
		if _, dup := c.opIndex[o.ID]; dup {
			// A layout from NewLayout never repeats an operator; keep the
			// first rather than double-count subtasks.
			continue
		}
		p := max(o.Parallelism, 0)
		c.opIndex[o.ID] = len(c.ops)
		c.ops = append(c.ops, operator{id: o.ID, parallelism: p, offset: total, source: o.Source, committing: o.Committing})
		total += p
		if o.Source {
			c.sources += p
		}
	}
	c.workerIndex = make(map[string]int, len(l.Workers))
	c.workers = make([]worker, 0, len(l.Workers))
	for _, id := range l.Workers {
		if _, dup := c.workerIndex[id]; dup {
			continue
		}
		c.workerIndex[id] = len(c.workers)
		c.workers = append(c.workers, worker{id: id})
	}
	c.tasks = make([]task, total)
	for i := range c.tasks {
		c.tasks[i].worker = -1
	}
	perWorker := 0
	for _, a := range l.Assignments {
		oi, ok := c.opIndex[a.OperatorID]
		if !ok || a.Subtask < 0 || a.Subtask >= c.ops[oi].parallelism {
			continue
		}
		w, ok := c.workerIndex[a.WorkerID]
		if !ok {
			continue
		}
		c.tasks[c.ops[oi].offset+a.Subtask].worker = int32(w)
	}
	if len(c.workers) > 0 {
		perWorker = (total + len(c.workers) - 1) / len(c.workers)
	}
	c.scratch = make([]int32, 0, 2*perWorker+8)
	c.lastOpIdx = -1
}

// now is the time on the controller's monotonic clock.
func (c *JobController) now() time.Duration { return c.clock.Since(c.base) }

// Close stops the background cleanup, if one runs, and waits for it.
func (c *JobController) Close() {
	c.closeCleanup()
}

// Start writes the run's start command: the program, the epoch to restore and
// every assignment, plus the replayed commit when the restored epoch was
// committing. Earlier runs' stop and checkpoint commands are cleared. Safe
// to retry.
func (c *JobController) Start(ctx context.Context) error {
	c.cmds = job.Commands{
		JobID:   c.jobID,
		RunID:   c.runID,
		Version: c.cmds.Version,
		Start: &job.StartCommand{
			Program:      c.program,
			RestoreEpoch: c.restore.Epoch,
			Assignments:  c.layout.Assignments,
		},
	}
	if c.restore.Commit && c.restore.Epoch > 0 {
		c.cmds.Commit = &job.CommitCommand{Epoch: c.restore.Epoch}
		c.beginReplay()
	}
	c.cmdsDirty = true
	if err := c.flushCommands(ctx); err != nil {
		return fmt.Errorf("start run %d: %w", c.runID, err)
	}
	return nil
}

// Stop asks the run's workers to stop in the given mode, keeping the rest
// of the command record. Safe to retry.
func (c *JobController) Stop(ctx context.Context, mode job.StopMode) error {
	if !mode.Valid() {
		return fmt.Errorf("stop mode %q is unknown: use checkpoint, graceful, immediate or force", mode)
	}
	if !mode.Requested() {
		return fmt.Errorf("stop mode %q does not stop anything: use checkpoint, graceful, immediate or force", mode)
	}
	c.cmds.JobID, c.cmds.RunID = c.jobID, c.runID
	c.cmds.Stop = &job.StopCommand{Mode: mode}
	c.cmdsDirty = true
	if err := c.flushCommands(ctx); err != nil {
		return fmt.Errorf("stop run %d (%s): %w", c.runID, mode, err)
	}
	return nil
}

// flushCommands writes the command record if it changed since the last
// successful write. A failed write leaves it dirty, so the next call (or a
// retry of the operation) writes it again.
func (c *JobController) flushCommands(ctx context.Context) error {
	if !c.cmdsDirty {
		return nil
	}
	// Every write states the interval in force, so workers read when the
	// next checkpoint is due (a changed interval reaches them with it).
	c.cmds.CheckpointInterval = c.interval
	stored, err := c.store.PutCommands(ctx, c.fence, c.cmds)
	if err != nil {
		return fmt.Errorf("write the command record of job %s: %w", c.jobID, err)
	}
	c.cmds = stored
	c.cmdsDirty = false
	return nil
}

// WorkersRegistered says how many of the run's workers have registered.
func (c *JobController) WorkersRegistered() (registered, expected int) {
	return c.registered, len(c.workers)
}

// TasksRunning says how many subtasks have started and not failed (a
// finished subtask counts as started) out of all of them.
func (c *JobController) TasksRunning() (running, total int) {
	return c.started, len(c.tasks)
}

// AllTasksFinished reports whether every subtask has finished.
func (c *JobController) AllTasksFinished() bool {
	return c.finished == len(c.tasks)
}

// TaskFailure returns the first task failure of the run, if any.
func (c *JobController) TaskFailure() (TaskFailure, bool) {
	if c.failure == nil {
		return TaskFailure{}, false
	}
	return *c.failure, true
}

// CheckWorkers checks heartbeat liveness: a worker heard from in this run
// that has been silent for longer than the heartbeat time-out is taken as
// dead. Workers that never registered are the startup time-out's concern.
func (c *JobController) CheckWorkers() error {
	now := c.now()
	limit := c.settings.HeartbeatTimeout
	worst, worstSilent := -1, time.Duration(0)
	for i := range c.workers {
		w := &c.workers[i]
		if !w.heard {
			continue
		}
		if silent := now - w.lastSeen; silent > limit && silent > worstSilent {
			worst, worstSilent = i, silent
		}
	}
	if worst < 0 {
		return nil
	}
	return fmt.Errorf("worker %s of job %s has sent nothing for %s (heartbeat time-out %s): %w",
		c.workers[worst].id, c.jobID, worstSilent.Round(time.Millisecond), limit, ErrWorkerTimedOut)
}
