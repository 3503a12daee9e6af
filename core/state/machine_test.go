package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
)

func TestNewJobIsScheduledAndRuns(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	st := h.m.Status()
	if st.RunID != 1 {
		t.Fatalf("run id = %d, want 1 for the first run", st.RunID)
	}
	if len(h.fleet.starts) != 1 || len(h.fleet.starts[0].Workers) != 2 {
		t.Fatalf("fleet starts = %+v, want one start of 2 workers", h.fleet.starts)
	}
	h.bringUp()
	st = h.m.Status()
	if !st.StartedAt.Equal(h.clk.Now()) || !st.RunStartedAt.Equal(h.clk.Now()) {
		t.Fatalf("start times not set on entering Running: %+v", st)
	}
}

func TestSchedulingWaitsForEveryWorkerAndTask(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.send(h.envelope("w-0", protocol.Event{Kind: protocol.WorkerRegistered, Slots: 1}))
	h.advance(time.Second)
	h.want(job.Scheduling)
	h.send(h.envelope("w-1", protocol.Event{Kind: protocol.WorkerRegistered, Slots: 1}))
	h.advance(time.Second)
	h.want(job.Scheduling) // registered, but no task started yet
}

func TestWorkerStartupTimeoutRecovers(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.advanceUntil(job.Recovering, h.deps.Settings.WorkerStartupTimeout+time.Second)
	st := h.m.Status()
	if st.Restarts != 1 || !strings.Contains(failureMessage(st), "0 of 2 workers registered") {
		t.Fatalf("status = restarts %d, failure %q", st.Restarts, failureMessage(st))
	}
}

func TestCreatedWithStopGoesStraightToStopped(t *testing.T) {
	cfg := testConfig()
	cfg.Stop = job.StopGraceful
	h := newHarness(t, cfg)
	h.start()
	h.want(job.Stopped)
	if len(h.fleet.starts) != 0 {
		t.Fatal("workers launched for a job created stopped")
	}
}

func TestPeriodicCheckpointsAdvanceEpochs(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	for i := 1; i <= 3; i++ {
		h.waitCheckpoint()
		if e := h.answerCheckpoint(); e != int64(i) {
			t.Fatalf("checkpoint %d has epoch %d", i, e)
		}
	}
	if got := h.readyEpochs(); len(got) != 3 || got[2] != 3 {
		t.Fatalf("ready epochs = %v, want [1 2 3]", got)
	}
	h.want(job.Running)
	if got := h.m.Status().LastReadyEpoch; got != 3 {
		t.Fatalf("status last ready epoch = %d, want 3", got)
	}
	// Persisted at the latest with the periodic job_running step.
	for i := 0; i < 12; i++ {
		h.heartbeats()
		h.advance(5 * time.Second)
		if c := h.commands(); c.Checkpoint != nil && c.Checkpoint.Epoch > h.lastEp {
			h.lastEp = c.Checkpoint.Epoch
			h.answerCheckpoint()
		}
	}
	stored, _ := h.store.GetStatus(h.ctx, "orders")
	if stored.LastReadyEpoch < 3 {
		t.Fatalf("stored last ready epoch = %d after a minute, want at least 3", stored.LastReadyEpoch)
	}
}

func TestCheckpointIntervalAppliesLive(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.waitCheckpoint()
	h.answerCheckpoint()
	h.update(func(c *job.Config) { c.CheckpointInterval = time.Minute })
	h.want(job.Running)
	// At the old 10 s interval a checkpoint would start within 11 s.
	for i := 0; i < 30; i++ {
		h.advance(time.Second)
		h.heartbeats()
	}
	if c := h.commands(); c.Checkpoint.Epoch != 1 {
		t.Fatalf("checkpoint %d started 30 s after the interval became 1 min", c.Checkpoint.Epoch)
	}
	if h.m.Status().RunID != 1 {
		t.Fatal("a live change restarted the job")
	}
}

func TestStopModesLeadToTheirPaths(t *testing.T) {
	cases := []struct {
		mode job.StopMode
		via  job.State
	}{
		{job.StopCheckpoint, job.CheckpointStopping},
		{job.StopGraceful, job.Stopping},
		{job.StopImmediate, job.Stopping},
	}
	for _, tc := range cases {
		t.Run(string(tc.mode), func(t *testing.T) {
			h := newHarness(t, testConfig())
			h.start()
			h.bringUp()
			h.update(func(c *job.Config) { c.Stop = tc.mode })
			h.want(tc.via)
			if tc.mode == job.StopCheckpoint {
				h.tick()
				cmd := h.commands().Checkpoint
				if cmd == nil || !cmd.ThenStop {
					t.Fatalf("checkpoint command = %+v, want a then-stop checkpoint", cmd)
				}
				h.answerCheckpoint()
			} else if got := h.commands().Stop; got == nil || got.Mode != tc.mode {
				t.Fatalf("stop command = %+v, want mode %s", got, tc.mode)
			}
			h.finishAll()
			h.tick()
			h.want(job.Stopped)
			if !h.fleet.stopped(1) {
				t.Fatal("workers of run 1 were not torn down")
			}
			if tc.mode == job.StopCheckpoint {
				got := h.readyEpochs()
				if len(got) != 1 {
					t.Fatalf("ready epochs = %v, want the final checkpoint", got)
				}
				// The stopped job's status names the checkpoint it would
				// restore from.
				stored, err := h.store.GetStatus(h.ctx, "orders")
				if err != nil {
					t.Fatal(err)
				}
				if stored.LastReadyEpoch != got[0] {
					t.Errorf("stored status of the stopped job: last ready epoch %d, want the final checkpoint %d", stored.LastReadyEpoch, got[0])
				}
			}
		})
	}
}

