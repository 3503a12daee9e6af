package controller

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
)

func TestFirstCheckpointIsJittered(t *testing.T) {
	h := newHarness(t, false)
	h.running()
	h.expectContinue() // the first Progress anchors the schedule
	// Rand returns 0.5 and the interval is 10 s: the first is due at 5 s.
	h.advance(5*time.Second - time.Millisecond)
	h.expectContinue()
	if h.c.CheckpointInFlight() {
		t.Fatal("checkpoint started before its jittered start")
	}
	h.advance(time.Millisecond)
	h.expectContinue()
	if !h.c.CheckpointInFlight() || h.c.cp.epoch != 1 {
		t.Fatalf("no checkpoint at its jittered start (in flight %v)", h.c.CheckpointInFlight())
	}
	cmd := h.commands()
	if cmd.Checkpoint == nil || *cmd.Checkpoint != (job.CheckpointCommand{Epoch: 1, MinEpoch: 1}) {
		t.Errorf("checkpoint command = %+v", cmd.Checkpoint)
	}
	if cmd.Start == nil {
		t.Error("the checkpoint command dropped the start command")
	}
	if st := h.checkpointState(1); st != job.CheckpointInProgress {
		t.Errorf("epoch 1 is %q in the store", st)
	}
}

func TestCheckpointCompletesOnlyWhenEverySubtaskReported(t *testing.T) {
	h := newHarness(t, false)
	h.running()
	e := h.startDue()

	// Every subtask but sink[1] reports, some twice, and everyone reports
	// a wrong epoch too.
	h.reportAll(e, "src", "map")
	h.reportAll(e, "src", "map")
	h.reportAll(e+1, "sink")
	h.reportAll(e-1, "sink")
	h.send("w-0", protocol.Event{Kind: protocol.CheckpointCompleted, Operator: "sink", Subtask: 0, Epoch: e, Bytes: 100, Metadata: "sink-meta"})
	h.send("w-0", protocol.Event{Kind: protocol.CheckpointEvent, Operator: "sink", Subtask: 0, Epoch: e, Phase: "sync_finished"})
	h.expectContinue()
	if !h.c.CheckpointInFlight() {
		t.Fatal("checkpoint completed without sink[1]")
	}
	out, err := h.c.AdvanceCheckpoint(h.ctx)
	if err != nil || out != (CheckpointOutcome{Kind: InFlight, Epoch: e}) {
		t.Fatalf("AdvanceCheckpoint = %+v, %v", out, err)
	}

	h.send("w-1", protocol.Event{Kind: protocol.CheckpointCompleted, Operator: "sink", Subtask: 1, Epoch: e, Bytes: 100, Metadata: "sink-meta"})
	h.advance(time.Second)
	out, err = h.c.AdvanceCheckpoint(h.ctx)
	if err != nil || out != (CheckpointOutcome{Kind: Completed, Epoch: e}) {
		t.Fatalf("AdvanceCheckpoint = %+v, %v", out, err)
	}
	if h.c.LastReadyEpoch() != e || h.c.CheckpointInFlight() {
		t.Errorf("LastReadyEpoch = %d, in flight %v", h.c.LastReadyEpoch(), h.c.CheckpointInFlight())
	}
	cp, _ := h.checkpoint(e)
	if cp.State != job.CheckpointReady || cp.RunID != 1 || !cp.FinishedAt.After(cp.StartedAt) {
		t.Errorf("stored checkpoint = %+v", cp)
	}
	for _, op := range []string{"src", "map", "sink"} {
		oc := cp.Operators[op]
		if oc.Bytes != 200 || len(oc.Metadata) != 2 || oc.Metadata[1] != op+"-meta" {
			t.Errorf("operator %s in the record: %+v (duplicates must not add bytes)", op, oc)
		}
	}
	if got := h.rec.checkpoints(); len(got) != 1 || got[0] != (finished{e, true}) {
		t.Errorf("telemetry got %+v", got)
	}
	// Reports after completion are for no checkpoint in flight: ignored.
	h.reportAll(e)
	if out, _ := h.c.AdvanceCheckpoint(h.ctx); out.Kind != NoCheckpoint {
		t.Errorf("AdvanceCheckpoint = %+v with nothing in flight", out)
	}
}

