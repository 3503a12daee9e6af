package worker

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestIdentityFromEnv(t *testing.T) {
	env := func(vars map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	}
	_, err := IdentityFromEnv(env(nil))
	for _, name := range []string{EnvJobID, EnvRunID, EnvWorkerID, EnvQueueURL, EnvJobsTable} {
		if err == nil || !strings.Contains(err.Error(), name+" is not set: set it to") {
			t.Errorf("error %v does not say to set %s", err, name)
		}
	}

	good := testIdentity().Env()
	delete(good, EnvSlots)
	delete(good, EnvHeartbeatInterval)
	id, err := IdentityFromEnv(env(good))
	if err != nil {
		t.Fatal(err)
	}
	if id.RunID != 3 || id.Slots != 1 || id.HeartbeatInterval != protocol.DefaultHeartbeatInterval {
		t.Errorf("identity = %+v, want run 3 and the default slots and interval", id)
	}

	bad := testIdentity().Env()
	bad[EnvRunID], bad[EnvSlots], bad[EnvHeartbeatInterval] = "three", "many", "soon"
	_, err = IdentityFromEnv(env(bad))
	for _, want := range []string{EnvRunID + ` is "three"`, EnvSlots + ` is "many"`, EnvHeartbeatInterval + ` is "soon"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %s", err, want)
		}
	}
	bad = testIdentity().Env()
	bad[EnvRunID], bad[EnvQueueURL], bad[EnvHeartbeatInterval] = "0", "queue", "10ms"
	_, err = IdentityFromEnv(env(bad))
	for _, want := range []string{EnvRunID + " is 0", EnvQueueURL + ` is "queue"`, EnvHeartbeatInterval + " is 10ms"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %s", err, want)
		}
	}
}

func TestOptionsAreChecked(t *testing.T) {
	_, err := New(testIdentity(), &fakeProgram{}, &fakePublisher{}, &fakeCommands{}, Options{FastRead: 100 * time.Millisecond, SendAttempts: -1})
	if err == nil || !strings.Contains(err.Error(), "below 250ms") || !strings.Contains(err.Error(), "at least once") {
		t.Errorf("New = %v, want both problems named", err)
	}
	if _, err := New(testIdentity(), nil, &fakePublisher{}, &fakeCommands{}, Options{}); err == nil {
		t.Error("New accepted a nil program")
	}
}

// TestRunFollowsTheCommandRecord walks one worker through a run: it
// registers at once, starts its subtasks, checkpoints, commits (its sink
// is committing) and stops, reporting each step in the next envelope.
func TestRunFollowsTheCommandRecord(t *testing.T) {
	h := newHarness(t, Options{CommittingOperators: []string{"sink"}})
	h.run()
	first := h.pub.last()
	if first == nil || first.V != protocol.V2 || first.Seq != 1 || first.Slots != 2 || first.Tasks != nil {
		t.Fatalf("first envelope = %v, want an immediate v2 registration", first)
	}

	h.startRun(0)
	h.advance(time.Second)
	if got := h.state("src"); got.State != protocol.Running {
		t.Fatalf("src = %+v, want running", got)
	}
	if len(h.pub.last().Tasks) != 2 {
		t.Fatalf("tasks = %+v, want w-0's two subtasks", h.pub.last().Tasks)
	}
	if err := h.prog.reporter.SetMetrics(Subtask{"src", 0}, Metrics{RecordsIn: 7, Backpressure: 0.5, Watermark: t0}); err != nil {
		t.Fatal(err)
	}
	if err := h.prog.reporter.SetMetrics(Subtask{"src", 1}, Metrics{}); err == nil {
		t.Error("metrics of another worker's subtask were accepted")
	}

	h.checkpoint(1, false)
	h.advance(11 * time.Second)
	src := h.state("src")
	if src.Checkpointed != 1 || src.CheckpointMetadata != "s3://state/1/src[0]" || src.RecordsIn != 7 || src.WatermarkMs != t0.UnixMilli() {
		t.Fatalf("src = %+v, want checkpoint 1 with metadata and metrics", src)
	}
	h.commit(1)
	h.advance(2 * time.Second)
	if sink, src := h.state("sink"), h.state("src"); sink.Committed != 1 || src.Committed != 0 {
		t.Fatalf("sink committed %d, src %d: want only the committing sink at 1", sink.Committed, src.Committed)
	}

	h.cmds.write(func(c *job.Commands) { c.Stop = &job.StopCommand{Mode: job.StopGraceful} })
	h.advance(11 * time.Second)
	if err := h.result(); err != nil {
		t.Fatalf("Run = %v, want nil after a stop", err)
	}
	if h.state("src").State != protocol.Finished || h.state("sink").State != protocol.Finished {
		t.Fatalf("last envelope %v, want every subtask finished", h.pub.last())
	}
	want := []string{"start restore=0 subtasks=2", "checkpoint 1", "commit 1", "stop graceful"}
	if got := h.prog.callList(); !slices.Equal(got, want) {
		t.Fatalf("program calls = %q, want %q", got, want)
	}
}

func TestFinalCheckpointThenStop(t *testing.T) {
	h := newHarness(t, Options{CommittingOperators: []string{"sink"}})
	h.run()
	h.startRun(4) // restored from 4, committing: its commit is replayed
	h.commit(4)
	h.advance(time.Second)
	h.checkpoint(5, true)
	h.advance(11 * time.Second)
	if h.returned() {
		t.Fatal("Run returned before the final checkpoint was committed")
	}
	h.commit(5)
	h.advance(time.Second)
	if err := h.result(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	want := []string{"start restore=4 subtasks=2", "commit 4", "checkpoint 5", "commit 5", "stop checkpoint"}
	if got := h.prog.callList(); !slices.Equal(got, want) {
		t.Fatalf("program calls = %q, want %q", got, want)
	}
	if sink := h.state("sink"); sink.State != protocol.Finished || sink.Committed != 5 || sink.Checkpointed != 5 {
		t.Fatalf("sink = %+v", sink)
	}
}

func TestSupersededRunStops(t *testing.T) {
	h := newHarness(t, Options{})
	h.run()
	h.startRun(0)
	h.advance(time.Second)
	h.cmds.write(func(c *job.Commands) { c.RunID = 4 })
	h.advance(11 * time.Second)
	if err := h.result(); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("Run = %v, want ErrSuperseded", err)
	}
	if got := h.prog.callList(); got[len(got)-1] != "stop immediate" {
		t.Fatalf("program calls = %q, want a last immediate stop", got)
	}
}

func TestStartFailureIsReported(t *testing.T) {
	h := newHarness(t, Options{})
	h.prog.startErr = Fatal(job.DomainUser, errors.New("cannot load program p"))
	h.run()
	h.startRun(0)
	h.advance(time.Second)
	src := h.state("src")
	if src.State != protocol.Failed || src.Error != "cannot load program p" || src.Domain != job.DomainUser || src.Retry != protocol.RetryNone {
		t.Fatalf("src = %+v, want failed by the user, not retryable", src)
	}
	// The failure stays in every envelope until the run is over.
	h.advance(21 * time.Second)
	if h.state("sink").State != protocol.Failed {
		t.Fatal("the failure was not repeated")
	}
}

func TestContextEndStopsTheProgram(t *testing.T) {
	h := newHarness(t, Options{})
	h.run()
	h.startRun(0)
	h.advance(time.Second)
	h.stop()
	if err := h.result(); !errors.Is(err, errContextCanceled()) {
		t.Fatalf("Run = %v, want the context's error", err)
	}
	if got := h.prog.callList(); got[len(got)-1] != "stop immediate" {
		t.Fatalf("program calls = %q, want a last immediate stop", got)
	}
}

// TestHeartbeatCadence: one envelope per heartbeat interval while nothing
// changes, one at once for a state change, and a heartbeat due just
// before an expected checkpoint waits to leave with its completion.
func TestHeartbeatCadence(t *testing.T) {
	h := newHarness(t, Options{})
	h.run()
	h.startRun(0)
	h.advance(time.Second)
	n := len(h.pub.sent())
	h.advance(5 * time.Minute)
	if got := len(h.pub.sent()) - n; got < 14 || got > 15 {
		t.Fatalf("%d envelopes in 5 idle minutes, want 15 (one per 20 s)", got)
	}
	n = len(h.pub.sent())
	if err := h.prog.reporter.Finish(Subtask{"src", 0}); err != nil {
		t.Fatal(err)
	}
	h.advance(200 * time.Millisecond)
	if got := len(h.pub.sent()) - n; got != 1 || h.state("src").State != protocol.Finished {
		t.Fatalf("%d envelopes within 200 ms of a subtask finishing, want 1 with it finished", got)
	}
}

// TestSendsAreRetried: a failed send is tried again; one that keeps
// failing is dropped, and the next heartbeat carries the same state.
func TestSendsAreRetried(t *testing.T) {
	h := newHarness(t, Options{})
	h.run()
	h.pub.mu.Lock()
	h.pub.failures = 1
	h.pub.mu.Unlock()
	h.startRun(0)
	h.advance(time.Second)
	if h.state("src").State != protocol.Running {
		t.Fatal("the start was not reported after one failed send")
	}
	h.pub.mu.Lock()
	h.pub.failures = 3
	h.pub.mu.Unlock()
	h.checkpoint(1, false)
	h.advance(11 * time.Second)
	if h.state("src").Checkpointed == 1 {
		t.Fatal("the checkpoint's envelope was sent although every attempt failed")
	}
	h.advance(21 * time.Second)
	if h.state("src").Checkpointed != 1 {
		t.Fatal("the next heartbeat did not carry the checkpoint")
	}
}