func TestStoppingTearsDownAfterStopWait(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.update(func(c *job.Config) { c.Stop = job.StopGraceful })
	h.want(job.Stopping)
	h.advance(h.deps.Settings.StopWait - time.Second)
	h.want(job.Stopping)
	h.advance(2 * time.Second)
	h.want(job.Stopped)
	if !h.fleet.stopped(1) {
		t.Fatal("workers not torn down after the stop wait")
	}
}

// A force stop is accepted in every state that is not at rest.
func TestForceStopInEveryNonTerminalState(t *testing.T) {
	reach := map[job.State]func(h *harness){
		job.Scheduling: func(h *harness) { h.start() },
		job.Running:    func(h *harness) { h.start(); h.bringUp() },
		job.CheckpointStopping: func(h *harness) {
			h.start()
			h.bringUp()
			h.update(func(c *job.Config) { c.Stop = job.StopCheckpoint })
		},
		job.Stopping: func(h *harness) {
			h.start()
			h.bringUp()
			h.update(func(c *job.Config) { c.Stop = job.StopGraceful })
		},
		job.Finishing: func(h *harness) {
			h.start()
			h.bringUp()
			h.eachTask(func(a job.TaskAssignment) protocol.Event {
				if a.OperatorID != "source" {
					return protocol.Event{Kind: protocol.CheckpointEvent, Operator: a.OperatorID, Subtask: a.Subtask, Epoch: 1, Phase: "noop"}
				}
				return protocol.Event{Kind: protocol.TaskFinished, Operator: a.OperatorID, Subtask: a.Subtask}
			})
			h.tick()
		},
		job.Rescaling: func(h *harness) {
			h.start()
			h.bringUp()
			h.update(func(c *job.Config) { c.Parallelism = map[string]int{"map": 4} })
		},
		job.Restarting: func(h *harness) {
			h.start()
			h.bringUp()
			h.update(func(c *job.Config) { c.RestartNonce = "r1" })
		},
		job.Recovering: func(h *harness) {
			h.start()
			h.bringUp()
			h.advanceUntil(job.Recovering, h.deps.Settings.HeartbeatTimeout+time.Second)
		},
	}
	// Failing waits only while tearing down fails: it retries in place.
	reach[job.Failing] = func(h *harness) {
		h.start()
		h.bringUp()
		h.fleet.failNext = errTransient
		h.send(h.envelope("w-0", protocol.Event{Kind: protocol.TaskFailed, Operator: "map", Subtask: 0,
			Error: "bad record", Domain: job.DomainUser, Retry: protocol.RetryNone}))
		h.tick()
	}
	for _, s := range job.States {
		// Created is never waited in: Start moves on from it at once.
		if s.Terminal() || s == job.Created {
			continue
		}
		t.Run(string(s), func(t *testing.T) {
			get, ok := reach[s]
			if !ok {
				t.Fatalf("no way to reach %s in this test", s)
			}
			h := newHarness(t, testConfig())
			get(h)
			h.want(s)
			h.update(func(c *job.Config) { c.Stop = job.StopForce })
			h.tick()
			h.want(job.Stopped)
			if !h.fleet.stopped(h.m.Status().RunID) {
				t.Fatal("force stop did not tear the workers down")
			}
		})
	}
}

func TestSourcesFinishingLeadsToFinished(t *testing.T) {
	h := finishingHarness(t)
	h.finishAll()
	h.tick()
	h.want(job.Finished)
	if !h.fleet.stopped(1) {
		t.Fatal("workers of a finished job were not torn down")
	}
}

func TestFinishingTimesOut(t *testing.T) {
	h := finishingHarness(t)
	for elapsed := time.Duration(0); elapsed <= h.deps.Settings.FinishingTimeout-5*time.Second; elapsed += 5 * time.Second {
		h.heartbeats()
		h.advance(5 * time.Second)
	}
	h.want(job.Finishing)
	h.heartbeats()
	h.advanceUntil(job.Recovering, 6*time.Second)
	if !strings.Contains(failureMessage(h.m.Status()), "made no progress for") {
		t.Fatalf("failure = %q", failureMessage(h.m.Status()))
	}
}