func TestCheckpointScheduleAndMinPause(t *testing.T) {
	h := newHarness(t, false, withSettings(func(s *Settings) { s.MinCheckpointPause = 8 * time.Second }))
	h.running()
	e1 := h.startDue()
	start := h.c.now()
	// It takes 6 s: the interval (10 s from its start) then ends at 10 s,
	// the pause (8 s from its end) at 14 s.
	h.advance(6 * time.Second)
	h.reportAll(e1)
	h.expectContinue()
	if h.c.LastReadyEpoch() != e1 {
		t.Fatal("checkpoint did not complete")
	}
	h.advance(start + 10*time.Second - h.c.now())
	h.expectContinue()
	if h.c.CheckpointInFlight() {
		t.Fatal("checkpoint started within the minimum pause")
	}
	h.advance(4*time.Second - time.Millisecond)
	h.expectContinue()
	if h.c.CheckpointInFlight() {
		t.Fatal("checkpoint started within the minimum pause")
	}
	h.advance(time.Millisecond)
	h.expectContinue()
	if !h.c.CheckpointInFlight() || h.c.cp.epoch != e1+1 {
		t.Fatalf("no checkpoint once the pause ended")
	}

	// A live interval change applies to the next one.
	h.c.SetCheckpointInterval(time.Minute)
	h.reportAll(e1 + 1)
	h.expectContinue()
	h.advance(59 * time.Second)
	h.expectContinue()
	if h.c.CheckpointInFlight() {
		t.Fatal("checkpoint started before the new interval elapsed")
	}
	h.advance(time.Second)
	h.expectContinue()
	if !h.c.CheckpointInFlight() || h.c.cp.epoch != e1+2 {
		t.Fatal("no checkpoint after the new interval")
	}
	h.c.SetCheckpointInterval(0)
	if h.c.interval != job.DefaultCheckpointInterval {
		t.Errorf("interval 0 gave %s", h.c.interval)
	}
}

func TestStartCheckpointWhileInFlight(t *testing.T) {
	h := newHarness(t, false)
	h.running()
	e := h.startDue()
	err := h.c.StartCheckpoint(h.ctx, true)
	errorIs(t, err, ErrCheckpointInFlight)
	if h.c.cp.epoch != e || h.c.cp.thenStop {
		t.Error("a refused StartCheckpoint changed the checkpoint in flight")
	}
}

func TestEpochsStrictlyIncrease(t *testing.T) {
	h := newHarness(t, false)
	h.running()
	e1 := h.completeCheckpoint()
	// Someone (an earlier leader, after this run was prepared) created a
	// higher epoch: the controller moves past it.
	if err := h.mem.CreateCheckpoint(h.ctx, h.fence, job.Checkpoint{JobID: testJob, Epoch: e1 + 5, State: job.CheckpointInProgress}); err != nil {
		t.Fatal(err)
	}
	e2 := h.completeCheckpoint()
	if e2 != e1+6 {
		t.Errorf("epoch after %d with %d taken = %d, want %d", e1, e1+5, e2, e1+6)
	}
	if e3 := h.completeCheckpoint(); e3 != e2+1 {
		t.Errorf("next epoch = %d, want %d", e3, e2+1)
	}
}

func TestTwoPhaseCommitNeedsEveryAck(t *testing.T) {
	h := newHarness(t, true)
	h.running()
	e := h.startDue()
	h.reportAll(e)
	h.expectContinue()
	if !h.c.CheckpointInFlight() || h.checkpointState(e) != job.CheckpointCommitting {
		t.Fatalf("epoch %d is %q, want committing", e, h.checkpointState(e))
	}
	if cmd := h.commands(); cmd.Commit == nil || cmd.Commit.Epoch != e || cmd.Checkpoint.Epoch != e {
		t.Fatalf("commands = %+v, want a commit of %d", cmd, e)
	}
	h.ack(e, 0)
	h.ack(e, 0)   // a duplicate
	h.ack(e-1, 1) // the wrong epoch
	h.ack(e+1, 1)
	h.expectContinue()
	if !h.c.CheckpointInFlight() {
		t.Fatal("ready before sink[1] acknowledged")
	}
	h.ack(e, 1)
	out, err := h.c.AdvanceCheckpoint(h.ctx)
	if err != nil || out.Kind != Completed {
		t.Fatalf("AdvanceCheckpoint = %+v, %v", out, err)
	}
	cp, _ := h.checkpoint(e)
	if cp.State != job.CheckpointReady || cp.Operators["sink"].Metadata[0] != "sink-meta" {
		t.Errorf("stored checkpoint = %+v", cp)
	}
}

