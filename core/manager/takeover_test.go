package manager

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// countingStore counts the store calls by method and can act between a
// bulk read and the claim that follows it.
type countingStore struct {
	store.Store
	mu       sync.Mutex
	calls    map[string]int
	onRead   func() // once, after the first ReadJobs
	readErr  error  // returned by every ReadJobs
	claimErr error  // returned for every job by ClaimJobs
}

func (c *countingStore) count(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[name]++
}

func (c *countingStore) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.calls)
}

func (c *countingStore) ReadJobs(ctx context.Context, ids []job.ID) ([]store.JobState, error) {
	c.count("ReadJobs")
	if c.readErr != nil {
		return nil, c.readErr
	}
	js, err := c.Store.ReadJobs(ctx, ids)
	c.mu.Lock()
	hook := c.onRead
	c.onRead = nil
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
	return js, err
}

func (c *countingStore) ClaimJobs(ctx context.Context, f store.Fence, jobs []store.JobState) []error {
	c.count("ClaimJobs")
	if c.claimErr != nil {
		errs := make([]error, len(jobs))
		for i := range errs {
			errs[i] = c.claimErr
		}
		return errs
	}
	return c.Store.ClaimJobs(ctx, f, jobs)
}

func (c *countingStore) Claim(ctx context.Context, f store.Fence, id job.ID) error {
	c.count("Claim")
	return c.Store.Claim(ctx, f, id)
}

func (c *countingStore) GetConfig(ctx context.Context, id job.ID) (job.Config, error) {
	c.count("GetConfig")
	return c.Store.GetConfig(ctx, id)
}

func (c *countingStore) GetStatus(ctx context.Context, id job.ID) (job.Status, error) {
	c.count("GetStatus")
	return c.Store.GetStatus(ctx, id)
}

func (c *countingStore) PutStatus(ctx context.Context, f store.Fence, st job.Status) (job.Status, error) {
	c.count("PutStatus")
	return c.Store.PutStatus(ctx, f, st)
}

func (c *countingStore) GetCommands(ctx context.Context, id job.ID) (job.Commands, error) {
	c.count("GetCommands")
	return c.Store.GetCommands(ctx, id)
}

func (c *countingStore) PutCommands(ctx context.Context, f store.Fence, cmds job.Commands) (job.Commands, error) {
	c.count("PutCommands")
	return c.Store.PutCommands(ctx, f, cmds)
}

func (c *countingStore) ListCheckpoints(ctx context.Context, id job.ID) ([]job.Checkpoint, error) {
	c.count("ListCheckpoints")
	return c.Store.ListCheckpoints(ctx, id)
}

func (c *countingStore) MaxEpoch(ctx context.Context, id job.ID) (int64, error) {
	c.count("MaxEpoch")
	return c.Store.MaxEpoch(ctx, id)
}

// runningJobs stores n jobs as a leader under fence 1 left them: running
// run 1 with its workers started, with a ready checkpoint.
func (w *world) runningJobs(n int) []job.ID {
	w.t.Helper()
	ids := make([]job.ID, n)
	now := w.clk.Now()
	for i := range ids {
		id := job.ID(fmt.Sprintf("j-%04d", i))
		ids[i] = id
		cfg := w.putJob(id, nil)
		if err := w.store.Claim(w.ctx, 1, id); err != nil {
			w.t.Fatal(err)
		}
		if _, err := w.store.PutStatus(w.ctx, 1, job.Status{JobID: id, State: job.Running, RunID: 1, StartedAt: now,
			RunStartedAt: now, TransitionedAt: now, ConfigVersion: cfg.Version,
			Parallelism: map[string]int{"src": 2, "sink": 2}, LastReadyEpoch: 1, MinEpoch: 1}); err != nil {
			w.t.Fatal(err)
		}
		if _, err := w.store.PutCommands(w.ctx, 1, job.Commands{JobID: id, RunID: 1, Start: &job.StartCommand{
			Program: "demo", RestoreEpoch: 0, Assignments: []job.TaskAssignment{
				{WorkerID: "w0", OperatorID: "src", Subtask: 0}, {WorkerID: "w0", OperatorID: "src", Subtask: 1},
				{WorkerID: "w1", OperatorID: "sink", Subtask: 0}, {WorkerID: "w1", OperatorID: "sink", Subtask: 1},
			}}}); err != nil {
			w.t.Fatal(err)
		}
		if err := w.store.CreateCheckpoint(w.ctx, 1, job.Checkpoint{JobID: id, Epoch: 1, RunID: 1,
			State: job.CheckpointReady, StartedAt: now, FinishedAt: now}); err != nil {
			w.t.Fatal(err)
		}
	}
	return ids
}

// takenOver counts the jobs the manager took over.
type takenOver struct {
	mu  sync.Mutex
	ids map[job.ID]int
}

func (t *takenOver) add(id job.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ids[id]++
}

func (t *takenOver) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ids)
}