// A bounded job whose sinks drain slowly is waited for past the finishing
// time-out as long as records keep moving: recovering it would replay it.
func TestFinishingWaitsForSlowDrain(t *testing.T) {
	h := finishingHarness(t)
	timeout := h.deps.Settings.FinishingTimeout
	records := uint64(0)
	for elapsed := time.Duration(0); elapsed < 3*timeout; elapsed += 5 * time.Second {
		records += 10 // a trickle, but progress
		for w, as := range h.byWorker() {
			env := h.envelope(w)
			for _, a := range as {
				env.Heartbeat.Metrics = append(env.Heartbeat.Metrics, protocol.TaskMetrics{
					Operator: a.OperatorID, Subtask: a.Subtask, RecordsIn: records, RecordsOut: records})
			}
			h.send(env)
		}
		h.advance(5 * time.Second)
	}
	h.want(job.Finishing)
	h.finishAll()
	h.tick()
	h.want(job.Finished)
}

// A job restarted from rest after its TTL ran out gets its TTL afresh from
// the new start, instead of being stopped at once.
func TestRestartFromRestCountsTTLAfresh(t *testing.T) {
	cfg := testConfig()
	cfg.TTL = time.Minute
	h := newHarness(t, cfg)
	h.start()
	h.bringUp()
	h.finishAll()
	h.tick()
	h.advanceUntil(job.Finished, time.Second)
	h.advance(2 * time.Minute)
	h.update(func(c *job.Config) { c.RestartNonce = "again" })
	h.bringUp()
	h.advance(time.Second)
	h.heartbeats()
	h.tick()
	h.want(job.Running)
	if got := h.m.Status().StartedAt; !got.Equal(h.clk.Now().Add(-time.Second)) && got.Before(h.clk.Now().Add(-2*time.Second)) {
		t.Fatalf("started at %s, want the new start (now %s)", got, h.clk.Now())
	}
}

func TestRescaleTakesFinalCheckpointThenReschedules(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.update(func(c *job.Config) { c.Parallelism = map[string]int{"map": 4} })
	h.want(job.Rescaling)
	h.tick()
	epoch := h.answerCheckpoint()
	h.finishAll()
	h.tick()
	h.want(job.Scheduling)
	st := h.m.Status()
	if st.RunID != 2 || st.Parallelism["map"] != 4 {
		t.Fatalf("after rescale: run %d, parallelism %v", st.RunID, st.Parallelism)
	}
	if got := h.commands().Start; got.RestoreEpoch != epoch || len(got.Assignments) != 8 {
		t.Fatalf("start command restores %d with %d tasks, want epoch %d with 8", got.RestoreEpoch, len(got.Assignments), epoch)
	}
	if len(h.fleet.starts) != 2 || len(h.fleet.starts[1].Workers) != 4 {
		t.Fatalf("second launch = %+v, want 4 workers", h.fleet.starts[1:])
	}
	h.bringUp()
}

func TestForceRestartTearsDownAndReschedules(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.update(func(c *job.Config) { c.RestartNonce, c.RestartMode = "r1", job.RestartForce })
	h.want(job.Scheduling)
	if !h.fleet.stopped(1) || h.m.Status().RunID != 2 || h.m.Status().RestartNonce != "r1" {
		t.Fatalf("force restart: stopped run 1 %v, status %+v", h.fleet.stopped(1), h.m.Status())
	}
	if got := h.m.Status().Restarts; got != 0 {
		t.Fatalf("a requested restart counted as a failure: restarts %d", got)
	}
}

// The source system hangs here: a safe restart while a periodic checkpoint
// is in flight must wait for that checkpoint, take the final one, and
// reschedule.
func TestSafeRestartDuringInFlightCheckpointCompletes(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.waitCheckpoint()
	periodic := h.commands().Checkpoint
	if periodic.ThenStop {
		t.Fatal("periodic checkpoint marked then-stop")
	}
	h.update(func(c *job.Config) { c.RestartNonce, c.RestartMode = "r1", job.RestartSafe })
	h.want(job.Restarting)
	h.tick()
	if c := h.commands().Checkpoint; c.Epoch != periodic.Epoch {
		t.Fatalf("a final checkpoint (%d) started while periodic %d was in flight", c.Epoch, periodic.Epoch)
	}
	h.answerCheckpoint() // the periodic one completes
	h.tick()
	final := h.commands().Checkpoint
	if final.Epoch != periodic.Epoch+1 || !final.ThenStop {
		t.Fatalf("final checkpoint = %+v, want then-stop epoch %d", final, periodic.Epoch+1)
	}
	h.answerCheckpoint()
	h.finishAll()
	h.tick()
	h.want(job.Scheduling)
	if got := h.commands().Start.RestoreEpoch; got != final.Epoch {
		t.Fatalf("new run restores epoch %d, want the final %d", got, final.Epoch)
	}
}

