package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

func TestProgressWorkerTimeout(t *testing.T) {
	h := newHarness(t, false, withSettings(func(s *Settings) { s.HeartbeatTimeout = 30 * time.Second }))
	// Only w-0 registers; w-1 is the startup time-out's business.
	h.send("w-0", protocol.Event{Kind: protocol.WorkerRegistered})
	h.advance(30 * time.Second)
	h.expectContinue() // silent for exactly the time-out: still alive

	// The worker's own clock does not matter: liveness is the receipt time.
	env := h.envelope("w-0", &protocol.Heartbeat{})
	env.SentAt = t0.Add(-time.Hour)
	if err := h.c.HandleMessage(env); err != nil {
		t.Fatal(err)
	}
	h.advance(29 * time.Second)
	h.expectContinue()

	h.advance(2 * time.Second)
	_, err := h.c.Progress(h.ctx)
	errorIs(t, err, ErrWorkerTimedOut)
	if !strings.Contains(err.Error(), "w-0") || !strings.Contains(err.Error(), "31s") {
		t.Errorf("error should name the worker and its silence: %v", err)
	}
	if err := h.c.CheckWorkers(); err == nil {
		t.Error("CheckWorkers disagrees with Progress")
	}
}

func TestProgressTaskFailed(t *testing.T) {
	h := newHarness(t, false)
	h.running()
	h.expectContinue()
	h.send("w-1", protocol.Event{Kind: protocol.TaskFailed, Operator: "map", Subtask: 1,
		Error: "division by zero", Domain: job.DomainUser, Retry: protocol.RetryNone})
	h.send("w-0", protocol.Event{Kind: protocol.TaskFailed, Operator: "map", Subtask: 0,
		Error: "later failure", Domain: job.DomainExternal, Retry: protocol.RetryBackoff})
	// A task failure wins over finished sources.
	h.forEachTask(func(op string, s int) protocol.Event {
		return protocol.Event{Kind: protocol.TaskFinished, Operator: op, Subtask: s}
	}, "src")

	p := h.progress()
	want := TaskFailure{WorkerID: "w-1", Operator: "map", Subtask: 1, Message: "division by zero",
		Domain: job.DomainUser, Retry: protocol.RetryNone}
	if p.Kind != TaskFailed || p.Failure == nil || *p.Failure != want {
		t.Fatalf("Progress = %v %+v, want the first failure %+v", p.Kind, p.Failure, want)
	}
	if f, ok := h.c.TaskFailure(); !ok || f != want {
		t.Errorf("TaskFailure = %+v, %v", f, ok)
	}
	// A worker time-out wins over the task failure.
	h.set.HeartbeatTimeout = time.Second
	h.c.settings.HeartbeatTimeout = time.Second
	h.advance(2 * time.Second)
	_, err := h.c.Progress(h.ctx)
	errorIs(t, err, ErrWorkerTimedOut)
}

func TestProgressTaskFailedDefaults(t *testing.T) {
	h := newHarness(t, false)
	h.send("w-0", protocol.Event{Kind: protocol.TaskFailed, Operator: "src", Subtask: 0, Error: "gone"})
	p := h.progress()
	if p.Kind != TaskFailed || p.Failure.Domain != job.DomainInternal || p.Failure.Retry != protocol.RetryBackoff {
		t.Errorf("Progress = %v %+v, want an internal failure retried with back-off", p.Kind, p.Failure)
	}
}

func TestProgressFinishing(t *testing.T) {
	h := newHarness(t, false)
	h.running()
	h.send("w-0", protocol.Event{Kind: protocol.TaskFinished, Operator: "src", Subtask: 0})
	h.expectContinue()
	h.send("w-1", protocol.Event{Kind: protocol.TaskFinished, Operator: "src", Subtask: 1})
	// The map and sink tasks still run; that does not matter.
	if p := h.progress(); p.Kind != Finishing {
		t.Errorf("Progress = %v, want finishing", p.Kind)
	}
	if h.c.AllTasksFinished() {
		t.Error("AllTasksFinished while map and sink run")
	}
}

func TestProgressKindStrings(t *testing.T) {
	for k, want := range map[ProgressKind]string{Continue: "continue", Finishing: "finishing", TaskFailed: "task failed", 9: "ProgressKind(9)"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q", int(k), k.String())
		}
	}
	for k, want := range map[OutcomeKind]string{NoCheckpoint: "no checkpoint", InFlight: "in flight", Completed: "completed", Failed: "failed", 9: "OutcomeKind(9)"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q", int(k), k.String())
		}
	}
}

// Quiet names the nearest of the next metrics export, the next checkpoint
// and the first heartbeat time-out, and is zero while something is due.
func TestQuietNamesTheNextDeadline(t *testing.T) {
	h := newHarness(t, false, withSettings(func(s *Settings) { s.HeartbeatTimeout = 90 * time.Second }))
	if q := h.c.Quiet(); q != 0 {
		t.Fatalf("Quiet = %s before the first Progress, want 0", q)
	}
	h.send("w-0", protocol.Event{Kind: protocol.WorkerRegistered})
	if q := h.c.Quiet(); q != 0 {
		t.Fatalf("Quiet = %s before the first metrics export, want 0", q)
	}
	h.expectContinue()
	// Metrics every 2 s; the first checkpoint at half its 10 s interval
	// (the harness's jitter); the time-out in 90 s.
	if q := h.c.Quiet(); q != 2*time.Second {
		t.Fatalf("Quiet = %s, want the 2 s to the next metrics export", q)
	}
	h.advance(2 * time.Second)
	h.expectContinue()
	h.advance(2 * time.Second)
	h.expectContinue()
	if q := h.c.Quiet(); q != time.Second {
		t.Fatalf("Quiet = %s, want the 1 s to the first checkpoint", q)
	}
	h.advance(500 * time.Millisecond)
	if q := h.c.Quiet(); q != 500*time.Millisecond {
		t.Fatalf("Quiet = %s, want what is left of it", q)
	}
	h.advance(time.Second)
	if q := h.c.Quiet(); q != 0 {
		t.Fatalf("Quiet = %s past the checkpoint's time, want 0", q)
	}
}

func TestQuietUntilTheHeartbeatTimeOut(t *testing.T) {
	h := newHarness(t, false, withSettings(func(s *Settings) {
		s.HeartbeatTimeout = 3 * time.Second
		s.MetricsInterval = time.Minute
	}))
	h.send("w-0", protocol.Event{Kind: protocol.WorkerRegistered})
	h.expectContinue()
	h.advance(time.Second)
	if q := h.c.Quiet(); q != 2*time.Second {
		t.Fatalf("Quiet = %s, want the 2 s left of w-0's heartbeat time-out", q)
	}
}

// While a checkpoint waits for the subtasks' reports only its time-out is
// due; once they are all in, finishing it is due at once.
func TestQuietWhileACheckpointIsInFlight(t *testing.T) {
	h := newHarness(t, false, withSettings(func(s *Settings) { s.MetricsInterval = time.Hour }))
	h.running()
	h.expectContinue()
	if err := h.c.StartCheckpoint(h.ctx, true); err != nil {
		t.Fatal(err)
	}
	if q, want := h.c.Quiet(), h.set.FinalCheckpointTimeout+1; q != want {
		t.Fatalf("Quiet = %s while waiting for reports, want the %s to the checkpoint's time-out", q, want)
	}
	h.reportAll(h.c.cp.epoch)
	if q := h.c.Quiet(); q != 0 {
		t.Fatalf("Quiet = %s with every report in, want 0", q)
	}
}