func TestCheckpointTimeout(t *testing.T) {
	h := newHarness(t, false) // no failure tolerated
	h.running()
	e := h.startDue()
	h.reportAll(e, "src")
	h.advance(h.set.CheckpointTimeout)
	h.expectContinue() // at the time-out, not yet past it
	h.advance(time.Millisecond)
	_, err := h.c.Progress(h.ctx)
	errorIs(t, err, ErrCheckpointsFailing)
	if !strings.Contains(err.Error(), "1 checkpoints in a row") || !strings.Contains(err.Error(), "4 of 6 subtasks") {
		t.Errorf("error should say how many failed and why: %v", err)
	}
	cp, _ := h.checkpoint(e)
	if cp.State != job.CheckpointFailed || !strings.Contains(cp.Failure, "map[0] on w-0") {
		t.Errorf("stored checkpoint = %+v", cp)
	}
	if got := h.rec.checkpoints(); len(got) != 1 || got[0] != (finished{e, false}) {
		t.Errorf("telemetry got %+v", got)
	}
	// Late reports of the failed epoch change nothing.
	h.reportAll(e)
	if h.c.LastReadyEpoch() != 0 {
		t.Error("a failed epoch became ready")
	}
}

func TestTolerableCheckpointFailures(t *testing.T) {
	h := newHarness(t, false, withSettings(func(s *Settings) { s.TolerableCheckpointFailures = 1 }))
	h.running()
	if _, err := h.failCheckpoint(); err != nil {
		t.Fatalf("first failure: %v", err)
	}
	h.completeCheckpoint() // resets the count
	if _, err := h.failCheckpoint(); err != nil {
		t.Fatalf("first failure after a success: %v", err)
	}
	_, err := h.failCheckpoint()
	errorIs(t, err, ErrCheckpointsFailing)
	if !strings.Contains(err.Error(), "2 checkpoints in a row failed (1 tolerated)") {
		t.Errorf("error = %v", err)
	}
}

func TestFinalCheckpoint(t *testing.T) {
	h := newHarness(t, true)
	h.running()
	if err := h.c.StartCheckpoint(h.ctx, true); err != nil {
		t.Fatal(err)
	}
	e := h.c.cp.epoch
	if cmd := h.commands(); !cmd.Checkpoint.ThenStop {
		t.Errorf("command = %+v, want then-stop", cmd.Checkpoint)
	}
	// It gets the final checkpoint time-out, not the periodic one.
	h.advance(h.set.CheckpointTimeout + time.Second)
	out, err := h.c.AdvanceCheckpoint(h.ctx)
	if err != nil || out != (CheckpointOutcome{Kind: InFlight, Epoch: e, ThenStop: true}) {
		t.Fatalf("AdvanceCheckpoint = %+v, %v", out, err)
	}
	h.reportAll(e)
	if out, _ := h.c.AdvanceCheckpoint(h.ctx); out.Kind != InFlight {
		t.Fatalf("AdvanceCheckpoint = %+v, want waiting for commits", out)
	}
	// A commit not acknowledged in time fails the checkpoint, but the
	// epoch stays committing: the commit decision stands.
	h.advance(h.set.FinalCheckpointTimeout)
	out, err = h.c.AdvanceCheckpoint(h.ctx)
	if err != nil || out.Kind != Failed || !out.ThenStop || !strings.Contains(out.Reason, "2 of 2 committing subtasks") {
		t.Fatalf("AdvanceCheckpoint = %+v, %v", out, err)
	}
	if st := h.checkpointState(e); st != job.CheckpointCommitting {
		t.Errorf("epoch %d is %q, want committing", e, st)
	}
	if r, err := PrepareRestore(h.ctx, h.st, h.fence, testJob); err != nil || r.Epoch != e || !r.Commit {
		t.Errorf("restore = %+v, %v; want a replay of %d", r, err, e)
	}
}

