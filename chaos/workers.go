package chaos

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/sqs"
)

// poisonPrefix starts every malformed body the campaign sends on purpose,
// so the checker can tell them from real envelopes in the dead-letter
// queue.
const poisonPrefix = `{"chaos_poison":`

func isPoison(body string) bool { return strings.HasPrefix(body, poisonPrefix) }

// workerTiming is how simulated workers pace themselves.
type workerTiming struct {
	Poll      time.Duration // command record reads
	Heartbeat time.Duration // one envelope per worker at least this often
	// FinishedFor is how long a worker that finished its tasks keeps
	// reporting it before it exits.
	FinishedFor time.Duration
}

// workers plays every job's workers: each reads its job's command record
// (eventually consistent, as real workers do) and reports its whole state
// through SQS every heartbeat, and at once when something changed. They
// use clients without injected faults: the campaign tests the controller.
type workers struct {
	store  *dynamo.Store
	pub    *sqs.Publisher
	timing workerTiming

	mu   sync.Mutex
	rng  *rand.Rand
	jobs map[job.ID]*jobWorkers

	sent, poison atomic.Int64
	faults       counter
	// stopped ends every worker of every run, present and future: the
	// campaign is draining the queue.
	stopped atomic.Bool
}

// jobWorkers is the simulated workers of one job's current run.
type jobWorkers struct {
	run int64
	// builders keep each worker's whole state and cut it into protocol v2
	// envelopes, as the worker SDK does.
	builders map[string]*protocol.Builder
	crashed  map[string]bool
	silent   map[string]time.Time
	fail     map[string]bool // worker → fail a task at its next report
	failed   map[string]bool // worker → a task failed (for the rest of the run)
	finished map[string]time.Time
	// epochSeen is when a checkpoint command was first read: workers
	// complete it after a random delay, so checkpoints are in flight
	// while faults strike.
	epochSeen  map[int64]time.Time
	epochDelay map[int64]time.Duration
	// staleFrom is the previous run, for the occasional stale envelope.
	staleFrom int64
}

func newJobWorkers(run, prev int64) *jobWorkers {
	return &jobWorkers{
		run: run, staleFrom: prev,
		builders: map[string]*protocol.Builder{},
		crashed:  map[string]bool{}, silent: map[string]time.Time{}, fail: map[string]bool{}, failed: map[string]bool{},
		finished: map[string]time.Time{}, epochSeen: map[int64]time.Time{}, epochDelay: map[int64]time.Duration{},
	}
}

func newWorkers(st *dynamo.Store, pub *sqs.Publisher, seed uint64, timing workerTiming) *workers {
	return &workers{
		store: st, pub: pub, timing: timing,
		rng:  rand.New(rand.NewPCG(seed, 0x3017)),
		jobs: map[job.ID]*jobWorkers{},
	}
}

// run plays job id's workers until ctx ends.
func (w *workers) run(ctx context.Context, id job.ID) {
	t := time.NewTicker(w.timing.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if w.stopped.Load() {
			return
		}
		cmds, err := w.store.GetCommands(ctx, id)
		if err != nil || cmds.Start == nil {
			continue
		}
		bodies := w.envelopes(id, cmds, time.Now())
		if len(bodies) == 0 {
			continue
		}
		for chunk := range slices.Chunk(bodies, 10) {
			if err := w.pub.PublishBatch(ctx, chunk); err == nil {
				w.sent.Add(int64(len(chunk)))
			}
		}
	}
}

// envelopes decides what each worker of the run sends now: each records
// its whole state in its Builder, which says when the next envelope is
// due (a heartbeat after the last, or at once after a change the
// controller waits on).
func (w *workers) envelopes(id job.ID, cmds job.Commands, now time.Time) [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped.Load() {
		return nil
	}
	jw := w.jobs[id]
	if jw == nil || jw.run != cmds.RunID {
		// A command record read a moment old (eventually consistent)
		// names the previous run: its workers are gone.
		if jw != nil && cmds.RunID < jw.run {
			return nil
		}
		prev := int64(0)
		if jw != nil {
			prev = jw.run
		}
		jw = newJobWorkers(cmds.RunID, prev)
		w.jobs[id] = jw
	}
	by := map[string][]job.TaskAssignment{}
	for _, a := range cmds.Start.Assignments {
		by[a.WorkerID] = append(by[a.WorkerID], a)
	}
	var bodies [][]byte
	for _, wid := range slices.Sorted(maps.Keys(by)) {
		if jw.crashed[wid] {
			continue
		}
		if at, ok := jw.finished[wid]; ok && now.Sub(at) > w.timing.FinishedFor {
			continue // exited after finishing its tasks
		}
		b := jw.builders[wid]
		if b == nil {
			var err error
			if b, err = protocol.NewBuilder(id, cmds.RunID, wid, len(by[wid]), protocol.BuilderOptions{Heartbeat: w.timing.Heartbeat}); err != nil {
				continue
			}
			jw.builders[wid] = b
		}
		tasks, finished := w.state(jw, cmds, by[wid], wid, now)
		for _, t := range tasks {
			_ = b.SetTask(now, ahead(b, t))
		}
		if finished {
			if _, ok := jw.finished[wid]; !ok {
				jw.finished[wid] = now
			}
		}
		if now.Before(jw.silent[wid]) || now.Before(b.Due()) {
			continue
		}
		out, err := b.Flush(now)
		if err == nil {
			bodies = append(bodies, out...)
		}
	}
	// Now and then a worker of the previous run, not yet gone, reports:
	// the controller must judge it stale and change nothing.
	if jw.staleFrom > 0 && w.rng.Float64() < 0.02 {
		b, err := protocol.NewBuilder(id, jw.staleFrom, "w-0", 1, protocol.BuilderOptions{})
		if err == nil {
			_ = b.SetTask(now, protocol.Task{Operator: sourceOperator, Subtask: 0, State: protocol.Running})
			if out, err := b.Flush(now); err == nil {
				bodies = append(bodies, out...)
				w.faults.add("stale_envelope", 1)
			}
		}
	}
	return bodies
}