func TestSafeRestartWithoutFinalCheckpointStillRestarts(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.update(func(c *job.Config) { c.RestartNonce = "r1" })
	h.want(job.Restarting)
	for elapsed := time.Duration(0); elapsed <= h.deps.Settings.FinalCheckpointTimeout; elapsed += 5 * time.Second {
		h.heartbeats()
		h.advance(5 * time.Second)
	}
	h.want(job.Scheduling)
}

func TestWorkerTimeoutRecoversAndReschedulesAfterBackoff(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.advance(h.deps.Settings.HeartbeatTimeout - time.Second)
	h.want(job.Running)
	h.advanceUntil(job.Recovering, 2*time.Second)
	if !h.fleet.stopped(1) {
		t.Fatal("recovering did not tear down the failed run")
	}
	// restart 1 backs off 500 ms with jitter fixed at 0.5: 375 ms.
	h.advance(200 * time.Millisecond)
	h.want(job.Recovering)
	h.advance(400 * time.Millisecond)
	h.want(job.Scheduling)
	if st := h.m.Status(); st.RunID != 2 || st.Restarts != 1 {
		t.Fatalf("after recovery: run %d restarts %d", st.RunID, st.Restarts)
	}
}

func TestRetryableTaskFailureRecovers(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.send(h.envelope("w-1", protocol.Event{Kind: protocol.TaskFailed, Operator: "map", Subtask: 1,
		Error: "connection reset", Domain: job.DomainExternal, Retry: protocol.RetryBackoff}))
	h.tick()
	h.want(job.Recovering)
	if f := h.m.Status().Failure; f == nil || f.Domain != job.DomainExternal || !strings.Contains(f.Message, "connection reset") {
		t.Fatalf("failure = %+v", f)
	}
}

func TestNonRetryableTaskFailureFailsTheJob(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.send(h.envelope("w-0", protocol.Event{Kind: protocol.TaskFailed, Operator: "map", Subtask: 0,
		Error: "division by zero in user code", Domain: job.DomainUser, Retry: protocol.RetryNone}))
	h.tick()
	h.want(job.Failed)
	st := h.m.Status()
	if st.Failure == nil || st.Failure.Domain != job.DomainUser || !strings.Contains(st.Failure.Message, "not retryable") {
		t.Fatalf("failure = %+v", st.Failure)
	}
	if st.Restarts != 0 {
		t.Fatalf("a fatal failure counted a restart")
	}
}

func TestExhaustedRestartsFailWithAMessage(t *testing.T) {
	cfg := testConfig()
	cfg.RestartPolicy.AllowedRestarts = 2
	h := newHarness(t, cfg)
	h.start()
	for i := 0; i < 3; i++ {
		h.bringUp()
		if i < 2 {
			h.advanceUntil(job.Recovering, h.deps.Settings.HeartbeatTimeout+time.Second)
			h.advanceUntil(job.Scheduling, h.deps.Settings.BackoffMax)
		}
	}
	h.advanceUntil(job.Failed, h.deps.Settings.HeartbeatTimeout+time.Second)
	msg := failureMessage(h.m.Status())
	if !strings.Contains(msg, "exhausted retries") || !strings.Contains(msg, "restarted 2 times") || !strings.Contains(msg, "sent nothing") {
		t.Fatalf("failure message %q must say restarts ran out, how many, and the last error", msg)
	}
}

func TestUnlimitedRestarts(t *testing.T) {
	cfg := testConfig()
	cfg.RestartPolicy.AllowedRestarts = -1
	h := newHarness(t, cfg)
	h.start()
	for i := 0; i < 25; i++ {
		h.bringUp()
		h.advanceUntil(job.Recovering, h.deps.Settings.HeartbeatTimeout+time.Second)
		h.advanceUntil(job.Scheduling, h.deps.Settings.BackoffMax)
	}
	if got := h.m.Status().Restarts; got != 25 {
		t.Fatalf("restarts = %d, want 25", got)
	}
}

func TestRestartCountResetsAfterHealthyDuration(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.advanceUntil(job.Recovering, h.deps.Settings.HeartbeatTimeout+time.Second)
	h.advanceUntil(job.Scheduling, time.Second)
	h.bringUp()
	if got := h.m.Status().Restarts; got != 1 {
		t.Fatalf("restarts = %d, want 1", got)
	}
	healthy := h.m.Context().Config.RestartPolicy.HealthyDuration
	for elapsed := time.Duration(0); elapsed < healthy-5*time.Second; elapsed += 5 * time.Second {
		h.heartbeats()
		h.advance(5 * time.Second)
		if c := h.commands(); c.Checkpoint != nil && c.Checkpoint.Epoch > h.lastEp {
			h.lastEp = c.Checkpoint.Epoch
			h.answerCheckpoint()
		}
	}
	if got := h.m.Status().Restarts; got != 1 {
		t.Fatalf("restarts reset after %s, before the healthy duration", healthy-5*time.Second)
	}
	h.heartbeats()
	h.advance(6 * time.Second)
	stored, _ := h.store.GetStatus(h.ctx, "orders")
	if stored.Restarts != 0 {
		t.Fatalf("stored restarts = %d after a healthy %s, want 0", stored.Restarts, healthy)
	}
}

