package controller

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

// simWorker is a v2 worker as the controller sees it: its whole state,
// sent in full with every envelope.
type simWorker struct {
	id    string
	seq   uint64
	tasks []protocol.Task
}

// simWorkers are testConfig's two workers, each running subtask s of every
// operator, none of it started yet.
func simWorkers() map[string]*simWorker {
	ws := map[string]*simWorker{}
	for s, id := range []string{"w-0", "w-1"} {
		w := &simWorker{id: id}
		for _, op := range []string{"src", "map", "sink"} {
			w.tasks = append(w.tasks, protocol.Task{Operator: op, Subtask: s, State: protocol.Scheduled})
		}
		ws[id] = w
	}
	return ws
}

// set changes every task of the worker that match op ("" for all).
func (w *simWorker) set(op string, f func(t *protocol.Task)) {
	for i := range w.tasks {
		if op == "" || w.tasks[i].Operator == op {
			f(&w.tasks[i])
		}
	}
}

// envelope is the worker's next v2 envelope, carrying its whole state.
func (w *simWorker) envelope(h *harness) *protocol.Envelope {
	w.seq++
	env := &protocol.Envelope{
		V: protocol.V2, JobID: testJob, RunID: h.runID, WorkerID: w.id, Seq: w.seq,
		SentAt: h.clk.Now(), Slots: 1, Tasks: append([]protocol.Task(nil), w.tasks...),
	}
	if err := env.Validate(); err != nil {
		h.t.Fatalf("test worker built a bad envelope: %v", err)
	}
	return env
}

func (h *harness) deliver(env *protocol.Envelope) {
	h.t.Helper()
	if err := h.c.HandleMessage(env); err != nil {
		h.t.Fatalf("HandleMessage(%v): %v", env, err)
	}
}

// TestLostMessageIsHealedByTheNextHeartbeat runs a committing job through
// registration, task start, a checkpoint and its commit with v2 workers,
// and drops one message of one kind from w-0: the controller misses that
// news until w-0's next routine heartbeat, which heals it, and the run ends
// as it would have without the loss.
func TestLostMessageIsHealedByTheNextHeartbeat(t *testing.T) {
	steps := []struct {
		name   string
		change func(w *simWorker, epoch int64)
		// missing reports whether the controller lacks w-0's news.
		missing func(h *harness) bool
	}{
		{"registration", func(*simWorker, int64) {}, func(h *harness) bool {
			r, _ := h.c.WorkersRegistered()
			return r != 2
		}},
		{"task start", func(w *simWorker, _ int64) {
			w.set("", func(t *protocol.Task) { t.State = protocol.Running })
		}, func(h *harness) bool {
			r, _ := h.c.TasksRunning()
			return r != 6
		}},
		{"checkpoint completion", func(w *simWorker, e int64) {
			w.set("", func(t *protocol.Task) {
				t.Checkpointed, t.CheckpointBytes, t.CheckpointMetadata = e, 100, t.Operator+"-meta"
			})
		}, func(h *harness) bool {
			h.expectContinue()
			return !h.c.cp.committing
		}},
		{"commit ack", func(w *simWorker, e int64) {
			w.set("sink", func(t *protocol.Task) { t.Committed = e })
		}, func(h *harness) bool {
			h.expectContinue()
			return h.c.CheckpointInFlight()
		}},
	}
	for _, lost := range steps {
		t.Run(lost.name, func(t *testing.T) {
			h := newHarness(t, true)
			ws := simWorkers()
			var epoch int64
			for _, step := range steps {
				if step.name == "checkpoint completion" {
					epoch = h.startDue()
				}
				for _, id := range []string{"w-0", "w-1"} {
					step.change(ws[id], epoch)
					env := ws[id].envelope(h)
					if step.name == lost.name && id == "w-0" {
						continue // lost on the way
					}
					h.deliver(env)
				}
				if step.name == lost.name {
					if !step.missing(h) {
						t.Fatalf("after losing w-0's %s the controller still has it: the test loses nothing", step.name)
					}
					h.advance(time.Second)
					h.deliver(ws["w-0"].envelope(h)) // the next routine heartbeat
				}
				if step.missing(h) {
					t.Fatalf("after %s (lost: %s), the controller lacks w-0's news", step.name, lost.name)
				}
			}
			if got := h.c.LastReadyEpoch(); got != epoch || h.checkpointState(epoch) != job.CheckpointReady {
				t.Fatalf("last ready epoch %d (%s), want %d ready", got, h.checkpointState(epoch), epoch)
			}
			cp, _ := h.checkpoint(epoch)
			if op := cp.Operators["map"]; op.Bytes != 200 || op.Metadata[0] != "map-meta" || op.Metadata[1] != "map-meta" {
				t.Errorf("checkpoint record of map = %+v, want both subtasks' bytes and metadata once", op)
			}
		})
	}
}