// ahead keeps what a subtask already reported when t would take it back
// (the next checkpoint not yet done, a command record read a moment old):
// its newest checkpoint and commit, and a final state.
func ahead(b *protocol.Builder, t protocol.Task) protocol.Task {
	prev, ok := b.Task(t.Operator, t.Subtask)
	if !ok {
		return t
	}
	if prev.Checkpointed > t.Checkpointed {
		t.Checkpointed, t.CheckpointBytes, t.CheckpointMetadata = prev.Checkpointed, prev.CheckpointBytes, prev.CheckpointMetadata
	}
	t.Committed = max(t.Committed, prev.Committed)
	if prev.State == protocol.Finished || prev.State == protocol.Failed {
		t.State, t.Error, t.Domain, t.Retry = prev.State, prev.Error, prev.Domain, prev.Retry
	}
	return t
}

// state is the whole state a worker's subtasks are in now, as protocol v2
// tasks. finished says the worker has finished every task.
func (w *workers) state(jw *jobWorkers, cmds job.Commands, tasks []job.TaskAssignment, wid string, now time.Time) ([]protocol.Task, bool) {
	out := make([]protocol.Task, len(tasks))
	for i, a := range tasks {
		out[i] = protocol.Task{Operator: a.OperatorID, Subtask: a.Subtask, State: protocol.Running}
	}
	if jw.fail[wid] {
		delete(jw.fail, wid)
		jw.failed[wid] = true
	}
	if jw.failed[wid] {
		// A failed subtask stays failed for the rest of the run; the
		// controller restarts the run.
		out[0].State, out[0].Error, out[0].Domain, out[0].Retry = protocol.Failed, "injected task failure", job.DomainInternal, protocol.RetryBackoff
		return out, false
	}
	done := false
	if c := cmds.Checkpoint; c != nil {
		seen, ok := jw.epochSeen[c.Epoch]
		if !ok {
			seen = now
			jw.epochSeen[c.Epoch] = now
			jw.epochDelay[c.Epoch] = time.Duration(w.rng.Int64N(int64(600 * time.Millisecond)))
		}
		if now.Sub(seen) >= jw.epochDelay[c.Epoch] {
			done = true
			for i, a := range tasks {
				out[i].Checkpointed, out[i].CheckpointBytes = c.Epoch, 100
				out[i].CheckpointMetadata = fmt.Sprintf("s3://state/%s/%d/%d", cmds.JobID, c.Epoch, a.Subtask)
			}
		}
	}
	committed := false
	if c := cmds.Commit; c != nil {
		committed = cmds.Checkpoint == nil || c.Epoch == cmds.Checkpoint.Epoch
		for i, a := range tasks {
			if a.OperatorID == sinkOperator {
				out[i].Committed = c.Epoch
			}
		}
	}
	thenStop := done && cmds.Checkpoint.ThenStop
	finished := 0
	for i, a := range tasks {
		// After a then-stop checkpoint tasks finish, committing sinks once
		// they committed it; a stop command finishes every task.
		if cmds.Stop != nil || (thenStop && (a.OperatorID != sinkOperator || committed)) {
			out[i].State = protocol.Finished
			finished++
		}
	}
	return out, finished == len(tasks)
}

// stop ends every worker; an envelope being built when it is called is
// the last one sent.
func (w *workers) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped.Store(true)
}

// workerOf picks one worker of the job's current run, or "".
func (w *workers) workerOf(jw *jobWorkers) string {
	var ids []string
	for wid := range jw.builders {
		if !jw.crashed[wid] {
			ids = append(ids, wid)
		}
	}
	if len(ids) == 0 {
		return ""
	}
	slices.Sort(ids)
	return ids[w.rng.IntN(len(ids))]
}

// crash makes one worker of the job's current run stop for good: the
// controller must notice within its heartbeat time-out and recover.
func (w *workers) crash(id job.ID) bool {
	return w.strike(id, "worker_crash", func(jw *jobWorkers, wid string) { jw.crashed[wid] = true })
}

// silence keeps one worker quiet for d.
func (w *workers) silence(id job.ID, d time.Duration) bool {
	return w.strike(id, "worker_silence", func(jw *jobWorkers, wid string) { jw.silent[wid] = time.Now().Add(d) })
}

// failTask makes one worker report a retryable task failure.
func (w *workers) failTask(id job.ID) bool {
	return w.strike(id, "task_failure", func(jw *jobWorkers, wid string) { jw.fail[wid] = true })
}

// strike applies a fault to one worker of the job's current run and counts
// it as kind; false if the job has no worker to strike.
func (w *workers) strike(id job.ID, kind string, apply func(jw *jobWorkers, wid string)) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	jw := w.jobs[id]
	if jw == nil {
		return false
	}
	wid := w.workerOf(jw)
	if wid == "" {
		return false
	}
	apply(jw, wid)
	w.faults.add(kind, 1)
	return true
}

// sendPoison sends a body no decoder accepts: it must end in the
// dead-letter queue and stop nothing.
func (w *workers) sendPoison(ctx context.Context, n int) {
	body := fmt.Appendf(nil, `%s%d,"v":"one"}`, poisonPrefix, n)
	if err := w.pub.PublishBatch(ctx, [][]byte{body}); err == nil {
		w.sent.Add(1)
		w.poison.Add(1)
		w.faults.add("malformed_envelope", 1)
	}
}

// counter counts faults by kind; safe for concurrent use.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(kind string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[kind] += n
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}