func TestReplayedCommitOfTheRestoredEpoch(t *testing.T) {
	h := newHarness(t, true)
	h.running()
	e := h.startDue()
	h.reportAll(e)
	h.expectContinue() // committing; the run ends before any ack

	h.newRun(2)
	if !h.c.CheckpointInFlight() {
		t.Fatal("the replayed commit is not in flight")
	}
	if cmd := h.commands(); cmd.Start.RestoreEpoch != e || cmd.Commit == nil || cmd.Commit.Epoch != e {
		t.Fatalf("commands = %+v, want restore and commit of %d", cmd, e)
	}
	h.running()
	h.advance(50 * time.Second) // checkpoints are due, but the commit comes first
	h.expectContinue()
	if h.c.cp.epoch != e {
		t.Fatal("a new checkpoint started before the replayed commit was acknowledged")
	}
	h.ack(e, 0)
	h.ack(e, 1)
	out, err := h.c.AdvanceCheckpoint(h.ctx)
	if err != nil || out.Kind != Completed || out.Epoch != e {
		t.Fatalf("AdvanceCheckpoint = %+v, %v", out, err)
	}
	cp, _ := h.checkpoint(e)
	if cp.State != job.CheckpointReady || cp.Operators["map"].Bytes != 200 {
		t.Errorf("stored checkpoint = %+v, want ready with its metadata kept", cp)
	}
	if e2 := h.completeCheckpoint(); e2 != e+1 {
		t.Errorf("next epoch %d", e2)
	}
}

func TestStoreErrorsLeaveTheCheckpointRetryable(t *testing.T) {
	h := newHarness(t, true)
	cmds := &failingCommands{Store: h.st}
	h.c.store = cmds
	h.running()
	h.expectContinue()

	// Creating the epoch fails: nothing is in flight, Progress says why.
	h.advance(5 * time.Second)
	h.mem.FailNext(errThrottled)
	_, err := h.c.Progress(h.ctx)
	errorIs(t, err, errThrottled)
	if h.c.CheckpointInFlight() {
		t.Fatal("in flight after the epoch could not be created")
	}

	// The epoch is created but the command write fails: the epoch is in
	// flight and the next Progress writes the command.
	cmds.fail = true
	_, err = h.c.Progress(h.ctx)
	errorIs(t, err, errThrottled)
	if !h.c.CheckpointInFlight() {
		t.Fatal("the created epoch is not in flight")
	}
	e := h.c.cp.epoch
	if cmd := h.commands(); cmd.Checkpoint != nil {
		t.Fatalf("command written despite the failure: %+v", cmd.Checkpoint)
	}
	cmds.fail = false
	h.expectContinue()
	if cmd := h.commands(); cmd.Checkpoint == nil || cmd.Checkpoint.Epoch != e {
		t.Fatalf("command after the retry = %+v", cmd.Checkpoint)
	}

	// Recording committing fails: it stays in flight and is retried.
	h.reportAll(e)
	h.mem.FailNext(errThrottled)
	_, err = h.c.AdvanceCheckpoint(h.ctx)
	errorIs(t, err, errThrottled)
	if h.c.cp.committing {
		t.Fatal("committing after the record could not be written")
	}
	if out, err := h.c.AdvanceCheckpoint(h.ctx); err != nil || out.Kind != InFlight || h.checkpointState(e) != job.CheckpointCommitting {
		t.Fatalf("retry: %+v, %v, state %q", out, err, h.checkpointState(e))
	}
	// Recording ready fails: retried.
	h.ack(e, 0)
	h.ack(e, 1)
	h.mem.FailNext(errThrottled)
	_, err = h.c.AdvanceCheckpoint(h.ctx)
	errorIs(t, err, errThrottled)
	if out, err := h.c.AdvanceCheckpoint(h.ctx); err != nil || out.Kind != Completed {
		t.Fatalf("retry: %+v, %v", out, err)
	}

	// A final checkpoint whose command cannot be written: retrying the
	// same StartCheckpoint writes it; another kind is refused.
	cmds.fail = true
	errorIs(t, h.c.StartCheckpoint(h.ctx, true), errThrottled)
	cmds.fail = false
	errorIs(t, h.c.StartCheckpoint(h.ctx, false), ErrCheckpointInFlight)
	if err := h.c.StartCheckpoint(h.ctx, true); err != nil {
		t.Fatalf("retrying the start: %v", err)
	}
	if cmd := h.commands(); cmd.Checkpoint.Epoch != e+1 || !cmd.Checkpoint.ThenStop {
		t.Fatalf("command = %+v", cmd.Checkpoint)
	}

	// A newer leader fences this one out: the error says so.
	if _, err := h.mem.PutStatus(h.ctx, h.fence+1, job.Status{JobID: testJob}); err != nil {
		t.Fatal(err)
	}
	h.reportAll(e + 1)
	if out, err := h.c.AdvanceCheckpoint(h.ctx); err != nil || out.Kind != InFlight {
		t.Fatalf("AdvanceCheckpoint = %+v, %v", out, err)
	}
	h.ack(e+1, 0)
	h.ack(e+1, 1)
	if out, err := h.c.AdvanceCheckpoint(h.ctx); err != nil || out.Kind != Completed {
		t.Fatalf("AdvanceCheckpoint = %+v, %v", out, err)
	}
	errorIs(t, h.c.StartCheckpoint(h.ctx, false), store.ErrFenced)
}