// A new leader reads and claims its jobs in bulk: N jobs take a few calls
// per hundred, none of the per-job reads or writes, and no worker is
// restarted. A deposed leader can write none of them afterwards.
func TestTakeoverReadsAndClaimsInBulk(t *testing.T) {
	w := newWorld(t)
	const n = 250
	ids := w.runningJobs(n)
	cs := &countingStore{Store: w.store, calls: map[string]int{}}
	w.deps.Store = cs
	done := &takenOver{ids: map[job.ID]int{}}
	w.deps.OnTakenOver = done.add
	w.run(2)
	w.until("every job taken over", func() bool { return done.count() == n })

	calls := cs.snapshot()
	batches := (n + store.MaxTakeoverBatch - 1) / store.MaxTakeoverBatch
	if calls["ReadJobs"] > batches || calls["ClaimJobs"] > batches {
		t.Errorf("%d jobs took %d bulk reads and %d bulk claims, want at most %d each", n, calls["ReadJobs"], calls["ClaimJobs"], batches)
	}
	for _, op := range []string{"Claim", "GetConfig", "GetStatus", "GetCommands", "ListCheckpoints", "MaxEpoch", "PutStatus", "PutCommands"} {
		if calls[op] != 0 {
			t.Errorf("take-over of %d jobs made %d %s calls, want none: everything is read and claimed in bulk", n, calls[op], op)
		}
	}
	if starts := w.fleet.Starts(); len(starts) != 0 {
		t.Fatalf("take-over started %d workers, want none", len(starts))
	}
	for _, id := range []job.ID{ids[0], ids[n/2], ids[n-1]} {
		st := w.status(id)
		if st.State != job.Running || st.RunID != 1 {
			t.Fatalf("job %s is %s run %d after take-over, want Running run 1", id, st.State, st.RunID)
		}
		if _, err := w.store.PutStatus(w.ctx, 1, st); err == nil {
			t.Fatalf("the deposed leader wrote job %s's status after a bulk take-over", id)
		}
		if _, err := w.store.PutCommands(w.ctx, 1, job.Commands{JobID: id, RunID: 1}); err == nil {
			t.Fatalf("the deposed leader wrote job %s's command record after a bulk take-over", id)
		}
	}
}

// A job its former leader changes between the bulk read and the claim is
// not acted on as read: its loop claims and reads it afresh and carries on
// from the state the former leader left (here: it had failed the job and
// stopped its run). The other jobs of the batch are taken over in bulk.
func TestTakeoverRereadsAJobChangedAfterTheBulkRead(t *testing.T) {
	w := newWorld(t)
	ids := w.runningJobs(5)
	changed := ids[2]
	cs := &countingStore{Store: w.store, calls: map[string]int{}}
	cs.onRead = func() {
		st := w.status(changed)
		st.State = job.Failed
		st.Failure = &job.Failure{Message: "failed by the former leader", Domain: job.DomainUser}
		st.TransitionedAt = w.clk.Now()
		if _, err := w.store.PutStatus(w.ctx, 1, st); err != nil {
			t.Error(err)
		}
	}
	w.deps.Store = cs
	done := &takenOver{ids: map[job.ID]int{}}
	w.deps.OnTakenOver = done.add
	w.run(2)
	w.until("every job taken over", func() bool { return done.count() == len(ids) })

	calls := cs.snapshot()
	if calls["Claim"] != 1 || calls["GetStatus"] != 1 {
		t.Fatalf("%d claims and %d status reads one at a time, want 1 each (the changed job)", calls["Claim"], calls["GetStatus"])
	}
	w.until("the changed job parked", func() bool {
		refs, err := w.store.ActiveJobs(w.ctx)
		for _, r := range refs {
			if r.ID == changed {
				return false
			}
		}
		return err == nil
	})
	st := w.status(changed)
	if st.State != job.Failed || st.Failure == nil || st.Failure.Message != "failed by the former leader" {
		t.Fatalf("changed job is %s (%v), want Failed as its former leader left it", st.State, st.Failure)
	}
	if len(w.fleet.Starts()) != 0 {
		t.Fatalf("take-over started %d workers, want none", len(w.fleet.Starts()))
	}
	if _, err := w.store.PutStatus(w.ctx, 1, st); err == nil {
		t.Fatal("the deposed leader wrote the changed job's status after it was claimed on its own")
	}
	for _, id := range ids {
		if id != changed && w.status(id).State != job.Running {
			t.Fatalf("job %s is %s, want Running", id, w.status(id).State)
		}
	}
}

// A bulk read or claim that fails (throttled, unreachable) holds no job
// up: each job's loop claims and reads it on its own, and adopts it.
func TestTakeoverFallsBackToEachJobWhenTheBulkCallsFail(t *testing.T) {
	for name, fail := range map[string]func(*countingStore){
		"read":  func(c *countingStore) { c.readErr = errors.New("throttled") },
		"claim": func(c *countingStore) { c.claimErr = errors.New("connection reset") },
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			ids := w.runningJobs(3)
			cs := &countingStore{Store: w.store, calls: map[string]int{}}
			fail(cs)
			w.deps.Store = cs
			done := &takenOver{ids: map[job.ID]int{}}
			w.deps.OnTakenOver = done.add
			w.run(2)
			w.until("every job taken over", func() bool { return done.count() == len(ids) })
			if calls := cs.snapshot(); calls["Claim"] != len(ids) || calls["GetStatus"] != len(ids) {
				t.Fatalf("%d claims and %d status reads one at a time, want %d each", calls["Claim"], calls["GetStatus"], len(ids))
			}
			for _, id := range ids {
				if st := w.status(id); st.State != job.Running || st.RunID != 1 {
					t.Fatalf("job %s is %s run %d, want Running run 1", id, st.State, st.RunID)
				}
			}
			if len(w.fleet.Starts()) != 0 {
				t.Fatalf("take-over started %d workers, want none", len(w.fleet.Starts()))
			}
		})
	}
}
