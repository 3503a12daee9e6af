package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

func TestStartAndStopCommands(t *testing.T) {
	h := newHarness(t, false)
	cmd := h.commands()
	if cmd.RunID != 1 || cmd.Start == nil || cmd.Start.Program != h.cfg.Spec.Program ||
		cmd.Start.RestoreEpoch != 0 || len(cmd.Start.Assignments) != 6 {
		t.Fatalf("start command = %+v", cmd)
	}
	if cmd.Stop != nil || cmd.Checkpoint != nil || cmd.Commit != nil {
		t.Errorf("a new run's record carries old commands: %+v", cmd)
	}
	if err := h.c.Stop(h.ctx, job.StopGraceful); err != nil {
		t.Fatal(err)
	}
	got := h.commands()
	if got.Stop == nil || got.Stop.Mode != job.StopGraceful || got.Start == nil || got.Version <= cmd.Version {
		t.Errorf("after Stop: %+v", got)
	}
	for _, mode := range []job.StopMode{job.StopNone, "", "pause"} {
		if err := h.c.Stop(h.ctx, mode); err == nil {
			t.Errorf("Stop(%q) was accepted", mode)
		}
	}
	if h.commands().Version != got.Version {
		t.Error("a refused Stop wrote the record")
	}
}

func TestQueries(t *testing.T) {
	h := newHarness(t, false)
	if r, e := h.c.WorkersRegistered(); r != 0 || e != 2 {
		t.Errorf("WorkersRegistered = %d, %d", r, e)
	}
	h.send("w-0", protocol.Event{Kind: protocol.WorkerRegistered, Slots: 1})
	h.send("w-0", protocol.Event{Kind: protocol.WorkerRegistered, Slots: 1})
	if r, _ := h.c.WorkersRegistered(); r != 1 {
		t.Errorf("a repeated registration counted twice: %d", r)
	}
	h.running()
	if r, total := h.c.TasksRunning(); r != 6 || total != 6 {
		t.Errorf("TasksRunning = %d of %d", r, total)
	}
	h.send("w-0", protocol.Event{Kind: protocol.TaskFinished, Operator: "map", Subtask: 0})
	h.send("w-1", protocol.Event{Kind: protocol.TaskFailed, Operator: "map", Subtask: 1, Error: "oom"})
	if r, _ := h.c.TasksRunning(); r != 5 {
		t.Errorf("TasksRunning = %d, want 5 (a finished task counts, a failed one does not)", r)
	}
	if h.c.AllTasksFinished() {
		t.Error("AllTasksFinished with one task finished")
	}
	// A task that finishes without a start event counts as started.
	h2 := newHarness(t, false)
	h2.forEachTask(func(op string, s int) protocol.Event {
		return protocol.Event{Kind: protocol.TaskFinished, Operator: op, Subtask: s}
	})
	if r, _ := h2.c.TasksRunning(); r != 6 || !h2.c.AllTasksFinished() {
		t.Errorf("TasksRunning = %d, AllTasksFinished = %v", r, h2.c.AllTasksFinished())
	}
}

func TestHandleMessageRefusesWhatTheRunDoesNotHave(t *testing.T) {
	h := newHarness(t, false)
	started := protocol.Event{Kind: protocol.TaskStarted, Operator: "src", Subtask: 0}
	cases := []struct {
		name string
		env  func() *protocol.Envelope
		want string
	}{
		{"another job", func() *protocol.Envelope {
			e := h.envelope("w-0", nil, started)
			e.JobID = "payments"
			return e
		}, "job payments"},
		{"unknown worker", func() *protocol.Envelope { return h.envelope("w-9", nil, started) }, `"w-9"`},
		{"unknown operator", func() *protocol.Envelope {
			return h.envelope("w-0", nil, started, protocol.Event{Kind: protocol.TaskStarted, Operator: "join"})
		}, `"join"`},
		{"subtask out of range", func() *protocol.Envelope {
			return h.envelope("w-0", nil, started, protocol.Event{Kind: protocol.TaskFinished, Operator: "map", Subtask: 2})
		}, "no subtask 2"},
		{"negative subtask", func() *protocol.Envelope {
			return h.envelope("w-0", nil, started, protocol.Event{Kind: protocol.TaskFinished, Operator: "map", Subtask: -1})
		}, "no subtask -1"},
		{"another worker's subtask", func() *protocol.Envelope {
			return h.envelope("w-0", nil, started, protocol.Event{Kind: protocol.TaskFailed, Operator: "map", Subtask: 1})
		}, "runs on worker w-1"},
		{"metrics of an unknown operator", func() *protocol.Envelope {
			return h.envelope("w-0", &protocol.Heartbeat{Metrics: []protocol.TaskMetrics{{Operator: "join"}}}, started)
		}, `"join"`},
		{"commit from a sink that does not commit", func() *protocol.Envelope {
			return h.envelope("w-0", nil, started, protocol.Event{Kind: protocol.CommitFinished, Operator: "sink", Epoch: 1})
		}, "not a committing sink"},
		{"unknown kind", func() *protocol.Envelope {
			return h.envelope("w-0", nil, started, protocol.Event{Kind: "teleported"})
		}, "teleported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := h.c.HandleMessage(tc.env())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("HandleMessage = %v, want an error naming %s", err, tc.want)
			}
			if r, _ := h.c.TasksRunning(); r != 0 {
				t.Errorf("a refused envelope started %d tasks", r)
			}
			if w := h.c.workers[0]; w.heard || w.seqSeen {
				t.Errorf("a refused envelope touched the worker: %+v", w)
			}
		})
	}
	if err := h.c.HandleMessage(nil); err == nil {
		t.Error("nil envelope accepted")
	}
	// The refused envelopes consumed no sequence numbers: a valid envelope
	// reusing one is applied.
	env := h.envelope("w-0", nil, started)
	env.Seq = 1
	if err := h.c.HandleMessage(env); err != nil {
		t.Fatal(err)
	}
	if r, _ := h.c.TasksRunning(); r != 1 {
		t.Errorf("TasksRunning = %d after a valid envelope", r)
	}
}

