package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/fleet/memfleet"
	"github.com/weirstream/weir/core/inbox"
	"github.com/weirstream/weir/core/inbox/meminbox"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/manager"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/state"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/store/memstore"
)

// loadOptions shape one load run.
type loadOptions struct {
	jobs       int
	latency    time.Duration // per store call
	warmup     time.Duration // after take-over, before measuring
	window     time.Duration // measured
	failRate   float64       // injected task failures per second
	readEvery  time.Duration // each job's command record read by the simulator
	checkpoint time.Duration // the jobs' checkpoint interval
	plain      bool          // a plain consumer instead of the controller (calibration)
	takeover   time.Duration // give up waiting for take-over after this
	linger     time.Duration // receive linger, as the SQS inbox's Linger
	memProfile string        // write a heap profile here at the end of the window
	quiet      time.Duration // measured time with jobs ticking and no messages
	sizes      bool          // bill store requests by item size
	ackLinger  time.Duration // the manager's AckLinger (0: its default)
	// concurrency bounds the store requests in flight (0: no bound);
	// checkpoints is how many each seeded job has; takeoverOnly ends the
	// run once every job is taken over.
	concurrency, checkpoints int
	takeoverOnly             bool
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create the heap profile: %w", err)
	}
	defer f.Close()
	return pprof.WriteHeapProfile(f)
}

// LoadResult is one row of the report.
type LoadResult struct {
	Jobs                   int     `json:"jobs"`
	Controller             bool    `json:"controller"`
	CPUSecondsPerSecond    float64 `json:"cpu_seconds_per_second"`
	SimCPUSecondsPerSecond float64 `json:"sim_cpu_seconds_per_second,omitempty"`
	ControllerCPUPerSecond float64 `json:"controller_cpu_seconds_per_second,omitempty"`
	HeapBytesPerJob        float64 `json:"heap_bytes_per_job"`
	ProcessHeapBytesPerJob float64 `json:"process_heap_growth_bytes_per_job"`
	StackBytesPerJob       float64 `json:"stack_bytes_per_job"`
	MessagesPerSecondIn    float64 `json:"messages_per_second_in"`
	MessagesPerSecondDone  float64 `json:"messages_per_second_handled"`
	Backlog                int     `json:"backlog_at_end"`
	Redelivered            int     `json:"redelivered"`
	TickLateP99Ms          float64 `json:"tick_late_p99_ms"`
	TickLateMaxMs          float64 `json:"tick_late_max_ms"`
	Ticks                  int64   `json:"ticks"`
	ProbeLateP99Ms         float64 `json:"probe_late_p99_ms"`
	ProbeLateMaxMs         float64 `json:"probe_late_max_ms"`
	FailToRecoveringP50Ms  float64 `json:"fail_to_recovering_p50_ms"`
	FailToRecoveringP99Ms  float64 `json:"fail_to_recovering_p99_ms"`
	Failures               int     `json:"failures_measured"`
	TakeoverSeconds        float64 `json:"takeover_seconds"`
	TakeoverRequestsPerJob float64 `json:"takeover_store_requests_per_job"`
	TakeoverCPUSeconds     float64 `json:"takeover_cpu_seconds"`
	WorkersRestarted       int     `json:"workers_restarted_at_takeover"`
	WindowSeconds          float64 `json:"window_seconds"`

	// What the window should have carried, and what the machine was doing:
	// a process that got less CPU than it needed (a shared machine) falls
	// short of the expected rates.
	MessagesPerSecondExpected float64 `json:"messages_per_second_expected"`
	TicksPerSecond            float64 `json:"ticks_per_second"`
	TicksPerSecondExpected    float64 `json:"ticks_per_second_expected"`
	LoadAverage               float64 `json:"machine_load_average_1m"`
	// The controller's CPU per tick (from a window with no messages) and
	// per handled message, and the CPU the full expected load would take.
	CPUMicrosPerTick      float64 `json:"cpu_us_per_tick"`
	QuietTicksPerSecond   float64 `json:"quiet_ticks_per_second"`
	CPUMicrosPerMessage   float64 `json:"cpu_us_per_message"`
	ProjectedCPUPerSecond float64 `json:"projected_controller_cpu_seconds_per_second"`

	// For the cost model: what the window's traffic cost.
	usage loadUsage
}

