package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// The simulated job: 10 workers, 4 operators of 20 subtasks, 8 subtasks a
// worker, so a routine heartbeat carries 8 tasks (about 1.6 KB).
const (
	workersPerJob  = 10
	operators      = 4
	parallelism    = 20
	subtasksPerJob = operators * parallelism
	slotsPerWorker = subtasksPerJob / workersPerJob
	// wheelStep is the timing wheel's resolution.
	wheelStep = 10 * time.Millisecond
)

func opID(o int) string { return "op-" + strconv.Itoa(o) }

// spec is the benchmark job's pipeline.
func spec() job.Spec {
	ops := make([]job.Operator, operators)
	for o := range ops {
		ops[o] = job.Operator{ID: opID(o), Parallelism: parallelism, Source: o == 0}
	}
	return job.Spec{Operators: ops, SlotsPerWorker: slotsPerWorker, Program: "bench"}
}

// assignments places subtask k of operator o on worker (o*parallelism+k)/slots.
func assignments() []job.TaskAssignment {
	as := make([]job.TaskAssignment, 0, subtasksPerJob)
	for o := range operators {
		for k := range parallelism {
			as = append(as, job.TaskAssignment{WorkerID: workerID((o*parallelism + k) / slotsPerWorker), OperatorID: opID(o), Subtask: k})
		}
	}
	return as
}

func workerID(i int) string { return "w-" + strconv.Itoa(i) }

// Sender puts one message body on the worker queue.
type Sender interface{ Send(body []byte) string }

// SimStats counts what the simulated workers sent.
type SimStats struct {
	Heartbeats, Urgent, CommandReads atomic.Int64
}

// Sim plays every worker of every job from a few goroutines. Each worker
// sends a heartbeat every interval from a fixed phase (a static timing
// wheel: no timer per worker), carrying its whole state (protocol v2);
// news (a new run, tasks started, a checkpoint completed, an injected
// failure) leaves at the next wheel step.
// Each job's command record is read once per readEvery, spread evenly, and
// a checkpoint it asks for is answered by every worker at once.
type Sim struct {
	store     store.Store
	out       Sender
	interval  time.Duration
	readEvery time.Duration
	shards    []*shard
	stats     SimStats
	// failed records when an injected failure was sent, by job.
	failed sync.Map // job.ID -> time.Time
}

type shard struct {
	sim   *Sim
	jobs  []*simJob
	wheel [][]workerRef // by wheel slot
	mu    sync.Mutex
	// starts and fails are requests from other goroutines, applied at the
	// next step.
	starts []fleet.Request
	fails  []int
	byID   map[job.ID]int
	buf    []byte
	// urgent lists the workers with news waiting.
	urgent []workerRef
}

type workerRef struct{ job, worker int32 }

type simJob struct {
	id      job.ID
	run     int64
	epoch   int64 // newest checkpoint completed
	started bool  // tasks of the current run started
	failed  bool  // worker 0's first task has failed
	workers [workersPerJob]simWorker
}

type simWorker struct {
	seq    uint64
	head   []byte   // {"v":2,"job":…,"run":…,"worker":…,"seq":
	tasks  [][]byte // each task's fields up to its checkpoint, unclosed
	urgent bool     // send at the next step, not at the next heartbeat
}

// NewSim prepares workers for jobs, all in run 1 with their tasks
// running, spread over shards goroutines.
func NewSim(st store.Store, out Sender, ids []job.ID, interval, readEvery time.Duration, shards int, seed uint64) *Sim {
	s := &Sim{store: st, out: out, interval: interval, readEvery: readEvery}
	rng := rand.New(rand.NewPCG(seed, 1))
	slots := max(1, int(interval/wheelStep))
	for range shards {
		s.shards = append(s.shards, &shard{sim: s, wheel: make([][]workerRef, slots), byID: map[job.ID]int{}})
	}
	for i, id := range ids {
		sh := s.shards[i%shards]
		j := &simJob{id: id, run: 1, started: true}
		for w := range j.workers {
			j.workers[w].render(id, 1, w)
			slot := rng.IntN(slots)
			sh.wheel[slot] = append(sh.wheel[slot], workerRef{int32(len(sh.jobs)), int32(w)})
		}
		sh.byID[id] = len(sh.jobs)
		sh.jobs = append(sh.jobs, j)
	}
	return s
}

