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
	run      int64
	seq      map[string]uint64
	last     map[string]time.Time
	reported map[string]string // worker → what its last envelope said
	crashed  map[string]bool
	silent   map[string]time.Time
	fail     map[string]bool // worker → fail a task in its next envelope
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
		seq: map[string]uint64{}, last: map[string]time.Time{}, reported: map[string]string{},
		crashed: map[string]bool{}, silent: map[string]time.Time{}, fail: map[string]bool{},
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

// envelopes decides what each worker of the run sends now.
func (w *workers) envelopes(id job.ID, cmds job.Commands, now time.Time) [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped.Load() {
		return nil
	}
	jw := w.jobs[id]
	if jw == nil || jw.run != cmds.RunID {
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
		if jw.crashed[wid] || now.Before(jw.silent[wid]) {
			continue
		}
		if at, ok := jw.finished[wid]; ok && now.Sub(at) > w.timing.FinishedFor {
			continue // exited after finishing its tasks
		}
		evs, finished := w.state(jw, cmds, by[wid], wid, now)
		if finished {
			if _, ok := jw.finished[wid]; !ok {
				jw.finished[wid] = now
			}
		}
		said := fmt.Sprint(evs)
		if said == jw.reported[wid] && now.Sub(jw.last[wid]) < w.timing.Heartbeat {
			continue
		}
		jw.reported[wid], jw.last[wid] = said, now
		jw.seq[wid]++
		body, err := protocol.Encode(&protocol.Envelope{
			V: protocol.V1, JobID: id, RunID: cmds.RunID, WorkerID: wid, Seq: jw.seq[wid],
			SentAt: now, Heartbeat: &protocol.Heartbeat{}, Events: evs,
		})
		if err == nil {
			bodies = append(bodies, body)
		}
	}
	// Now and then a worker of the previous run, not yet gone, reports:
	// the controller must judge it stale and change nothing.
	if jw.staleFrom > 0 && w.rng.Float64() < 0.02 {
		body, err := protocol.Encode(&protocol.Envelope{
			V: protocol.V1, JobID: id, RunID: jw.staleFrom, WorkerID: "w-0", Seq: 1 << 20,
			SentAt: now, Heartbeat: &protocol.Heartbeat{},
			Events: []protocol.Event{{Kind: protocol.WorkerRegistered, Slots: 1}},
		})
		if err == nil {
			bodies = append(bodies, body)
			w.faults.add("stale_envelope", 1)
		}
	}
	return bodies
}

// state is the whole state a worker reports, as protocol v1 events (the
// controller still accepts v1; sending every event each time makes each
// envelope a complete report, and the controller applies them
// idempotently). finished says the worker has finished every task.
func (w *workers) state(jw *jobWorkers, cmds job.Commands, tasks []job.TaskAssignment, wid string, now time.Time) ([]protocol.Event, bool) {
	evs := []protocol.Event{{Kind: protocol.WorkerRegistered, Slots: len(tasks)}}
	for _, a := range tasks {
		evs = append(evs, protocol.Event{Kind: protocol.TaskStarted, Operator: a.OperatorID, Subtask: a.Subtask})
	}
	if jw.fail[wid] {
		delete(jw.fail, wid)
		a := tasks[0]
		evs = append(evs, protocol.Event{Kind: protocol.TaskFailed, Operator: a.OperatorID, Subtask: a.Subtask,
			Error: "injected task failure", Domain: job.DomainInternal, Retry: protocol.RetryBackoff})
		return evs, false
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
			for _, a := range tasks {
				evs = append(evs, protocol.Event{Kind: protocol.CheckpointCompleted, Operator: a.OperatorID, Subtask: a.Subtask,
					Epoch: c.Epoch, Bytes: 100, Metadata: fmt.Sprintf("s3://state/%s/%d/%d", cmds.JobID, c.Epoch, a.Subtask)})
			}
		}
	}
	committed := false
	if c := cmds.Commit; c != nil {
		committed = cmds.Checkpoint == nil || c.Epoch == cmds.Checkpoint.Epoch
		for _, a := range tasks {
			if a.OperatorID == sinkOperator {
				evs = append(evs, protocol.Event{Kind: protocol.CommitFinished, Operator: a.OperatorID, Subtask: a.Subtask, Epoch: c.Epoch})
			}
		}
	}
	thenStop := done && cmds.Checkpoint.ThenStop
	finished := 0
	for _, a := range tasks {
		// After a then-stop checkpoint tasks finish, committing sinks once
		// they committed it; a stop command finishes every task.
		if cmds.Stop != nil || (thenStop && (a.OperatorID != sinkOperator || committed)) {
			evs = append(evs, protocol.Event{Kind: protocol.TaskFinished, Operator: a.OperatorID, Subtask: a.Subtask})
			finished++
		}
	}
	return evs, finished == len(tasks)
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
	for wid := range jw.seq {
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
	jw.crashed[wid] = true
	w.faults.add("worker_crash", 1)
	return true
}

// silence keeps one worker quiet for d.
func (w *workers) silence(id job.ID, d time.Duration) bool {
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
	jw.silent[wid] = time.Now().Add(d)
	w.faults.add("worker_silence", 1)
	return true
}

// failTask makes one worker report a retryable task failure.
func (w *workers) failTask(id job.ID) bool {
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
	jw.fail[wid] = true
	w.faults.add("task_failure", 1)
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