func TestMessagesFromAnEarlierRunAreIgnored(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.update(func(c *job.Config) { c.RestartNonce, c.RestartMode = "r1", job.RestartForce })
	h.bringUp() // run 2
	old := h.envelope("w-0", protocol.Event{Kind: protocol.TaskFailed, Operator: "map", Subtask: 0,
		Error: "stale failure", Domain: job.DomainUser, Retry: protocol.RetryNone})
	old.RunID = 1
	h.send(old)
	h.tick()
	h.want(job.Running)
}

func TestDuplicatedMessagesAreHarmless(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.waitCheckpoint()
	epoch := h.commands().Checkpoint.Epoch
	// Every subtask but one reports, each report delivered three times.
	var last *protocol.Envelope
	for w, as := range h.byWorker() {
		for _, a := range as {
			if w == "w-1" && a.OperatorID == "sink" {
				last = h.envelope(w, protocol.Event{Kind: protocol.CheckpointCompleted, Operator: a.OperatorID, Subtask: a.Subtask, Epoch: epoch})
				continue
			}
			env := h.envelope(w, protocol.Event{Kind: protocol.CheckpointCompleted, Operator: a.OperatorID, Subtask: a.Subtask, Epoch: epoch})
			for i := 0; i < 3; i++ {
				h.send(env)
			}
		}
	}
	h.tick()
	if c := h.commands(); c.Commit != nil && c.Commit.Epoch == epoch {
		t.Fatal("duplicates completed a checkpoint that one subtask has not reported")
	}
	h.send(last)
	h.send(last)
	h.tick()
	if c := h.commands(); c.Commit == nil || c.Commit.Epoch != epoch {
		t.Fatalf("checkpoint %d did not move to committing once every subtask reported", epoch)
	}
	h.want(job.Running)
}

func TestCheckpointTimeoutRecoversPastTolerance(t *testing.T) {
	h := newHarness(t, testConfig())
	h.deps.Settings.CheckpointTimeout = 30 * time.Second
	h.m = NewMachine(h.deps, h.m.Context().Config, job.Status{})
	h.start()
	h.bringUp()
	h.waitCheckpoint()
	epoch := h.commands().Checkpoint.Epoch
	for elapsed := time.Duration(0); elapsed < 25*time.Second; elapsed += 5 * time.Second {
		h.heartbeats()
		h.advance(5 * time.Second)
	}
	h.heartbeats()
	h.advanceUntil(job.Recovering, 6*time.Second)
	cps, _ := h.store.ListCheckpoints(h.ctx, "orders")
	if len(cps) == 0 || cps[len(cps)-1].Epoch != epoch || cps[len(cps)-1].State != job.CheckpointFailed {
		t.Fatalf("checkpoints = %+v, want epoch %d failed", cps, epoch)
	}
}

func TestTerminalStatesReactToLaterConfig(t *testing.T) {
	t.Run("failed, new restart nonce", func(t *testing.T) {
		h := newHarness(t, testConfig())
		h.start()
		h.bringUp()
		h.send(h.envelope("w-0", protocol.Event{Kind: protocol.TaskFailed, Operator: "map", Subtask: 0, Error: "bad", Domain: job.DomainUser, Retry: protocol.RetryNone}))
		h.tick()
		h.want(job.Failed)
		h.update(func(c *job.Config) { c.CheckpointInterval = 20 * time.Second })
		h.want(job.Failed)
		h.update(func(c *job.Config) { c.RestartNonce = "again" })
		h.want(job.Scheduling)
		if st := h.m.Status(); st.Failure != nil || st.Restarts != 0 || st.RunID != 2 {
			t.Fatalf("rescheduled failed job keeps %+v", st)
		}
	})
	t.Run("stopped, stop cleared", func(t *testing.T) {
		h := newHarness(t, testConfig())
		h.start()
		h.bringUp()
		h.update(func(c *job.Config) { c.Stop = job.StopForce })
		h.want(job.Stopped)
		h.update(func(c *job.Config) { c.Stop = job.StopNone })
		h.want(job.Scheduling)
	})
	t.Run("stopped by ttl, stop cleared", func(t *testing.T) {
		cfg := testConfig()
		cfg.TTL = time.Minute
		h := newHarness(t, cfg)
		h.start()
		h.bringUp()
		for i := 0; i < 13; i++ {
			h.heartbeats()
			h.advance(5 * time.Second)
		}
		h.want(job.Stopping)
		h.finishAll()
		h.tick()
		h.want(job.Stopped)
		h.update(func(c *job.Config) { c.Stop = job.StopNone })
		h.want(job.Stopped)
	})
	t.Run("finished, new restart nonce", func(t *testing.T) {
		h := newHarness(t, testConfig())
		h.start()
		h.bringUp()
		h.finishAll()
		h.tick()
		h.want(job.Finishing)
		h.tick()
		h.want(job.Finished)
		h.update(func(c *job.Config) { c.RestartNonce = "again" })
		h.want(job.Scheduling)
	})
}