var errThrottled = errors.New("throttled")

// failingCommands fails PutCommands while fail is set.
type failingCommands struct {
	store.Store
	fail bool
}

func (f *failingCommands) PutCommands(ctx context.Context, fe store.Fence, c job.Commands) (job.Commands, error) {
	if f.fail {
		return job.Commands{}, errThrottled
	}
	return f.Store.PutCommands(ctx, fe, c)
}

// Every command record states the checkpoint interval in force, so that
// workers read it when the next checkpoint is due; a changed interval
// reaches them with the next write.
func TestCommandRecordStatesTheCheckpointInterval(t *testing.T) {
	h := newHarness(t, false)
	if got := h.commands().CheckpointInterval; got != 10*time.Second {
		t.Errorf("start command: interval %s, want 10s", got)
	}
	h.running()
	h.startDue()
	if got := h.commands().CheckpointInterval; got != 10*time.Second {
		t.Errorf("checkpoint command: interval %s, want 10s", got)
	}
	h.c.SetCheckpointInterval(time.Minute)
	h.reportAll(h.c.cp.epoch)
	h.expectContinue()
	h.startDue()
	if cmd := h.commands(); cmd.CheckpointInterval != time.Minute || cmd.Checkpoint == nil || cmd.Checkpoint.Epoch != 2 {
		t.Errorf("after the change: interval %s, checkpoint %+v; want 1m with epoch 2", cmd.CheckpointInterval, cmd.Checkpoint)
	}
}

// A finished checkpoint lets go of its subtasks' metadata: it is in the
// record, and a job between checkpoints should hold none of it.
func TestFinishedCheckpointLetsGoOfItsMetadata(t *testing.T) {
	h := newHarness(t, false)
	h.running()
	if err := h.c.StartCheckpoint(h.ctx, true); err != nil {
		t.Fatal(err)
	}
	h.reportAll(h.c.cp.epoch)
	if out, err := h.c.AdvanceCheckpoint(h.ctx); err != nil || out.Kind != Completed {
		t.Fatalf("AdvanceCheckpoint = %+v, %v", out, err)
	}
	for i, m := range h.c.cp.meta {
		if m != nil {
			t.Errorf("operator %d's metadata still held after the checkpoint: %v", i, m)
		}
	}
}
