package controller

import (
	"errors"
	"fmt"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

// HandleMessage applies one decoded envelope from a worker. An envelope of
// another run returns an error wrapping ErrOtherRun. An envelope that names
// a worker, operator or subtask the run does not have, or a subtask another
// worker runs, is refused whole: it returns an error and changes nothing.
//
// Delivery is at-least-once and unordered, so handling is idempotent: an
// exact duplicate is skipped, an older envelope's events are applied (task
// states only move forward and checkpoint reports and commit acks count
// once per subtask), but only the newest envelope of a worker refreshes its
// liveness and metrics, so a redelivered old message can neither hide a dead
// worker nor turn counters back.
func (c *JobController) HandleMessage(env *protocol.Envelope) error {
	if env == nil {
		return errors.New("empty envelope")
	}
	if env.JobID != c.jobID {
		return fmt.Errorf("envelope of job %s reached the controller of job %s", env.JobID, c.jobID)
	}
	if env.RunID != c.runID {
		return fmt.Errorf("envelope of run %d from worker %s (current run %d): %w", env.RunID, env.WorkerID, c.runID, ErrOtherRun)
	}
	wi, ok := c.workerIndex[env.WorkerID]
	if !ok {
		return fmt.Errorf("worker %q is not one of the %d workers of run %d", env.WorkerID, len(c.workers), c.runID)
	}
	if err := c.resolve(env, int32(wi)); err != nil {
		return fmt.Errorf("envelope %d from worker %s refused: %w", env.Seq, env.WorkerID, err)
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
	if env.Heartbeat != nil {
		n := len(env.Heartbeat.Metrics)
		if fresh {
			for i := range env.Heartbeat.Metrics {
				c.applyMetrics(idx[i], &env.Heartbeat.Metrics[i])
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

// resolve checks every metric and event of env against the layout and
// stores the task index each names in c.scratch (metrics first, then
// events; -1 for events that name no task).
func (c *JobController) resolve(env *protocol.Envelope, wi int32) error {
	c.scratch = c.scratch[:0]
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

func (c *JobController) applyEvent(w *worker, t int32, ev *protocol.Event) {
	switch ev.Kind {
	case protocol.WorkerRegistered:
		if !w.registered {
			w.registered = true
			c.registered++
			c.log.Info("worker registered", "worker", w.id, "slots", ev.Slots,
				"registered", c.registered, "expected", len(c.workers))
		}
	case protocol.TaskStarted:
		c.taskStarted(t)
	case protocol.TaskFinished:
		c.taskStarted(t)
		if c.tasks[t].state == taskRunning {
			c.tasks[t].state = taskFinished
			c.finished++
			if c.ops[c.opOf(t)].source {
				c.sourcesFinished++
			}
		}
	case protocol.TaskFailed:
		c.taskFailed(w, t, ev)
	case protocol.CheckpointEvent:
		c.log.Debug("checkpoint progress", "worker", w.id, "operator", ev.Operator,
			"subtask", ev.Subtask, "epoch", ev.Epoch, "phase", ev.Phase)
	case protocol.CheckpointCompleted:
		c.checkpointReported(t, ev)
	case protocol.CommitFinished:
		c.commitAcked(t, ev)
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

func (c *JobController) taskFailed(w *worker, t int32, ev *protocol.Event) {
	switch c.tasks[t].state {
	case taskFinished, taskFailed:
		return
	case taskRunning:
		c.started--
	}
	c.tasks[t].state = taskFailed
	c.failed++
	domain, retry := ev.Domain, ev.Retry
	if domain == "" {
		domain = job.DomainInternal
	}
	if retry == "" {
		retry = protocol.RetryBackoff
	}
	c.log.Error("task failed", "worker", w.id, "operator", ev.Operator, "subtask", ev.Subtask,
		"domain", string(domain), "retry", string(retry), "error", ev.Error)
	if c.failure == nil {
		c.failure = &TaskFailure{
			WorkerID: w.id, Operator: ev.Operator, Subtask: ev.Subtask,
			Message: ev.Error, Domain: domain, Retry: retry,
		}
	}
}