func TestMessagesFromAnotherRunAreIgnored(t *testing.T) {
	h := newHarness(t, false)
	h.running()
	e := h.startDue()
	writes := h.mem.Writes()

	old := h.envelope("w-0", &protocol.Heartbeat{Metrics: []protocol.TaskMetrics{{Operator: "src", RecordsIn: 99}}},
		protocol.Event{Kind: protocol.TaskFailed, Operator: "src", Subtask: 0, Error: "from the last run"},
		protocol.Event{Kind: protocol.CheckpointCompleted, Operator: "src", Subtask: 0, Epoch: e},
	)
	old.RunID = 0
	errorIs(t, h.c.HandleMessage(old), ErrOtherRun)

	if _, failed := h.c.TaskFailure(); failed {
		t.Error("a failure of the last run counted")
	}
	if h.c.cp.counts[0] != 0 || h.c.perTask[0].recordsIn != 0 {
		t.Error("a report of the last run counted")
	}
	if h.mem.Writes() != writes {
		t.Error("a message of the last run caused a write")
	}
	if p := h.progress(); p.Kind != Continue {
		t.Errorf("Progress = %v", p.Kind)
	}
}

func TestDuplicatedAndReorderedMessagesAreHarmless(t *testing.T) {
	h := newHarness(t, false, withSettings(func(s *Settings) { s.HeartbeatTimeout = 30 * time.Second }))
	h.running()
	e := h.startDue()

	report := func(seq uint64, op string, s int, records uint64) *protocol.Envelope {
		env := h.envelope(workerOf(s), &protocol.Heartbeat{Metrics: []protocol.TaskMetrics{
			{Operator: op, Subtask: s, RecordsIn: records},
		}}, protocol.Event{Kind: protocol.CheckpointCompleted, Operator: op, Subtask: s, Epoch: e, Bytes: 10})
		env.Seq = seq
		return env
	}
	// w-0 sends 100 and 101; they arrive reversed, and 101 twice.
	newer, older := report(101, "map", 0, 500), report(100, "src", 0, 400)
	for _, env := range []*protocol.Envelope{newer, older, newer} {
		if err := h.c.HandleMessage(env); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.c.cp.counts[1]; got != 1 {
		t.Errorf("map reports counted %d times", got)
	}
	if got := h.c.cp.counts[0]; got != 1 {
		t.Errorf("the reordered src report counted %d times, want 1", got)
	}
	if got := h.c.cp.bytes[1]; got != 10 {
		t.Errorf("map bytes = %d, want 10", got)
	}
	// Only the newest envelope's metrics count: the older one reported
	// src's counters as of before.
	if got := h.c.perTask[0].recordsIn; got != 0 {
		t.Errorf("an older envelope's metrics were applied: %d", got)
	}
	if got := h.c.perTask[2].recordsIn; got != 500 {
		t.Errorf("map[0] records = %d, want 500", got)
	}

	// A task state never moves back: started after finished changes nothing.
	h.send("w-1", protocol.Event{Kind: protocol.TaskFinished, Operator: "sink", Subtask: 1})
	h.send("w-1", protocol.Event{Kind: protocol.TaskStarted, Operator: "sink", Subtask: 1})
	h.send("w-1", protocol.Event{Kind: protocol.TaskFailed, Operator: "sink", Subtask: 1})
	if r, _ := h.c.TasksRunning(); r != 6 {
		t.Errorf("TasksRunning = %d, want 6", r)
	}
	if _, failed := h.c.TaskFailure(); failed {
		t.Error("a finished task failed")
	}

	// A redelivered old envelope does not keep a dead worker alive.
	h.send("w-1") // w-1 keeps sending
	h.advance(20 * time.Second)
	h.send("w-1")
	if err := h.c.HandleMessage(newer); err != nil {
		t.Fatal(err)
	}
	h.advance(15 * time.Second)
	h.send("w-1")
	_, err := h.c.Progress(h.ctx)
	errorIs(t, err, ErrWorkerTimedOut)
	if !strings.Contains(err.Error(), "w-0") {
		t.Errorf("error does not name w-0: %v", err)
	}
}

func TestSequenceWindow(t *testing.T) {
	var w worker
	steps := []struct {
		seq        uint64
		fresh, dup bool
	}{
		{5, true, false},
		{5, false, true},
		{3, false, false},
		{3, false, true},
		{80, true, false},
		{5, false, false}, // beyond the window: applied again, harmlessly
		{17, false, false},
		{17, false, true},
		{81, true, false},
		{80, false, true},
	}
	for i, s := range steps {
		fresh, dup := w.accept(s.seq)
		if fresh != s.fresh || dup != s.dup {
			t.Errorf("step %d: accept(%d) = %v, %v; want %v, %v", i, s.seq, fresh, dup, s.fresh, s.dup)
		}
	}
}