func TestTTLStopsTheJob(t *testing.T) {
	cfg := testConfig()
	cfg.TTL = 30 * time.Second
	h := newHarness(t, cfg)
	h.start()
	h.bringUp()
	h.advance(29 * time.Second)
	h.heartbeats()
	h.want(job.Running)
	h.advance(time.Second)
	h.want(job.Stopping)
	if c := h.commands().Stop; c == nil || c.Mode != job.StopImmediate {
		t.Fatalf("ttl stop command = %+v, want immediate", c)
	}
}

func TestRetriesInPlaceWithBackoffThenRecovers(t *testing.T) {
	h := newHarness(t, testConfig())
	h.fleet.failNext = errTransient
	h.start()
	h.want(job.Scheduling)
	if len(h.fleet.starts) != 0 {
		t.Fatal("launch did not fail as arranged")
	}
	// First retry after 500 ms · (0.5 + 0.5·0.5) = 375 ms.
	h.clk.Advance(300 * time.Millisecond)
	h.tick()
	if len(h.fleet.starts) != 0 {
		t.Fatal("retried before the back-off passed")
	}
	h.clk.Advance(100 * time.Millisecond)
	h.tick()
	if len(h.fleet.starts) != 1 {
		t.Fatalf("not retried after the back-off: %d starts", len(h.fleet.starts))
	}
	h.bringUp()

}

// A step that keeps failing is retried with growing back-off, then the job
// escalates to Recovering after the retry limit.
func TestPersistentStepFailureEscalates(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	limit := h.deps.Settings.RetryLimit
	h.store.failing("CreateCheckpoint", limit)
	var waits []time.Duration
	last := h.clk.Now()
	for i := 0; i < 2000 && h.m.State() == job.Running; i++ {
		h.heartbeats()
		h.advance(h.deps.Settings.ProgressInterval)
		if f := h.m.failures; f > len(waits) {
			waits = append(waits, h.clk.Now().Sub(last))
			last = h.clk.Now()
		}
	}
	h.want(job.Recovering)
	if len(waits) != limit-1 {
		t.Fatalf("%d failures before escalating, want %d", len(waits)+1, limit)
	}
	for i := 2; i < len(waits); i++ {
		if waits[i] < waits[i-1] {
			t.Fatalf("back-off shrank between attempts %d and %d: %v", i, i+1, waits)
		}
	}
	if !strings.Contains(failureMessage(h.m.Status()), "throttled") {
		t.Fatalf("failure = %q, want the store error", failureMessage(h.m.Status()))
	}
}

func TestStoreOutageDuringTransitionIsRetried(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.store.failing("PutStatus", 2)
	h.update(func(c *job.Config) { c.Stop = job.StopForce })
	if h.m.State() != job.Running {
		t.Fatalf("state moved to %s without persisting", h.m.State())
	}
	h.advanceUntil(job.Stopped, 5*time.Second)
}

func TestLosingTheLeaseStopsActing(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	// A newer controller (fence 2) takes the job over.
	st, _ := h.store.GetStatus(h.ctx, "orders")
	if _, err := h.store.PutStatus(h.ctx, 2, st); err != nil {
		t.Fatal(err)
	}
	cfg := mustConfig(h, func(c *job.Config) { c.Stop = job.StopForce })
	before := h.store.Writes()
	err := h.m.Config(h.ctx, cfg)
	if !errors.Is(err, ErrLostOwnership) || !errors.Is(err, store.ErrFenced) {
		t.Fatalf("err = %v, want lost ownership (fenced)", err)
	}
	if h.store.Writes() != before {
		t.Fatal("a fenced-out controller changed the store")
	}
	if err := h.m.Tick(h.ctx); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("tick after losing ownership: %v", err)
	}
}