// TestRepeatedAndReorderedStateIsHarmless: a duplicate counts once, and an
// older envelope arriving after a newer one neither undoes its state nor
// turns its metrics back.
func TestRepeatedAndReorderedStateIsHarmless(t *testing.T) {
	h := newHarness(t, false)
	ws := simWorkers()
	for _, w := range ws {
		w.set("", func(t *protocol.Task) { t.State = protocol.Running })
		h.deliver(w.envelope(h))
	}
	e := h.startDue()
	w0 := ws["w-0"]
	w0.set("", func(t *protocol.Task) { t.RecordsIn = 10 })
	before := w0.envelope(h)
	w0.set("", func(t *protocol.Task) { t.Checkpointed, t.CheckpointBytes, t.RecordsIn = e, 7, 20 })
	after := w0.envelope(h)
	for _, env := range []*protocol.Envelope{after, after, before, after} {
		h.deliver(env)
	}
	for oi := range h.c.ops {
		if h.c.cp.counts[oi] != 1 || h.c.cp.bytes[oi] != 7 {
			t.Errorf("%s: %d reports of %d bytes, want 1 of 7", h.c.ops[oi].id, h.c.cp.counts[oi], h.c.cp.bytes[oi])
		}
	}
	if got := h.c.perTask[0].recordsIn; got != 20 {
		t.Errorf("src[0] records in = %d, want 20 from the newest envelope", got)
	}
	if r, _ := h.c.TasksRunning(); r != 6 {
		t.Errorf("TasksRunning = %d, want 6", r)
	}

	// A report of another epoch does not count for the one in flight.
	ws["w-1"].set("", func(t *protocol.Task) { t.Checkpointed = e - 1 })
	h.deliver(ws["w-1"].envelope(h))
	if h.c.cp.counts[0] != 1 {
		t.Errorf("a report of epoch %d counted for epoch %d", e-1, e)
	}

	// A state never moves back: a stale "running" after "finished" and a
	// failure after it change nothing.
	w1 := ws["w-1"]
	w1.set("sink", func(t *protocol.Task) { t.State = protocol.Finished })
	finished := w1.envelope(h)
	w1.set("sink", func(t *protocol.Task) { t.State = protocol.Running })
	stale := w1.envelope(h)
	h.deliver(finished)
	h.deliver(stale)
	if h.c.finished != 1 {
		t.Errorf("finished = %d, want 1", h.c.finished)
	}
	w1.set("sink", func(t *protocol.Task) {
		t.State, t.Error, t.Domain, t.Retry = protocol.Failed, "late", job.DomainUser, protocol.RetryNone
	})
	h.deliver(w1.envelope(h))
	if _, failed := h.c.TaskFailure(); failed {
		t.Error("a finished task failed")
	}
}

// TestFailureIsState: a failed subtask's reason arrives with its state, so
// the failure survives the loss of the envelope that first said so.
func TestFailureIsState(t *testing.T) {
	h := newHarness(t, false)
	ws := simWorkers()
	for _, w := range ws {
		w.set("", func(t *protocol.Task) { t.State = protocol.Running })
		h.deliver(w.envelope(h))
	}
	w1 := ws["w-1"]
	w1.set("map", func(t *protocol.Task) {
		t.State, t.Error, t.Domain, t.Retry = protocol.Failed, "out of memory", job.DomainInternal, protocol.RetryBackoff
	})
	_ = w1.envelope(h) // lost
	h.deliver(w1.envelope(h))
	p := h.progress()
	if p.Kind != TaskFailed || p.Failure == nil {
		t.Fatalf("Progress = %v, want the task failure", p.Kind)
	}
	want := TaskFailure{WorkerID: "w-1", Operator: "map", Subtask: 1, Message: "out of memory", Domain: job.DomainInternal, Retry: protocol.RetryBackoff}
	if *p.Failure != want {
		t.Errorf("failure = %+v, want %+v", *p.Failure, want)
	}
	if r, _ := h.c.TasksRunning(); r != 5 {
		t.Errorf("TasksRunning = %d, want 5", r)
	}
}