// render prepares the pieces of a worker's envelopes for a run (protocol
// v2: every envelope carries the worker's whole state).
func (w *simWorker) render(id job.ID, run int64, wi int) {
	w.head = fmt.Appendf(w.head[:0], `{"v":2,"job":%q,"run":%d,"worker":%q,"seq":`, id, run, workerID(wi))
	w.tasks = w.tasks[:0]
	for _, a := range workerTasks(wi) {
		w.tasks = append(w.tasks, fmt.Appendf(nil, `{"op":%q,"subtask":%d,"state":"running","records_in":18234567,"records_out":18230001,"bytes_in":2345678901,"bytes_out":2001234567,"backpressure":0.125,"watermark_ms":1772366405123`, a.OperatorID, a.Subtask))
	}
	w.urgent = false
	w.seq = 0
}

var tasksOf = func() [workersPerJob][]job.TaskAssignment {
	var by [workersPerJob][]job.TaskAssignment
	for _, a := range assignments() {
		i, _ := strconv.Atoi(a.WorkerID[2:])
		by[i] = append(by[i], a)
	}
	return by
}()

func workerTasks(w int) []job.TaskAssignment { return tasksOf[w] }

// Stats is what the workers have sent so far.
func (s *Sim) Stats() *SimStats { return &s.stats }

// OnStart is the fleet's start hook: the run's workers come up and
// register.
func (s *Sim) OnStart(req fleet.Request) {
	for _, sh := range s.shards {
		sh.mu.Lock()
		if _, ok := sh.byID[req.JobID]; ok {
			sh.starts = append(sh.starts, req)
		}
		sh.mu.Unlock()
	}
}

// Fail makes worker 0 of the job report a failed task at the next step and
// returns false if the job is not simulated.
func (s *Sim) Fail(id job.ID) bool {
	for _, sh := range s.shards {
		sh.mu.Lock()
		i, ok := sh.byID[id]
		if ok {
			sh.fails = append(sh.fails, i)
		}
		sh.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// FailedAt returns when the injected failure of a job was sent, and
// forgets it.
func (s *Sim) FailedAt(id job.ID) (time.Time, bool) {
	v, ok := s.failed.LoadAndDelete(id)
	if !ok {
		return time.Time{}, false
	}
	return v.(time.Time), true
}

// Run drives the workers until ctx ends.
func (s *Sim) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, sh := range s.shards {
		wg.Go(func() { sh.run(ctx) })
	}
	wg.Wait()
}

func (sh *shard) run(ctx context.Context) {
	t := time.NewTicker(wheelStep)
	defer t.Stop()
	slots := len(sh.wheel)
	readSteps := max(1, int(sh.sim.readEvery/wheelStep))
	start := time.Now()
	for step := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sh.applyRequests()
		// Every step due is run, so a shard that was held up (a ticker
		// drops ticks) catches up rather than skipping workers.
		now := time.Now()
		for ; !start.Add(time.Duration(step) * wheelStep).After(now); step++ {
			// Read the command records of this step's share of the jobs.
			for j := step % readSteps; j < len(sh.jobs); j += readSteps {
				sh.readCommands(ctx, j)
			}
			for _, r := range sh.wheel[step%slots] {
				sh.send(now, r.job, r.worker)
			}
		}
		// Urgent news leaves now, not at the worker's next heartbeat.
		for _, r := range sh.urgent {
			if sh.jobs[r.job].workers[r.worker].urgent {
				sh.send(now, r.job, r.worker)
			}
		}
		sh.urgent = sh.urgent[:0]
	}
}

