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
