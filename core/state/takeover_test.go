package state

import (
	"testing"

	"github.com/weirstream/weir/core/job"
)

// A leader that dies between writing Scheduling and writing the run's
// start command leaves the job in Scheduling with no command record (only
// the fence its claim left). The next leader cannot adopt that run: it
// must start a new one, not fail the take-over. (The take-over's error
// wrapped the store's ErrNotFound, which the job loop reads as a deleted
// job: every later leader dropped the job at once and it stayed in
// Scheduling for good.)
func TestTakeoverOfSchedulingJobWithoutCommandRecord(t *testing.T) {
	h := newHarness(t, testConfig())
	if err := h.store.Claim(h.ctx, 1, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.PutStatus(h.ctx, 1, job.Status{JobID: "orders", State: job.Scheduling, RunID: 1}); err != nil {
		t.Fatal(err)
	}
	h.takeOver()
	h.want(job.Scheduling)
	c := h.commands()
	if c.Start == nil || c.RunID != h.m.Status().RunID {
		t.Fatalf("command record after the take-over: %+v, want the start of run %d", c, h.m.Status().RunID)
	}
	if n := len(h.fleet.starts); n != 1 {
		t.Fatalf("launches = %d, want 1: the new leader starts the run its predecessor never started", n)
	}
	h.bringUp()
}

// A stop in progress is not undone, but a stop cleared while the job was
// stopping must still be acted on once it is Stopped: the status already
// records that config version as seen, so nothing else would schedule the
// job again, and it would rest (parked) while its config asks it to run.
func TestStopClearedWhileStoppingRunsTheJobAgain(t *testing.T) {
	for _, mode := range []job.StopMode{job.StopImmediate, job.StopCheckpoint} {
		t.Run(string(mode), func(t *testing.T) {
			h := newHarness(t, testConfig())
			h.start()
			h.bringUp()
			h.update(func(c *job.Config) { c.Stop = mode })
			if s := h.m.State(); s != job.Stopping && s != job.CheckpointStopping {
				t.Fatalf("state %s after the stop, want a stopping state", s)
			}
			h.update(func(c *job.Config) { c.Stop = job.StopNone })
			answered := int64(0)
			for range 50 {
				if s := h.m.State(); s == job.Scheduling || s == job.Stopped {
					break
				}
				if c := h.commands(); c.Checkpoint != nil && c.Checkpoint.ThenStop && c.Checkpoint.Epoch > answered {
					answered = h.answerCheckpoint()
				}
				h.finishAll()
				h.advance(h.deps.Settings.ProgressInterval)
			}
			h.want(job.Scheduling)
			if run := h.m.Status().RunID; run != 2 {
				t.Fatalf("run %d, want a new run (2)", run)
			}
		})
	}
}