// TestNewLeaderLearnsTheRunFromOneHeartbeat: a new leader's controller of a
// run that is going (registered workers, running tasks, a checkpoint in
// flight that some subtasks had already reported to the old leader) knows
// everything after one heartbeat from each worker, and completes the
// checkpoint without asking anyone again.
func TestNewLeaderLearnsTheRunFromOneHeartbeat(t *testing.T) {
	for _, committing := range []bool{false, true} {
		name := "plain sinks"
		if committing {
			name = "committing sinks"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, committing)
			ws := simWorkers()
			for _, w := range ws {
				w.set("", func(t *protocol.Task) { t.State = protocol.Running })
				h.deliver(w.envelope(h))
			}
			e := h.startDue()
			// Both workers complete the checkpoint; the old leader hears
			// only w-0 before it loses the lease.
			for _, w := range ws {
				w.set("", func(t *protocol.Task) { t.Checkpointed, t.CheckpointBytes = e, 5 })
			}
			h.deliver(ws["w-0"].envelope(h))
			if h.c.cp.opsDone != 0 || h.c.cp.counts[0] != 1 {
				t.Fatalf("old leader: %d operators done, %d src reports", h.c.cp.opsDone, h.c.cp.counts[0])
			}
			cmds := h.commands()
			inFlight, ok := h.checkpoint(e)
			if !ok || inFlight.State != job.CheckpointInProgress {
				t.Fatalf("checkpoint %d = %+v, want it in progress", e, inFlight)
			}
			old := h.c

			// The new leader builds a controller for the same run and
			// adopts it as it stands.
			h.fence++
			h.c = New(Deps{Store: h.st, Clock: h.clk, Telemetry: h.rec, Fence: h.fence, Settings: h.set,
				Rand: func() float64 { return 0.5 }},
				Run{JobID: testJob, RunID: h.runID, Layout: NewLayout(h.cfg), Program: h.cfg.Spec.Program,
					Restore: Restore{NextEpoch: e, MinEpoch: 1}, CheckpointInterval: h.cfg.CheckpointInterval})
			t.Cleanup(h.c.Close)
			old.Close()
			if err := h.c.Adopt(cmds, &inFlight); err != nil {
				t.Fatal(err)
			}
			writes := h.mem.Writes()
			for _, id := range []string{"w-0", "w-1"} {
				h.deliver(ws[id].envelope(h))
			}
			if r, want := h.c.WorkersRegistered(); r != want {
				t.Errorf("registered %d of %d workers", r, want)
			}
			if r, total := h.c.TasksRunning(); r != total {
				t.Errorf("%d of %d tasks running", r, total)
			}
			if h.mem.Writes() != writes {
				t.Error("heartbeats caused a write")
			}
			h.expectContinue()
			if committing {
				if !h.c.cp.committing || h.commands().Commit == nil || h.commands().Commit.Epoch != e {
					t.Fatalf("checkpoint %d not committing after every report: %+v", e, h.commands())
				}
				for _, id := range []string{"w-0", "w-1"} {
					ws[id].set("sink", func(t *protocol.Task) { t.Committed = e })
					h.deliver(ws[id].envelope(h))
				}
				h.expectContinue()
			}
			if h.c.CheckpointInFlight() || h.c.LastReadyEpoch() != e || h.checkpointState(e) != job.CheckpointReady {
				t.Fatalf("checkpoint %d not ready (%s) after one heartbeat per worker", e, h.checkpointState(e))
			}
			// The next checkpoint takes a new epoch.
			if next := h.startDue(); next != e+1 {
				t.Errorf("next epoch %d, want %d", next, e+1)
			}
		})
	}
}

// TestAdoptedWorkersAreWatched: after a take-over, a worker that never
// sends again is timed out within the heartbeat time-out.
func TestAdoptedWorkersAreWatched(t *testing.T) {
	h := newHarness(t, false, withSettings(func(s *Settings) { s.HeartbeatTimeout = 30 * time.Second }))
	cmds := h.commands()
	if err := h.c.Adopt(cmds, nil); err != nil {
		t.Fatal(err)
	}
	h.c.WatchAllWorkers()
	ws := simWorkers()
	h.advance(20 * time.Second)
	h.deliver(ws["w-1"].envelope(h))
	h.advance(11 * time.Second)
	_, err := h.c.Progress(h.ctx)
	errorIs(t, err, ErrWorkerTimedOut)
	if !strings.Contains(err.Error(), "w-0") {
		t.Errorf("error does not name w-0: %v", err)
	}

	other := cmds
	other.RunID++
	if err := h.c.Adopt(other, nil); err == nil {
		t.Error("adopted the command record of another run")
	}
	cp := job.Checkpoint{JobID: testJob, RunID: h.runID, Epoch: 3, State: job.CheckpointReady}
	if err := h.c.Adopt(cmds, &cp); err == nil || !strings.Contains(err.Error(), "not in flight") {
		t.Errorf("adopting a ready checkpoint: %v", err)
	}
}