// loadUsage is what a window counted, for the cost model.
type loadUsage struct {
	seconds      float64
	jobs         int
	checkpoints  int64
	store        map[string]int64
	storeUnits   map[string]float64
	inbox        meminbox.Stats
	heartbeats   int64
	urgent       int64
	commandReads int64
	// commandsBytes is the size of the command record the workers read.
	commandsBytes int64
}

// seed stores n jobs as a previous leader (fence 1) left them: running,
// with their workers started and a command record of run 1.
func seed(ctx context.Context, st store.Store, n int, interval time.Duration) ([]job.ID, error) {
	ids := make([]job.ID, n)
	par := map[string]int{}
	for o := range operators {
		par[opID(o)] = parallelism
	}
	now := time.Now()
	for i := range ids {
		id := job.ID(fmt.Sprintf("job-%06d", i))
		ids[i] = id
		cfg, err := st.PutConfig(ctx, job.Config{JobID: id, Spec: spec(), CheckpointInterval: interval}.WithDefaults())
		if err != nil {
			return nil, fmt.Errorf("seed config of %s: %w", id, err)
		}
		if _, err := st.PutStatus(ctx, 1, job.Status{JobID: id, State: job.Running, RunID: 1, StartedAt: now,
			RunStartedAt: now, TransitionedAt: now, ConfigVersion: cfg.Version, Parallelism: par}); err != nil {
			return nil, fmt.Errorf("seed status of %s: %w", id, err)
		}
		if _, err := st.PutCommands(ctx, 1, job.Commands{JobID: id, RunID: 1,
			Start: &job.StartCommand{Program: "bench", Assignments: assignments()}}); err != nil {
			return nil, fmt.Errorf("seed commands of %s: %w", id, err)
		}
	}
	return ids, nil
}

// cpuSeconds is the process's user and system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// memInUse is the live heap and the goroutine stacks, after a collection.
func memInUse() (heap, stacks uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse
}

