package controller

import (
	"fmt"
	"strings"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

// HandleMessage applies one decoded envelope from a worker. An envelope of
// another run returns an error wrapping ErrOtherRun. An envelope that names
// a worker, operator or subtask the run does not have, or a subtask another
// worker runs, is refused whole: it returns an error wrapping ErrRefused and
// changes nothing. Any other envelope is applied (nil), which includes one
// judged stale: a duplicate, or an old one whose state is already known.
//
// Delivery is at-least-once and unordered, and a v2 envelope carries the
// worker's whole state, so handling is level-triggered and idempotent: an
// exact duplicate is skipped; the state of every envelope, old or new, is
// applied, and since it only moves forward (registration, task states, the
// checkpoint of the epoch in flight and commit acks each count once per
// subtask) an old envelope changes nothing a newer one has said, while any
// envelope heals what a lost one would have said. Only the newest envelope
// of a worker refreshes its liveness and metrics, so a redelivered old
// message can neither hide a dead worker nor turn counters back. v1
// envelopes (one-shot events) are applied by the same rules.
func (c *JobController) HandleMessage(env *protocol.Envelope) error {
	if env == nil {
		return fmt.Errorf("empty envelope: %w", ErrRefused)
	}
	if env.JobID != c.jobID {
		return fmt.Errorf("envelope of job %s reached the controller of job %s: %w", env.JobID, c.jobID, ErrRefused)
	}
	if env.RunID != c.runID {
		return fmt.Errorf("envelope of run %d from worker %s (current run %d): %w", env.RunID, env.WorkerID, c.runID, ErrOtherRun)
	}
	wi, ok := c.workerIndex[env.WorkerID]
	if !ok {
		return fmt.Errorf("worker %q is not one of the %d workers of run %d: %w", env.WorkerID, len(c.workers), c.runID, ErrRefused)
	}
	if err := c.resolve(env, int32(wi)); err != nil {
		return fmt.Errorf("envelope %d from worker %s: %w: %w", env.Seq, env.WorkerID, ErrRefused, err)
	}

	w := &c.workers[wi]
	fresh, dup := w.accept(env.Seq)
	if dup {
		return nil
	}
	if fresh {
		if now := c.now(); !w.heard || now > w.lastSeen {
			w.lastSeen = now
		}
		w.heard = true
	}
	idx := c.scratch
	if env.V >= protocol.V2 {
		c.register(w, env.Slots)
		for i := range env.Tasks {
			c.applyTask(w, idx[i], &env.Tasks[i], fresh)
		}
		idx = idx[len(env.Tasks):]
	}
	if env.Heartbeat != nil {
		n := len(env.Heartbeat.Metrics)
		if fresh {
			for i := range env.Heartbeat.Metrics {
				m := &env.Heartbeat.Metrics[i]
				c.applyMetrics(idx[i], m.RecordsIn, m.RecordsOut, m.BytesIn, m.BytesOut, m.Backpressure, m.WatermarkMs)
			}
		}
		idx = idx[n:]
	}
	for i := range env.Events {
		c.applyEvent(w, idx[i], &env.Events[i])
	}
	return nil
}

// accept records seq and says whether it is the newest envelope of the
// worker so far (fresh) or one already applied (dup). Envelopes older than
// the 64-envelope window cannot be told apart from duplicates; their events
// are applied again, which is harmless.
func (w *worker) accept(seq uint64) (fresh, dup bool) {
	if !w.seqSeen {
		w.seqSeen, w.maxSeq, w.window = true, seq, 1
		return true, false
	}
	if seq > w.maxSeq {
		if shift := seq - w.maxSeq; shift >= 64 {
			w.window = 1
		} else {
			w.window = w.window<<shift | 1
		}
		w.maxSeq = seq
		return true, false
	}
	back := w.maxSeq - seq
	if back >= 64 {
		return false, false
	}
	bit := uint64(1) << back
	if w.window&bit != 0 {
		return false, true
	}
	w.window |= bit
	return false, false
}

// resolve checks every task entry, metric and event of env against the
// layout and stores the task index each names in c.scratch (task entries
// first, then metrics, then events; -1 for events that name no task).
func (c *JobController) resolve(env *protocol.Envelope, wi int32) error {
	c.scratch = c.scratch[:0]
	for i := range env.Tasks {
		ts := &env.Tasks[i]
		t, err := c.taskOf(ts.Operator, ts.Subtask, wi)
		if err != nil {
			return fmt.Errorf("tasks[%d]: %w", i, err)
		}
		// taskOf left the operator's index in lastOpIdx.
		if ts.Committed != 0 && !c.ops[c.lastOpIdx].committing {
			return fmt.Errorf("tasks[%d]: operator %s reports a committed epoch, but it is not a committing sink", i, ts.Operator)
		}
		c.scratch = append(c.scratch, t)
	}
	if env.Heartbeat != nil {
		for i := range env.Heartbeat.Metrics {
			m := &env.Heartbeat.Metrics[i]
			t, err := c.taskOf(m.Operator, m.Subtask, wi)
			if err != nil {
				return fmt.Errorf("metrics[%d]: %w", i, err)
			}
			c.scratch = append(c.scratch, t)
		}
	}
	for i := range env.Events {
		ev := &env.Events[i]
		t := int32(-1)
		switch ev.Kind {
		case protocol.WorkerRegistered:
		case protocol.NonFatalError:
			if ev.Operator != "" {
				var err error
				if t, err = c.taskOf(ev.Operator, ev.Subtask, wi); err != nil {
					return fmt.Errorf("events[%d] (%s): %w", i, ev.Kind, err)
				}
			}
		case protocol.TaskStarted, protocol.TaskFinished, protocol.TaskFailed,
			protocol.CheckpointEvent, protocol.CheckpointCompleted, protocol.CommitFinished:
			var err error
			if t, err = c.taskOf(ev.Operator, ev.Subtask, wi); err != nil {
				return fmt.Errorf("events[%d] (%s): %w", i, ev.Kind, err)
			}
			if ev.Kind == protocol.CommitFinished && !c.ops[c.opIndex[ev.Operator]].committing {
				return fmt.Errorf("events[%d]: commit_finished from operator %s, which is not a committing sink", i, ev.Operator)
			}
		default:
			return fmt.Errorf("events[%d]: unknown kind %q", i, ev.Kind)
		}
		c.scratch = append(c.scratch, t)
	}
	return nil
}

// taskOf finds the task of an operator's subtask and checks that worker wi
// runs it.
func (c *JobController) taskOf(op string, subtask int, wi int32) (int32, error) {
	oi := c.lastOpIdx
	if oi < 0 || op != c.lastOp {
		var ok bool
		if oi, ok = c.opIndex[op]; !ok {
			return 0, fmt.Errorf("operator %q is not in the job's layout", op)
		}
		c.lastOp, c.lastOpIdx = op, oi
	}
	o := &c.ops[oi]
	if subtask < 0 || subtask >= o.parallelism {
		return 0, fmt.Errorf("operator %s has no subtask %d (parallelism %d)", op, subtask, o.parallelism)
	}
	t := int32(o.offset + subtask)
	if got := c.tasks[t].worker; got != wi {
		owner := "no worker"
		if got >= 0 {
			owner = "worker " + c.workers[got].id
		}
		return 0, fmt.Errorf("%s[%d] runs on %s, not on worker %s", op, subtask, owner, c.workers[wi].id)
	}
	return t, nil
}

// opOf returns the operator index of task t.
func (c *JobController) opOf(t int32) int {
	// Operators are few; a linear walk beats a per-task table in memory
	// and is only used on events, not on heartbeats.
	for i := len(c.ops) - 1; i >= 0; i-- {
		if int(t) >= c.ops[i].offset {
			return i
		}
	}
	return 0
}

// register counts a worker as registered; slots is what it offers.
func (c *JobController) register(w *worker, slots int) {
	if w.registered {
		return
	}
	w.registered = true
	c.registered++
	c.log.Info("worker registered", "worker", w.id, "slots", slots,
		"registered", c.registered, "expected", len(c.workers))
}

// applyTask applies one subtask's state from a v2 envelope. Every part
// only moves forward, so applying an old or repeated state is harmless;
// metrics are only taken from the worker's newest envelope (fresh).
func (c *JobController) applyTask(w *worker, t int32, ts *protocol.Task, fresh bool) {
	switch ts.State {
	case protocol.Running:
		c.taskStarted(t)
	case protocol.Finished:
		c.taskFinished(t)
	case protocol.Failed:
		c.taskFailed(w, t, ts.Operator, ts.Subtask, ts.Error, ts.Domain, ts.Retry)
	}
	if ts.Checkpointed != 0 {
		c.checkpointReported(t, ts.Checkpointed, ts.CheckpointBytes, ts.CheckpointMetadata)
	}
	if ts.Committed != 0 {
		c.commitAcked(t, ts.Committed)
	}
	if fresh {
		c.applyMetrics(t, ts.RecordsIn, ts.RecordsOut, ts.BytesIn, ts.BytesOut, ts.Backpressure, ts.WatermarkMs)
	}
}

func (c *JobController) applyEvent(w *worker, t int32, ev *protocol.Event) {
	switch ev.Kind {
	case protocol.WorkerRegistered:
		c.register(w, ev.Slots)
	case protocol.TaskStarted:
		c.taskStarted(t)
	case protocol.TaskFinished:
		c.taskFinished(t)
	case protocol.TaskFailed:
		c.taskFailed(w, t, ev.Operator, ev.Subtask, ev.Error, ev.Domain, ev.Retry)
	case protocol.CheckpointEvent:
		c.log.Debug("checkpoint progress", "worker", w.id, "operator", ev.Operator,
			"subtask", ev.Subtask, "epoch", ev.Epoch, "phase", ev.Phase)
	case protocol.CheckpointCompleted:
		c.checkpointReported(t, ev.Epoch, ev.Bytes, ev.Metadata)
	case protocol.CommitFinished:
		c.commitAcked(t, ev.Epoch)
	case protocol.NonFatalError:
		c.log.Warn("worker reported an error", "worker", w.id, "operator", ev.Operator,
			"subtask", ev.Subtask, "domain", string(ev.Domain), "error", ev.Error)
	}
}

func (c *JobController) taskStarted(t int32) {
	if c.tasks[t].state == taskScheduled {
		c.tasks[t].state = taskRunning
		c.started++
	}
}

// taskFinished moves a task to finished; one that finished without being
// seen running counts as started too.
func (c *JobController) taskFinished(t int32) {
	c.taskStarted(t)
	if c.tasks[t].state == taskRunning {
		c.tasks[t].state = taskFinished
		c.finished++
		if c.ops[c.opOf(t)].source {
			c.sourcesFinished++
		}
	}
}

func (c *JobController) taskFailed(w *worker, t int32, op string, subtask int, msg string, domain job.ErrorDomain, retry protocol.RetryHint) {
	switch c.tasks[t].state {
	case taskFinished, taskFailed:
		return
	case taskRunning:
		c.started--
	}
	c.tasks[t].state = taskFailed
	c.failed++
	if domain == "" {
		domain = job.DomainInternal
	}
	if retry == "" {
		retry = protocol.RetryBackoff
	}
	c.log.Error("task failed", "worker", w.id, "operator", op, "subtask", subtask,
		"domain", string(domain), "retry", string(retry), "error", msg)
	if c.failure == nil {
		// Copies: the decoded envelope's strings share its whole body.
		c.failure = &TaskFailure{
			WorkerID: w.id, Operator: strings.Clone(op), Subtask: subtask,
			Message: strings.Clone(msg), Domain: job.ErrorDomain(strings.Clone(string(domain))), Retry: retry,
		}
	}
}