func mustConfig(h *harness, f func(*job.Config)) job.Config {
	cfg, err := h.store.GetConfig(h.ctx, "orders")
	if err != nil {
		h.t.Fatal(err)
	}
	f(&cfg)
	cfg, err = h.store.PutConfig(h.ctx, cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return cfg
}

// takeOver makes a successor Machine under fence 2 from what the store
// holds, as a new leader would, and starts it.
func (h *harness) takeOver() *Machine {
	h.t.Helper()
	cfg, err := h.store.GetConfig(h.ctx, "orders")
	if err != nil {
		h.t.Fatal(err)
	}
	st, err := h.store.GetStatus(h.ctx, "orders")
	if err != nil {
		h.t.Fatal(err)
	}
	deps := h.deps
	deps.Fence = 2
	old := h.m
	h.m = NewMachine(deps, cfg, st)
	h.start()
	return old
}

// A controller that takes over finds the job Running under its
// predecessor and a stop written while no controller ran: it adopts the
// run and acts on the stop.
func TestTakeoverSeesMissedConfig(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	cfg := mustConfig(h, func(c *job.Config) { c.Stop = job.StopImmediate })
	old := h.takeOver()
	h.want(job.Stopping)
	if h.m.Status().ConfigVersion != cfg.Version {
		t.Fatalf("config version acted on = %d, want %d", h.m.Status().ConfigVersion, cfg.Version)
	}
	if c := h.commands(); c.Stop == nil || c.Stop.Mode != job.StopImmediate || c.RunID != 1 {
		t.Fatalf("command record = %+v, want an immediate stop of run 1", c)
	}
	h.finishAll()
	h.tick()
	h.want(job.Stopped)
	// The old controller learns it lost the job at its next write (its next
	// checkpoint), which the store refuses.
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		h.clk.Advance(time.Second)
		err = old.Tick(h.ctx)
	}
	if !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("old controller's tick: %v, want lost ownership", err)
	}
}

// A new leader adopts a Running job as it stands: same run, no worker
// started or stopped, the checkpoint in flight finished from the workers'
// reports, the next epoch above it, and a worker that is gone detected
// within the heartbeat time-out of the take-over.
func TestTakeoverAdoptsRunningJob(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.waitCheckpoint()
	inFlight := h.commands().Checkpoint.Epoch
	h.takeOver()
	h.want(job.Running)
	if got := h.m.Status().RunID; got != 1 {
		t.Fatalf("run id after take-over = %d, want 1 (adopted)", got)
	}
	if n := len(h.fleet.starts); n != 1 || h.fleet.stopped(1) {
		t.Fatalf("launches = %d, run 1 stopped = %v: the take-over touched the workers", n, h.fleet.stopped(1))
	}
	if got := h.answerCheckpoint(); got != inFlight {
		t.Fatalf("answered epoch %d, want the one in flight at take-over, %d", got, inFlight)
	}
	if !slices.Contains(h.readyEpochs(), inFlight) {
		t.Fatalf("ready epochs %v lack %d, in flight at take-over", h.readyEpochs(), inFlight)
	}
	h.waitCheckpoint()
	if next := h.commands().Checkpoint.Epoch; next <= inFlight {
		t.Fatalf("next epoch %d is not above %d", next, inFlight)
	}
	// w-1 falls silent from here on.
	timeout := h.deps.Settings.HeartbeatTimeout
	start := h.clk.Now()
	for h.m.State() == job.Running && h.clk.Now().Sub(start) < timeout+2*time.Second {
		h.advance(200 * time.Millisecond)
		h.send(h.envelope("w-0"))
	}
	h.want(job.Recovering)
	if took := h.clk.Now().Sub(start); took > timeout+time.Second {
		t.Fatalf("silent worker detected after %s, want within %s", took, timeout+time.Second)
	}
}

// A take-over while the workers start: the start command stands, so the
// new leader waits for the same run's workers instead of launching others.
func TestTakeoverAdoptsSchedulingJob(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.want(job.Scheduling)
	h.takeOver()
	h.want(job.Scheduling)
	if got := h.m.Status().RunID; got != 1 {
		t.Fatalf("run id after take-over = %d, want 1 (adopted)", got)
	}
	if n := len(h.fleet.starts); n != 1 {
		t.Fatalf("launches = %d, want 1: the take-over started workers again", n)
	}
	h.bringUp()
}

// records keeps the messages of the log records a job writes.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

func TestRunningLogsJobRunningPeriodically(t *testing.T) {
	h := newHarness(t, testConfig())
	logs := &records{}
	h.deps.Log = slog.New(logs)
	h.m = NewMachine(h.deps, h.m.Context().Config, job.Status{})
	h.start()
	h.bringUp()
	for elapsed := time.Duration(0); elapsed < 150*time.Second; elapsed += 5 * time.Second {
		h.heartbeats()
		h.advance(5 * time.Second)
		if c := h.commands(); c.Checkpoint != nil && c.Checkpoint.Epoch > h.lastEp {
			h.lastEp = c.Checkpoint.Epoch
			h.answerCheckpoint()
		}
	}
	// Every 60 s, at the harness's phase of one half: 30, 90 and 150 s in.
	if got := logs.count("job_running"); got != 3 {
		t.Fatalf("%d job_running events in 150 s, want 3 (every 60 s from 30 s in)", got)
	}
	if got := logs.count("state transition"); got != 2 {
		t.Fatalf("transitions logged: %d, want 2 (Created → Scheduling → Running)", got)
	}
}

