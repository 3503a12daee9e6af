package process

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
)

// TestJobs runs the life of a job, scenario by scenario, each job on its
// own, all on one pair of controllers.
func TestJobs(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.startController("ctl-a", controllerOptions{})
	a.waitRole("leader", 20*time.Second)
	b := s.startController("ctl-b", controllerOptions{})
	b.waitRole("standby", 20*time.Second)

	t.Run("reaches Running with epochs advancing", func(t *testing.T) {
		t.Parallel()
		s := s.on(t)
		const id = "running"
		s.createJob(id, jobOptions{})
		st := s.waitState(id, job.Running, 30*time.Second)
		if st.RunID != 1 || st.Restarts != 0 {
			t.Fatalf("status %+v, want run 1 without restarts", st)
		}
		eps := s.waitReadyEpochs(id, 1, 0, 3, 30*time.Second)
		if !slices.IsSorted(eps) || len(slices.Compact(slices.Clone(eps))) != len(eps) {
			t.Errorf("ready epochs %v do not strictly increase", eps)
		}
		if cmd := s.commands(id); cmd.RunID != 1 || cmd.Checkpoint == nil || cmd.Checkpoint.Epoch < eps[len(eps)-1] {
			t.Errorf("command record %+v, want run 1 asking for epoch %d or later", cmd, eps[len(eps)-1])
		}
		pids := s.workerPIDs(id)
		if len(pids) != 1 || len(pids[1]) != 1 {
			t.Fatalf("worker pid files %v, want one worker of run 1", pids)
		}
		for w, pid := range pids[1] {
			if !alive(pid) {
				t.Errorf("worker %s (pid %d) is not running", w, pid)
			}
		}
		// The worker offers the slots the launcher gave it.
		var slots []int
		for _, l := range a.lines() {
			if l.Msg == "worker registered" && l.Job == id {
				slots = append(slots, l.Slots)
			}
		}
		if len(slots) == 0 || slots[0] != 2 {
			t.Errorf("the leader registered the worker with slots %v, want 2 (the job's slots per worker)", slots)
		}
	})

	t.Run("a task failure recovers from the last ready epoch", func(t *testing.T) {
		t.Parallel()
		s := s.on(t)
		const id = "task-failure"
		// Late enough for run 1 to have a ready checkpoint on a loaded
		// machine.
		s.createJob(id, jobOptions{runFlags: map[int64]string{1: "-fail-at 8s -fail-retry backoff"}})
		var st job.Status
		waitFor(t, 30*time.Second, "run 2 running", func() (bool, string) {
			st = s.status(id)
			return st.RunID == 2 && st.State == job.Running, fmt.Sprintf("%+v", st)
		})
		if st.Restarts != 1 || st.Failure == nil || !strings.Contains(st.Failure.Message, "simulated failure") {
			t.Errorf("status %+v, want 1 restart for the simulated failure", st)
		}
		ready := s.readyEpochs(id, 1)
		if len(ready) == 0 {
			t.Fatal("run 1 failed before its first checkpoint was ready: raise its -fail-at")
		}
		last := ready[len(ready)-1]
		cmd := s.commands(id)
		if cmd.RunID != 2 || cmd.Start == nil || cmd.Start.RestoreEpoch != last {
			t.Fatalf("command record %+v, want run 2 restoring epoch %d, run 1's last ready one", cmd, last)
		}
		started := s.workerLog(id, 2, "simulated subtasks started")
		if len(started) == 0 || started[0]["restore_epoch"] != float64(last) {
			t.Errorf("run 2's worker started with %v, want restore_epoch %d", started, last)
		}
		s.waitReadyEpochs(id, 2, last, 1, 30*time.Second)
		s.waitGone(id, 1)
	})

	t.Run("heartbeat loss is detected within the time-out plus one second", func(t *testing.T) {
		t.Parallel()
		s := s.on(t)
		const id = "heartbeat-loss"
		s.createJob(id, jobOptions{runFlags: map[int64]string{1: "-stop-heartbeats-at 3s"}})
		s.waitState(id, job.Running, 30*time.Second)
		var st job.Status
		waitFor(t, 30*time.Second, "run 2 running", func() (bool, string) {
			st = s.status(id)
			return st.RunID == 2 && st.State == job.Running, fmt.Sprintf("%+v", st)
		})
		if st.Restarts != 1 || st.Failure == nil || !strings.Contains(st.Failure.Message, "heartbeat time-out") {
			t.Errorf("status %+v, want 1 restart for the heartbeat time-out", st)
		}
		hang := s.workerLog(id, 1, "simulated hang: sending nothing from now on")
		if len(hang) != 1 {
			t.Fatalf("run 1's worker logged %d hangs, want 1", len(hang))
		}
		silentFrom := logTime(t, hang[0])
		var detected time.Time
		for _, c := range []*controller{a, b} {
			for _, l := range c.lines() {
				if l.Msg == "state transition" && l.Job == id && l.From == string(job.Running) && l.To == string(job.Recovering) {
					detected = l.Time
				}
			}
		}
		if detected.IsZero() {
			t.Fatal("no controller logged the move from Running to Recovering")
		}
		took := detected.Sub(silentFrom)
		t.Logf("heartbeat loss detected %s after the worker fell silent (time-out %s, heartbeat every %s)", took, heartbeatTimeout, heartbeatInterval)
		// The last envelope left at most one interval before the silence.
		if took > heartbeatTimeout+time.Second || took < heartbeatTimeout-heartbeatInterval {
			t.Errorf("detected %s after the silence, want between %s and %s", took, heartbeatTimeout-heartbeatInterval, heartbeatTimeout+time.Second)
		}
		s.waitGone(id, 1)
	})

	t.Run("sources finishing end in Finished", func(t *testing.T) {
		t.Parallel()
		s := s.on(t)
		const id = "finishing"
		s.createJob(id, jobOptions{flags: "-finish-after 3s"})
		s.waitState(id, job.Running, 30*time.Second)
		st := s.waitState(id, job.Finished, 30*time.Second)
		if st.RunID != 1 || st.Restarts != 0 || st.Failure != nil {
			t.Errorf("status %+v, want run 1 finished without restarts or failure", st)
		}
		s.waitGone(id, 1)
	})

	for _, mode := range []job.StopMode{job.StopCheckpoint, job.StopGraceful, job.StopImmediate, job.StopForce} {
		t.Run("stop "+string(mode)+" ends in Stopped", func(t *testing.T) {
			t.Parallel()
			s := s.on(t)
			id := job.ID("stop-" + string(mode))
			s.createJob(id, jobOptions{})
			s.waitState(id, job.Running, 30*time.Second)
			before := s.waitReadyEpochs(id, 1, 0, 1, 30*time.Second)
			s.update(id, func(c *job.Config) { c.Stop, c.StopReason = mode, "e2e" })
			st := s.waitState(id, job.Stopped, 30*time.Second)
			if st.RunID != 1 || st.Restarts != 0 {
				t.Errorf("status %+v, want run 1 stopped without restarts", st)
			}
			if mode == job.StopCheckpoint {
				cps := s.checkpoints(id)
				final := cps[len(cps)-1]
				if final.State != job.CheckpointReady || !final.ThenStop || final.Epoch <= before[len(before)-1] || st.LastReadyEpoch != final.Epoch {
					t.Errorf("last checkpoint %+v (status last ready %d), want a ready then-stop checkpoint above epoch %d", final, st.LastReadyEpoch, before[len(before)-1])
				}
			}
			s.waitGone(id, 1)
		})
	}

	for _, c := range []struct {
		name   string
		change func(*job.Config)
		// final: the new run restores from a checkpoint taken for the
		// change.
		final bool
	}{
		{"restart safe", func(c *job.Config) { c.RestartNonce, c.RestartMode = "1", job.RestartSafe }, true},
		{"restart force", func(c *job.Config) { c.RestartNonce, c.RestartMode = "1", job.RestartForce }, false},
		{"rescale", func(c *job.Config) { c.Parallelism = map[string]int{"source": 2} }, true},
	} {
		t.Run(c.name+" completes", func(t *testing.T) {
			t.Parallel()
			s := s.on(t)
			id := job.ID(strings.ReplaceAll(c.name, " ", "-"))
			s.createJob(id, jobOptions{})
			s.waitState(id, job.Running, 30*time.Second)
			s.waitReadyEpochs(id, 1, 0, 1, 30*time.Second)
			old := s.workerPIDs(id)[1]
			before := s.readyEpochs(id, 1)
			readyBefore := before[len(before)-1]
			s.update(id, c.change)
			var st job.Status
			waitFor(t, 30*time.Second, "run 2 running", func() (bool, string) {
				st = s.status(id)
				return st.RunID == 2 && st.State == job.Running, fmt.Sprintf("%+v", st)
			})
			if st.Restarts != 0 {
				t.Errorf("status %+v: an operator's change counted as a restart", st)
			}
			cmd := s.commands(id)
			if cmd.RunID != 2 || cmd.Start == nil {
				t.Fatalf("command record %+v, want run 2's start", cmd)
			}
			ready := s.readyEpochs(id, 1)
			if c.final {
				final := ready[len(ready)-1]
				if final <= readyBefore || cmd.Start.RestoreEpoch != final {
					t.Errorf("run 2 restores epoch %d; want the final checkpoint of run 1, above %d (ready epochs of run 1: %v)", cmd.Start.RestoreEpoch, readyBefore, ready)
				}
				for _, cp := range s.checkpoints(id) {
					if cp.Epoch == final && !cp.ThenStop {
						t.Errorf("run 1's last checkpoint %+v is not a then-stop checkpoint", cp)
					}
				}
			} else if !slices.Contains(ready, cmd.Start.RestoreEpoch) {
				t.Errorf("run 2 restores epoch %d, not a ready epoch of run 1 %v", cmd.Start.RestoreEpoch, ready)
			}
			if c.name == "rescale" {
				sources := 0
				for _, a := range cmd.Start.Assignments {
					if a.OperatorID == "source" {
						sources++
					}
				}
				if sources != 2 || st.Parallelism["source"] != 2 {
					t.Errorf("run 2 assigns %d source subtasks (status parallelism %v), want 2", sources, st.Parallelism)
				}
			}
			for w, pid := range old {
				if alive(pid) {
					t.Errorf("worker %s of run 1 (pid %d) still runs in run 2", w, pid)
				}
			}
			s.waitReadyEpochs(id, 2, cmd.Start.RestoreEpoch, 1, 30*time.Second)
		})
	}
}

// workerLog returns the log lines of the job's workers of one run that
// carry msg, decoded.
func (s *stack) workerLog(id job.ID, run int64, msg string) []map[string]any {
	s.t.Helper()
	paths, _ := filepath.Glob(filepath.Join(s.stateDir, string(id), fmt.Sprintf("run-%d.*.log", run)))
	var out []map[string]any
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if l := decodeLine(line); l != nil && l["msg"] == msg {
				out = append(out, l)
			}
		}
	}
	return out
}

// waitGone waits until no worker of the job's run is alive.
func (s *stack) waitGone(id job.ID, run int64) {
	s.t.Helper()
	waitFor(s.t, 20*time.Second, fmt.Sprintf("the workers of job %s run %d are gone", id, run), func() (bool, string) {
		for w, pid := range s.workerPIDs(id)[run] {
			if alive(pid) {
				return false, fmt.Sprintf("worker %s (pid %d) alive", w, pid)
			}
		}
		return true, ""
	})
}

// logTime is the time of a decoded log line.
func logTime(t *testing.T, l map[string]any) time.Time {
	t.Helper()
	v, _ := l["time"].(string)
	tm, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		t.Fatalf("log line %v: time: %v", l, err)
	}
	return tm
}