func TestV2EnvelopeRefusals(t *testing.T) {
	h := newHarness(t, false)
	w := simWorkers()["w-0"]
	cases := []struct {
		name   string
		mutate func(env *protocol.Envelope)
		want   string
	}{
		{"another worker's subtask", func(env *protocol.Envelope) { env.Tasks[1].Subtask = 1 }, "runs on worker w-1"},
		{"unknown operator", func(env *protocol.Envelope) { env.Tasks[0].Operator = "join" }, `"join"`},
		{"commit from a sink that does not commit", func(env *protocol.Envelope) { env.Tasks[2].Committed = 1 }, "not a committing sink"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := w.envelope(h)
			env.Tasks[0].State = protocol.Running
			tc.mutate(env)
			err := h.c.HandleMessage(env)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("HandleMessage = %v, want ErrRefused naming %s", err, tc.want)
			}
			if r, _ := h.c.WorkersRegistered(); r != 0 {
				t.Error("a refused envelope registered its worker")
			}
			if r, _ := h.c.TasksRunning(); r != 0 {
				t.Error("a refused envelope started a task")
			}
		})
	}
}

// TestUrgentAndRoutineEnvelopesInEitherOrder: a worker sends news the
// controller must act on (a failure) to the urgent queue and its routine
// heartbeats to the batched one, so the two overtake each other. Each
// envelope carries the whole state and state only moves forward, so
// either order ends the same: the failure is known once, the failed task
// does not run again, and the metrics are the newest envelope's.
func TestUrgentAndRoutineEnvelopesInEitherOrder(t *testing.T) {
	for _, urgentFirst := range []bool{true, false} {
		name := "routine overtakes urgent"
		if urgentFirst {
			name = "urgent overtakes routine"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, false)
			ws := simWorkers()
			for _, w := range ws {
				w.set("", func(t *protocol.Task) { t.State = protocol.Running })
				h.deliver(w.envelope(h))
			}
			w1 := ws["w-1"]
			fail := func(t *protocol.Task) {
				t.State, t.Error, t.Domain, t.Retry = protocol.Failed, "disk full", job.DomainExternal, protocol.RetryBackoff
			}
			var first, second *protocol.Envelope
			if urgentFirst {
				// A routine heartbeat (seq n) is still lingering in the
				// batched queue when the failure (seq n+1) arrives.
				w1.set("", func(t *protocol.Task) { t.RecordsIn = 10 })
				routine := w1.envelope(h)
				w1.set("map", fail)
				w1.set("", func(t *protocol.Task) { t.RecordsIn = 20 })
				urgent := w1.envelope(h)
				first, second = urgent, routine
			} else {
				// The failure (seq n) is delayed; the next heartbeat (seq
				// n+1) already carries it.
				w1.set("map", fail)
				w1.set("", func(t *protocol.Task) { t.RecordsIn = 10 })
				urgent := w1.envelope(h)
				w1.set("", func(t *protocol.Task) { t.RecordsIn = 20 })
				routine := w1.envelope(h)
				first, second = routine, urgent
			}
			h.deliver(first)
			p := h.progress()
			if p.Kind != TaskFailed || p.Failure == nil || p.Failure.Operator != "map" || p.Failure.Subtask != 1 {
				t.Fatalf("after the first envelope: Progress = %v, want map[1]'s failure", p.Kind)
			}
			h.deliver(second)
			if r, _ := h.c.TasksRunning(); r != 5 {
				t.Errorf("TasksRunning = %d, want 5: the older envelope's running map[1] must not undo its failure", r)
			}
			if f, failed := h.c.TaskFailure(); !failed || f.Message != "disk full" {
				t.Errorf("TaskFailure = %+v, %v; want map[1]'s", f, failed)
			}
			if got := h.c.perTask[h.c.ops[0].offset+1].recordsIn; got != 20 {
				t.Errorf("src[1] records in = %d, want 20 from the newest envelope", got)
			}
		})
	}
}