// Each job takes its periodic step at a phase of its own, so that jobs
// entering Running together (all of them, at a take-over) do not log and
// write their statuses in the same instant every interval: the first
// job_running of a job with phase p comes (1-p) intervals into Running,
// the next a whole interval later.
func TestRunningPeriodicStepTakesTheJobsPhase(t *testing.T) {
	for _, c := range []struct {
		phase float64
		first time.Duration
	}{{0, 60 * time.Second}, {0.25, 45 * time.Second}, {0.75, 15 * time.Second}} {
		t.Run(fmt.Sprint(c.phase), func(t *testing.T) {
			h := newHarness(t, testConfig())
			logs := &records{}
			h.deps.Log = slog.New(logs)
			h.deps.Rand = func() float64 { return c.phase }
			h.m = NewMachine(h.deps, h.m.Context().Config, job.Status{})
			h.start()
			h.bringUp()
			in := time.Duration(0)
			step := func(d time.Duration) {
				for end := in + d; in < end; in += time.Second {
					if in%(5*time.Second) == 0 {
						h.heartbeats()
					}
					h.advance(time.Second)
					if c := h.commands(); c.Checkpoint != nil && c.Checkpoint.Epoch > h.lastEp {
						h.lastEp = c.Checkpoint.Epoch
						h.answerCheckpoint()
					}
				}
			}
			step(c.first - time.Second)
			if got := logs.count("job_running"); got != 0 {
				t.Fatalf("%d job_running events %s into Running, want none before %s", got, in, c.first)
			}
			step(time.Second)
			if got := logs.count("job_running"); got != 1 {
				t.Fatalf("%d job_running events %s into Running, want 1", got, in)
			}
			step(time.Minute - time.Second)
			if got := logs.count("job_running"); got != 1 {
				t.Fatalf("%d job_running events %s into Running, want still 1", got, in)
			}
			step(time.Second)
			if got := logs.count("job_running"); got != 2 {
				t.Fatalf("%d job_running events %s into Running, want 2", got, in)
			}
		})
	}
}

// A config version that arrives while a decided move cannot be persisted
// reaches the state the move leads to.
func TestConfigDuringPendingMoveReachesTheNextState(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.store.failing("PutStatus", 3)
	h.update(func(c *job.Config) { c.RestartNonce, c.RestartMode = "r1", job.RestartSafe })
	if h.m.State() != job.Running {
		t.Fatalf("state = %s, want Running while the move is unpersisted", h.m.State())
	}
	h.update(func(c *job.Config) { c.Stop = job.StopForce })
	h.advanceUntil(job.Stopped, 10*time.Second)
	if !h.fleet.stopped(1) {
		t.Fatal("workers not torn down")
	}
}

// A status write that landed but whose answer was lost (after the
// transport's own retries) is this controller's own: the next attempt
// meets a conflict at its own fence, writes again on top, and the job goes
// on. Here it is the write that starts a checkpoint stop: the stop must
// still end with its final checkpoint, and the controller keeps the job.
func TestUnansweredStatusWriteIsNotALostJob(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	ready := len(h.readyEpochs())
	h.store.failing("PutStatusUnanswered", 1)
	h.update(func(c *job.Config) { c.Stop = job.StopCheckpoint })
	h.advanceUntil(job.CheckpointStopping, 2*h.deps.Settings.BackoffMax)
	h.waitCheckpoint()
	if !h.commands().Checkpoint.ThenStop {
		t.Fatal("the checkpoint asked for is not the final one")
	}
	h.answerCheckpoint()
	h.finishAll()
	h.advanceUntil(job.Stopped, 5*time.Second)
	if got := len(h.readyEpochs()); got != ready+1 {
		t.Fatalf("%d ready checkpoints after the stop, want %d (the final one)", got, ready+1)
	}
	if st, _ := h.store.GetStatus(h.ctx, "orders"); st.State != job.Stopped {
		t.Fatalf("stored state = %s, want Stopped", st.State)
	}
}

// An envelope of another run is dropped with a log line that says so.
func TestOtherRunEnvelopeIsLogged(t *testing.T) {
	h := newHarness(t, testConfig())
	logs := &records{}
	h.deps.Log = slog.New(logs)
	h.m = NewMachine(h.deps, h.m.Context().Config, job.Status{})
	h.start()
	h.bringUp()
	env := h.envelope("w-0", protocol.Event{Kind: protocol.TaskFailed, Operator: "source", Subtask: 0,
		Error: "late news of an old run", Domain: job.DomainExternal, Retry: protocol.RetryBackoff})
	env.RunID = 0
	h.send(env)
	h.tick()
	h.want(job.Running)
	if got := logs.count("worker message of another run dropped"); got != 1 {
		t.Fatalf("%d log lines for the dropped envelope, want 1", got)
	}
}

// finishingHarness brings a job up and finishes its sources: it is in
// Finishing, its other tasks still running.
func finishingHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.eachTask(func(a job.TaskAssignment) protocol.Event {
		if a.OperatorID == "source" {
			return protocol.Event{Kind: protocol.TaskFinished, Operator: a.OperatorID, Subtask: a.Subtask}
		}
		return protocol.Event{Kind: protocol.TaskStarted, Operator: a.OperatorID, Subtask: a.Subtask}
	})
	h.tick()
	h.want(job.Finishing)
	return h
}