func (sh *shard) applyRequests() {
	sh.mu.Lock()
	starts, fails := sh.starts, sh.fails
	sh.starts, sh.fails = nil, nil
	sh.mu.Unlock()
	for _, req := range starts {
		ji := sh.byID[req.JobID]
		j := sh.jobs[ji]
		if req.RunID <= j.run {
			continue
		}
		// The new run's workers come up: their first envelope offers their
		// slots (registration) and names no task until the start command.
		j.run, j.started, j.failed, j.epoch = req.RunID, false, false, 0
		for w := range j.workers {
			j.workers[w].render(j.id, j.run, w)
			sh.tell(ji, w)
		}
	}
	for _, i := range fails {
		j := sh.jobs[i]
		if !j.started || j.failed {
			continue
		}
		j.failed = true
		sh.tell(i, 0)
		sh.sim.failed.Store(j.id, time.Now())
	}
}

// tell makes a worker send at the next step.
func (sh *shard) tell(ji, wi int) {
	w := &sh.jobs[ji].workers[wi]
	if !w.urgent {
		w.urgent = true
		sh.urgent = append(sh.urgent, workerRef{int32(ji), int32(wi)})
	}
}

// readCommands answers what the job's command record asks of its workers:
// start the tasks of a new run, complete a checkpoint.
func (sh *shard) readCommands(ctx context.Context, i int) {
	j := sh.jobs[i]
	cmds, err := sh.sim.store.GetCommands(ctx, j.id)
	sh.sim.stats.CommandReads.Add(1)
	if err != nil || cmds.RunID != j.run {
		return
	}
	news := false
	if !j.started && cmds.Start != nil {
		j.started, news = true, true
	}
	if cp := cmds.Checkpoint; cp != nil && j.started && cp.Epoch > j.epoch {
		j.epoch, news = cp.Epoch, true
	}
	if news {
		for w := range j.workers {
			sh.tell(i, w)
		}
	}
}

// send builds one envelope by appending pre-rendered pieces and puts it
// on the queue.
func (sh *shard) send(now time.Time, ji, wi int32) {
	j := sh.jobs[ji]
	w := &j.workers[wi]
	w.seq++
	b := append(sh.buf[:0], w.head...)
	b = strconv.AppendUint(b, w.seq, 10)
	b = append(b, `,"sent_at":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","slots":`...)
	b = strconv.AppendInt(b, slotsPerWorker, 10)
	if j.started {
		b = append(b, `,"tasks":[`...)
		for k, t := range w.tasks {
			if k > 0 {
				b = append(b, ',')
			}
			if j.failed && wi == 0 && k == 0 {
				a := workerTasks(0)[0]
				b = fmt.Appendf(b, `{"op":%q,"subtask":%d,"state":"failed","error":"injected by the benchmark","domain":"external","retry":"backoff"}`, a.OperatorID, a.Subtask)
				continue
			}
			b = append(b, t...)
			if j.epoch > 0 {
				b = append(b, `,"checkpointed":`...)
				b = strconv.AppendInt(b, j.epoch, 10)
				b = append(b, `,"checkpoint_bytes":1048576,"checkpoint_metadata":"s3://bench/`...)
				b = append(b, j.id...)
				b = append(b, '/')
				b = strconv.AppendInt(b, j.epoch, 10)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	if w.urgent {
		w.urgent = false
		sh.sim.stats.Urgent.Add(1)
	} else {
		sh.sim.stats.Heartbeats.Add(1)
	}
	sh.buf = b
	sh.sim.out.Send(append([]byte(nil), b...))
}

// SampleEnvelope is a routine heartbeat as the simulator sends it: eight
// running tasks with their counters (1.6 KB; 2.4 KB once every task
// reports its last checkpoint).
func SampleEnvelope() []byte {
	sh := &shard{sim: &Sim{out: discard{}}}
	j := &simJob{id: "job-000001", run: 3, started: true}
	j.workers[1].render(j.id, j.run, 1)
	j.workers[1].seq = 8811
	sh.jobs = []*simJob{j}
	sh.send(time.Date(2026, 3, 1, 12, 0, 5, 12345678, time.UTC), 0, 1)
	return append([]byte(nil), sh.buf...)
}

type discard struct{}

func (discard) Send([]byte) string { return "" }
