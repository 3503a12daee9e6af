package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/worker"
)

// WorkerRates is what one worker of the SDK (worker/) sends and reads per
// minute at one checkpoint interval, run on a fake clock against a command
// record that a stand-in controller writes at that interval.
type WorkerRates struct {
	CheckpointIntervalSeconds float64 `json:"checkpoint_interval_seconds"`
	SendsPerMinute            float64 `json:"sends_per_worker_minute"`
	ReadsPerMinute            float64 `json:"command_reads_per_worker_minute"`
	// CheckpointStartLagMs is the mean time from a checkpoint command being
	// written to the worker's program being asked for it.
	CheckpointStartLagMs float64 `json:"checkpoint_start_lag_ms"`
}

// Simulated time of a worker run: a warm-up while the worker finds when
// checkpoints appear (the first ones are seen by slow reads), at least
// four checkpoints, then the measured part.
const (
	workerWarmUp   = 2 * time.Minute
	workerMeasured = 10 * time.Minute
	workerStep     = 100 * time.Millisecond
)

// workerRates runs one SDK worker with the defaults (its read schedule,
// heartbeat and linger) and the benchmark job's share of subtasks.
func workerRates(interval time.Duration) (WorkerRates, error) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	pub := &countingPublisher{}
	cmds := &stepCommands{clk: clk}
	prog := &quietProgram{clk: clk, asked: map[int64]time.Time{}}
	id := worker.Identity{JobID: "cost", RunID: 1, WorkerID: workerID(0), QueueURL: "http://127.0.0.1:1/q",
		JobsTable: "jobs", Slots: slotsPerWorker, HeartbeatInterval: protocol.DefaultHeartbeatInterval}
	w, err := worker.New(id, prog, pub, cmds, worker.Options{Clock: clk})
	if err != nil {
		return WorkerRates{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// The record states the interval, as the controller writes it.
	cmds.write(func(c *job.Commands) {
		c.Start = &job.StartCommand{Program: "bench", Assignments: assignments()}
		c.CheckpointInterval = interval
	})
	var epoch int64
	written := map[int64]time.Time{}
	// The controller starts a checkpoint at its first progress tick (every
	// 200 ms) after the interval has passed since the last one started:
	// checkpoints come an interval apart or up to 200 ms more.
	rng := rand.New(rand.NewPCG(1, 2))
	next := start.Add(interval)
	run := func(d time.Duration) error {
		for end := clk.Now().Add(d); clk.Now().Before(end); {
			clk.Advance(workerStep)
			if err := settleWorker(clk, done); err != nil {
				return err
			}
			if now := clk.Now(); !now.Before(next) {
				next = now.Add(interval + time.Duration(rng.IntN(3))*workerStep)
				epoch++
				e := epoch
				written[e] = clk.Now()
				cmds.write(func(c *job.Commands) { c.Checkpoint = &job.CheckpointCommand{Epoch: e, MinEpoch: max(1, e-10)} })
			}
		}
		return nil
	}
	if err := run(max(workerWarmUp, 4*interval)); err != nil {
		return WorkerRates{}, err
	}
	sends0, reads0, from := pub.count(), cmds.count(), epoch
	if err := run(workerMeasured); err != nil {
		return WorkerRates{}, err
	}
	minutes := workerMeasured.Minutes()
	r := WorkerRates{
		CheckpointIntervalSeconds: interval.Seconds(),
		SendsPerMinute:            float64(pub.count()-sends0) / minutes,
		ReadsPerMinute:            float64(cmds.count()-reads0) / minutes,
	}
	prog.mu.Lock()
	defer prog.mu.Unlock()
	var lag time.Duration
	n := 0
	for e := from + 1; e < epoch; e++ {
		at, ok := prog.asked[e]
		if !ok {
			return r, fmt.Errorf("worker run at %s checkpoints: the worker never took checkpoint %d", interval, e)
		}
		lag += at.Sub(written[e])
		n++
	}
	if n > 0 {
		r.CheckpointStartLagMs = ms(lag / time.Duration(n))
	}
	return r, nil
}

// settleWorker waits (in real time) until the worker's two loops sleep on
// the fake clock again, so every step's requests are made before the next.
func settleWorker(clk *clock.Fake, done chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	var since time.Time
	for stable := 0; stable < 50 || time.Since(since) < 200*time.Microsecond; stable++ {
		if time.Now().After(deadline) {
			return fmt.Errorf("worker run: the worker did not settle (%d timers armed)", clk.Waiters())
		}
		select {
		case err := <-done:
			return fmt.Errorf("worker run: Run returned %v", err)
		default:
		}
		if clk.Waiters() < 2 {
			stable = -1
		}
		if stable <= 0 {
			since = time.Now()
		}
		runtime.Gosched()
	}
	return nil
}

type countingPublisher struct {
	mu sync.Mutex
	n  int
}

func (p *countingPublisher) Publish(context.Context, []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	return nil
}

func (p *countingPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// stepCommands is the command record: the run writes it, the worker reads it.
type stepCommands struct {
	clk   *clock.Fake
	mu    sync.Mutex
	cmds  *job.Commands
	reads int
}

func (s *stepCommands) GetCommands(_ context.Context, id job.ID) (job.Commands, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if s.cmds == nil {
		return job.Commands{}, fmt.Errorf("commands of job %s: %w", id, store.ErrNotFound)
	}
	c := *s.cmds
	return c, nil
}

func (s *stepCommands) write(change func(*job.Commands)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmds == nil {
		s.cmds = &job.Commands{JobID: "cost", RunID: 1}
	}
	change(s.cmds)
	s.cmds.Version++
}

func (s *stepCommands) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// quietProgram runs its subtasks without doing anything, and answers every
// checkpoint at once.
type quietProgram struct {
	clk      *clock.Fake
	mu       sync.Mutex
	subtasks []worker.Subtask
	asked    map[int64]time.Time
}

func (p *quietProgram) Start(_ context.Context, req worker.StartRequest, _ *worker.Reporter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(req.Subtasks) == 0 {
		return errors.New("no subtasks assigned")
	}
	p.subtasks = req.Subtasks
	return nil
}

func (p *quietProgram) Checkpoint(_ context.Context, req worker.CheckpointRequest) ([]worker.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked[req.Epoch] = p.clk.Now()
	out := make([]worker.Snapshot, len(p.subtasks))
	for i, s := range p.subtasks {
		out[i] = worker.Snapshot{Subtask: s, Bytes: 1 << 20, Metadata: fmt.Sprintf("s3://bench/%s/%d", s, req.Epoch)}
	}
	return out, nil
}

func (p *quietProgram) Commit(context.Context, int64) error { return nil }

func (p *quietProgram) Stop(context.Context, job.StopMode) error { return nil }