// runLoad runs one load scenario and measures it.
func runLoad(parent context.Context, o loadOptions, log *slog.Logger) (LoadResult, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	res := LoadResult{Jobs: o.jobs, Controller: !o.plain}

	mem := memstore.New()
	ids, err := seed(ctx, mem, o.jobs, o.checkpoint)
	if err != nil {
		return res, err
	}
	st := newSlowStore(mem, o.latency)
	st.sizes = o.sizes
	st.limit(o.concurrency)
	if err := st.seedCheckpoints(ctx, ids, o.checkpoints); err != nil {
		return res, err
	}
	in, err := meminbox.New(meminbox.Options{Clock: clock.Real{}})
	if err != nil {
		return res, err
	}
	sim := NewSim(mem, in, ids, protocol.DefaultHeartbeatInterval, o.readEvery, 2, 1)
	fl := memfleet.New()
	fl.OnStart(sim.OnStart)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	baseHeap, baseStacks := memInUse()

	// Adopted: every job's loop has taken its job over (claimed, read,
	// adopted); a take-over writes no status for a job it adopts as is.
	var adopted sync.Map
	var adoptedN atomic.Int64
	takenOver := func(id job.ID) {
		if _, loaded := adopted.LoadOrStore(id, true); !loaded {
			adoptedN.Add(1)
		}
	}
	recov := newHist()
	st.onStatus = func(s job.Status) {
		if s.State == job.Recovering {
			if at, ok := sim.FailedAt(s.JobID); ok {
				recov.add(time.Since(at))
			}
		}
	}
	ticks := newHist()
	var mgrErr atomic.Value
	start, calls0, steady0, cpu0 := time.Now(), st.calls.Load(), st.steady.Load(), cpuSeconds()
	if o.plain {
		for range 2 {
			wg.Go(func() { plainConsumer(ctx, in) })
		}
		adoptedN.Store(int64(o.jobs))
	} else {
		var ib inbox.Inbox = in
		if o.linger > 0 {
			ib = lingerInbox{Inbox: in, linger: o.linger, mu: &sync.Mutex{}}
		}
		m, err := manager.New(manager.Deps{
			Store: st, Inbox: ib, Fleet: fl, Clock: clock.Real{}, Log: log,
			Settings: controller.DefaultSettings(),
			OnTick:   ticks.add, AckLinger: o.ackLinger, OnTakenOver: takenOver,
		})
		if err != nil {
			return res, err
		}
		wg.Go(func() {
			if err := m.Run(ctx, 2); err != nil {
				mgrErr.Store(err)
			}
		})
	}
	for adoptedN.Load() < int64(o.jobs) {
		if time.Since(start) > o.takeover {
			return res, fmt.Errorf("%d jobs: only %d of them adopted after %s", o.jobs, adoptedN.Load(), o.takeover)
		}
		if err, ok := mgrErr.Load().(error); ok {
			return res, fmt.Errorf("manager ended: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.TakeoverSeconds = time.Since(start).Seconds()
	res.TakeoverCPUSeconds = cpuSeconds() - cpu0
	res.TakeoverRequestsPerJob = float64(st.calls.Load()-calls0-(st.steady.Load()-steady0)) / float64(o.jobs)
	res.WorkersRestarted = len(fl.Starts())
	if o.takeoverOnly {
		return res, nil
	}
	// A quiet window before the workers start: the jobs only tick, so
	// the CPU a tick costs is measured on its own.
	if !o.plain && o.quiet > 0 {
		if !clock.Sleep(ctx, clock.Real{}, time.Second) {
			return res, ctx.Err()
		}
		ticks.reset()
		cpuQ, tQ := cpuSeconds(), time.Now()
		if !clock.Sleep(ctx, clock.Real{}, o.quiet) {
			return res, ctx.Err()
		}
		if n := ticks.count(); n > 0 {
			res.CPUMicrosPerTick = (cpuSeconds() - cpuQ) / float64(n) * 1e6
			res.QuietTicksPerSecond = float64(n) / time.Since(tQ).Seconds()
		}
	}
	// The workers start sending once every job is adopted, so take-over is
	// timed on the store's latency alone; they are watched from adoption
	// on and have a heartbeat time-out to start.
	wg.Go(func() { sim.Run(ctx) })

	if !clock.Sleep(ctx, clock.Real{}, o.warmup) {
		return res, ctx.Err()
	}
	// The measured window.
	ticks.reset()
	recov.reset()
	probe := newHist()
	pctx, pcancel := context.WithCancel(ctx)
	wg.Go(func() { probeTicker(pctx, 200*time.Millisecond, probe) })
	if o.failRate > 0 && !o.plain {
		wg.Go(func() { injectFailures(pctx, sim, ids, o.failRate) })
	}
	st.Usage()
	inStats0 := in.Stats()
	hb0, ur0, rd0 := sim.stats.Heartbeats.Load(), sim.stats.Urgent.Load(), sim.stats.CommandReads.Load()
	cpu0, t0 := cpuSeconds(), time.Now()
	ok := clock.Sleep(ctx, clock.Real{}, o.window)
	cpu1, t1 := cpuSeconds(), time.Now()
	pcancel()
	if !ok {
		return res, ctx.Err()
	}
	inStats := in.Stats()
	secs := t1.Sub(t0).Seconds()
	sent := (sim.stats.Heartbeats.Load() - hb0) + (sim.stats.Urgent.Load() - ur0)
	res.WindowSeconds = secs
	res.CPUSecondsPerSecond = (cpu1 - cpu0) / secs
	res.MessagesPerSecondIn = float64(sent) / secs
	res.MessagesPerSecondDone = float64(inStats.Acked-inStats0.Acked) / secs
	res.Backlog = in.Len() + in.InFlight()
	res.Redelivered = inStats.Redelivered - inStats0.Redelivered
	res.TickLateP99Ms, res.TickLateMaxMs, res.Ticks = ticks.quantileMs(0.99), ticks.maxMs(), ticks.count()
	res.ProbeLateP99Ms, res.ProbeLateMaxMs = probe.quantileMs(0.99), probe.maxMs()
	res.TicksPerSecond = float64(res.Ticks) / secs
	res.MessagesPerSecondExpected = expectedMessages(o.jobs, o.checkpoint)
	res.TicksPerSecondExpected = expectedTicks(o.jobs, o.checkpoint)
	res.LoadAverage = loadAverage()
	res.FailToRecoveringP50Ms, res.FailToRecoveringP99Ms = recov.quantileMs(0.5), recov.quantileMs(0.99)
	res.Failures = int(recov.count())
	heap, stacks := memInUse()
	res.ProcessHeapBytesPerJob = (float64(heap) - float64(baseHeap)) / float64(o.jobs)
	res.StackBytesPerJob = (float64(stacks) - float64(baseStacks)) / float64(o.jobs)
	res.HeapBytesPerJob = controllerHeap() / float64(o.jobs)
	if o.memProfile != "" {
		if err := writeHeapProfile(o.memProfile); err != nil {
			return res, err
		}
	}

	counts, units := st.Usage()
	res.usage = loadUsage{
		seconds: secs, jobs: o.jobs, store: counts, storeUnits: units,
		checkpoints:  counts["dynamodb.PutItem checkpoint"],
		inbox:        diffStats(inStats, inStats0),
		heartbeats:   sim.stats.Heartbeats.Load() - hb0,
		urgent:       sim.stats.Urgent.Load() - ur0,
		commandReads: sim.stats.CommandReads.Load() - rd0,
		// The newest command record written; the seeded one if none was.
		commandsBytes: st.commandsSize.Load(),
	}
	if err, ok := mgrErr.Load().(error); ok {
		return res, fmt.Errorf("manager ended: %w", err)
	}
	return res, nil
}

// expectedMessages is the envelopes per second the simulated workers send
// at full speed: a heartbeat per worker per interval, plus one checkpoint
// completion per worker per checkpoint.
func expectedMessages(jobs int, checkpoint time.Duration) float64 {
	per := workersPerJob * (1/protocol.DefaultHeartbeatInterval.Seconds() + 1/checkpoint.Seconds())
	return float64(jobs) * per
}

// loadAverage is the machine's one-minute load average (0 if unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscan(string(b), &l)
	return l
}

func diffStats(a, b meminbox.Stats) meminbox.Stats {
	return meminbox.Stats{
		Sent: a.Sent - b.Sent, Receives: a.Receives - b.Receives, Delivered: a.Delivered - b.Delivered,
		Redelivered: a.Redelivered - b.Redelivered, Acked: a.Acked - b.Acked, AckCalls: a.AckCalls - b.AckCalls,
	}
}

// plainConsumer receives and acknowledges without decoding: the
// calibration run's stand-in for the controller.
func plainConsumer(ctx context.Context, in *meminbox.Inbox) {
	for {
		ds, err := in.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil && len(ds) > 0 {
			_ = in.Ack(ctx, ds)
		}
	}
}

// probeTicker measures how late a plain 200 ms ticker fires in the same
// process: the floor the job ticks can be judged against.
func probeTicker(ctx context.Context, every time.Duration, h *hist) {
	t := time.NewTicker(every)
	defer t.Stop()
	next := time.Now().Add(every)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		h.add(now.Sub(next))
		for !next.After(now) {
			next = next.Add(every)
		}
	}
}

// injectFailures makes a random job's worker report a failed task, rate
// times a second; each job fails at most once.
func injectFailures(ctx context.Context, sim *Sim, ids []job.ID, rate float64) {
	rng := rand.New(rand.NewPCG(7, 7))
	order := rng.Perm(len(ids))
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for _, i := range order {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sim.Fail(ids[i])
	}
}

var _ inbox.Inbox = (*meminbox.Inbox)(nil)
var _ store.Store = (*slowStore)(nil)

// expectedTicks estimates the ticks per second of jobs that checkpoint
// every checkpoint: a quiet job ticks once per state.IdleTicks progress
// intervals, and each checkpoint adds about one (its reports all in; its
// start falls on a tick of its own time).
func expectedTicks(jobs int, checkpoint time.Duration) float64 {
	interval := controller.DefaultSettings().ProgressInterval.Seconds()
	perJob := 1/(state.IdleTicks*interval) + 1/checkpoint.Seconds()
	return float64(jobs) * min(perJob, 1/interval)
}

// project splits the controller's CPU into ticks and messages and scales
// each to the expected rate: what the full load would take on a machine
// that gave the process all the CPU it asked for.
func project(r *LoadResult) {
	if r.MessagesPerSecondDone <= 0 || r.CPUMicrosPerTick <= 0 {
		return
	}
	tickCPU := r.TicksPerSecond * r.CPUMicrosPerTick / 1e6
	r.CPUMicrosPerMessage = max(0, r.ControllerCPUPerSecond-tickCPU) / r.MessagesPerSecondDone * 1e6
	r.ProjectedCPUPerSecond = (r.TicksPerSecondExpected*r.CPUMicrosPerTick + r.MessagesPerSecondExpected*r.CPUMicrosPerMessage) / 1e6
}
