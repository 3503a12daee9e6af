package controller

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/store/memstore"
	"github.com/weirstream/weir/core/telemetry"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const testJob job.ID = "orders"

// testConfig is a three-operator pipeline, two subtasks each, one slot per
// worker: two workers, w-0 runs subtask 0 of everything, w-1 subtask 1.
func testConfig(committing bool) job.Config {
	return job.Config{
		JobID: testJob,
		Spec: job.Spec{
			Operators: []job.Operator{
				{ID: "src", Parallelism: 2, Source: true},
				{ID: "map", Parallelism: 2},
				{ID: "sink", Parallelism: 2, Committing: committing},
			},
			SlotsPerWorker: 1,
			Program:        "s3://bucket/orders.wasm",
		},
		CheckpointInterval: 10 * time.Second,
	}
}

func testSettings() Settings {
	s := DefaultSettings()
	s.HeartbeatTimeout = time.Hour // liveness tests lower it
	s.CheckpointTimeout = time.Minute
	s.FinalCheckpointTimeout = 3 * time.Minute
	s.RetainedCheckpoints = 3
	s.MetricsInterval = 2 * time.Second
	s.MetricsWindow = 10 * time.Second
	return s
}

// recorder is a telemetry.Recorder that remembers what it was told.
type recorder struct {
	mu      sync.Mutex
	cps     []finished
	metrics []telemetry.JobMetrics
}

type finished struct {
	epoch int64
	ok    bool
}

func (r *recorder) Transition(job.ID, job.State, job.State, time.Duration) {}
func (r *recorder) Restarted(job.ID, int)                                  {}
func (r *recorder) Forget(job.ID)                                          {}
func (r *recorder) WorkerMessages(telemetry.MessageOutcome, int)           {}
func (r *recorder) CheckpointFinished(_ job.ID, epoch int64, _ time.Duration, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cps = append(r.cps, finished{epoch, ok})
}
func (r *recorder) Metrics(_ job.ID, m telemetry.JobMetrics) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = append(r.metrics, m)
}

func (r *recorder) checkpoints() []finished {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]finished(nil), r.cps...)
}

func (r *recorder) metricCalls() []telemetry.JobMetrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]telemetry.JobMetrics(nil), r.metrics...)
}

// gatedStore holds ListCheckpoints (the first call of a cleanup) until the
// test releases it, so a cleanup can be caught while it runs.
type gatedStore struct {
	*memstore.Store
	armed   atomic.Bool
	lists   atomic.Int32
	updates atomic.Int32 // UpdateCheckpoint calls
	entered chan struct{}
	release chan struct{}
}

func newGatedStore() *gatedStore {
	return &gatedStore{Store: memstore.New(), entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (g *gatedStore) ListCheckpoints(ctx context.Context, id job.ID) ([]job.Checkpoint, error) {
	g.lists.Add(1)
	if g.armed.Load() {
		g.entered <- struct{}{}
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Store.ListCheckpoints(ctx, id)
}

func (g *gatedStore) UpdateCheckpoint(ctx context.Context, f store.Fence, cp job.Checkpoint) error {
	g.updates.Add(1)
	return g.Store.UpdateCheckpoint(ctx, f, cp)
}

type harness struct {
	t     *testing.T
	ctx   context.Context
	mem   *memstore.Store
	st    store.Store
	clk   *clock.Fake
	rec   *recorder
	cfg   job.Config
	set   Settings
	fence store.Fence
	c     *JobController
	seq   map[string]uint64
	runID int64
}

type option func(*harness)

func withSettings(f func(*Settings)) option { return func(h *harness) { f(&h.set) } }
func withStore(g *gatedStore) option {
	return func(h *harness) { h.mem, h.st = g.Store, g }
}

func newHarness(t *testing.T, committing bool, opts ...option) *harness {
	t.Helper()
	mem := memstore.New()
	h := &harness{
		t: t, ctx: context.Background(), mem: mem, st: mem,
		clk: clock.NewFake(t0), rec: &recorder{},
		cfg: testConfig(committing), set: testSettings(), fence: 7, runID: 1,
	}
	for _, o := range opts {
		o(h)
	}
	h.newRun(h.runID)
	return h
}

// newRun prepares the restore and builds the controller of a run, the way
// the Scheduling state does.
func (h *harness) newRun(runID int64) {
	h.t.Helper()
	if h.c != nil {
		h.c.Close()
	}
	r, err := PrepareRestore(h.ctx, h.st, h.fence, testJob)
	if err != nil {
		h.t.Fatalf("PrepareRestore: %v", err)
	}
	h.runID = runID
	h.seq = map[string]uint64{}
	h.c = New(Deps{
		Store: h.st, Clock: h.clk, Telemetry: h.rec, Fence: h.fence, Settings: h.set,
		Rand: func() float64 { return 0.5 },
	}, Run{
		JobID: testJob, RunID: runID, Layout: NewLayout(h.cfg), Program: h.cfg.Spec.Program,
		Restore: r, CheckpointInterval: h.cfg.CheckpointInterval,
	})
	h.t.Cleanup(h.c.Close)
	if err := h.c.Start(h.ctx); err != nil {
		h.t.Fatalf("Start: %v", err)
	}
}

// envelope builds the next envelope of a worker.
func (h *harness) envelope(w string, hb *protocol.Heartbeat, evs ...protocol.Event) *protocol.Envelope {
	h.seq[w]++
	return &protocol.Envelope{
		V: protocol.V1, JobID: testJob, RunID: h.runID, WorkerID: w,
		Seq: h.seq[w], SentAt: h.clk.Now(), Heartbeat: hb, Events: evs,
	}
}

func (h *harness) send(w string, evs ...protocol.Event) {
	h.t.Helper()
	if err := h.c.HandleMessage(h.envelope(w, &protocol.Heartbeat{}, evs...)); err != nil {
		h.t.Fatalf("HandleMessage from %s: %v", w, err)
	}
}

// workerOf is the worker running subtask s in testConfig's layout.
func workerOf(s int) string { return []string{"w-0", "w-1"}[s] }

// forEachTask sends one event per subtask, each from the worker running it.
func (h *harness) forEachTask(ev func(op string, s int) protocol.Event, ops ...string) {
	h.t.Helper()
	if len(ops) == 0 {
		ops = []string{"src", "map", "sink"}
	}
	for _, op := range ops {
		for s := range 2 {
			h.send(workerOf(s), ev(op, s))
		}
	}
}

// running registers both workers and starts every task.
func (h *harness) running() {
	h.t.Helper()
	h.send("w-0", protocol.Event{Kind: protocol.WorkerRegistered, Slots: 1})
	h.send("w-1", protocol.Event{Kind: protocol.WorkerRegistered, Slots: 1})
	h.forEachTask(func(op string, s int) protocol.Event {
		return protocol.Event{Kind: protocol.TaskStarted, Operator: op, Subtask: s}
	})
}

func (h *harness) reportAll(epoch int64, ops ...string) {
	h.t.Helper()
	h.forEachTask(func(op string, s int) protocol.Event {
		return protocol.Event{Kind: protocol.CheckpointCompleted, Operator: op, Subtask: s, Epoch: epoch,
			Bytes: 100, Metadata: op + "-meta"}
	}, ops...)
}

func (h *harness) ack(epoch int64, s int) {
	h.t.Helper()
	h.send(workerOf(s), protocol.Event{Kind: protocol.CommitFinished, Operator: "sink", Subtask: s, Epoch: epoch})
}

func (h *harness) progress() Progress {
	h.t.Helper()
	p, err := h.c.Progress(h.ctx)
	if err != nil {
		h.t.Fatalf("Progress: %v", err)
	}
	return p
}

func (h *harness) expectContinue() {
	h.t.Helper()
	if p := h.progress(); p.Kind != Continue {
		h.t.Fatalf("Progress = %v, want continue", p.Kind)
	}
}

func (h *harness) advance(d time.Duration) { h.clk.Advance(d) }

func (h *harness) commands() job.Commands {
	h.t.Helper()
	c, err := h.mem.GetCommands(h.ctx, testJob)
	if err != nil {
		h.t.Fatalf("GetCommands: %v", err)
	}
	return c
}

func (h *harness) checkpoint(epoch int64) (job.Checkpoint, bool) {
	h.t.Helper()
	cps, err := h.mem.ListCheckpoints(h.ctx, testJob)
	if err != nil {
		h.t.Fatalf("ListCheckpoints: %v", err)
	}
	for _, cp := range cps {
		if cp.Epoch == epoch {
			return cp, true
		}
	}
	return job.Checkpoint{}, false
}

func (h *harness) checkpointState(epoch int64) job.CheckpointState {
	h.t.Helper()
	cp, ok := h.checkpoint(epoch)
	if !ok {
		return ""
	}
	return cp.State
}

func (h *harness) storedEpochs() []int64 {
	h.t.Helper()
	cps, err := h.mem.ListCheckpoints(h.ctx, testJob)
	if err != nil {
		h.t.Fatalf("ListCheckpoints: %v", err)
	}
	var out []int64
	for _, cp := range cps {
		out = append(out, cp.Epoch)
	}
	return out
}

// startDue moves the clock to when the next periodic checkpoint is due and
// runs Progress, which must start it; it returns the epoch.
func (h *harness) startDue() int64 {
	h.t.Helper()
	if !h.c.anchored {
		h.expectContinue()
	}
	due := h.c.lastStart + h.c.interval
	if !h.c.startedAny {
		due = h.c.anchor + time.Duration(h.c.jitter*float64(h.c.interval))
	}
	if now := h.c.now(); due > now {
		h.advance(due - now)
	}
	h.expectContinue()
	if !h.c.CheckpointInFlight() {
		h.t.Fatalf("no checkpoint started when one was due")
	}
	return h.c.cp.epoch
}

// completeCheckpoint starts the next checkpoint and has every subtask
// report (and ack) it.
func (h *harness) completeCheckpoint() int64 {
	h.t.Helper()
	e := h.startDue()
	h.reportAll(e)
	h.expectContinue()
	if h.c.cp.committing {
		h.ack(e, 0)
		h.ack(e, 1)
		h.expectContinue()
	}
	if h.c.CheckpointInFlight() || h.c.LastReadyEpoch() != e {
		h.t.Fatalf("checkpoint %d did not complete (in flight %v, last ready %d)", e, h.c.CheckpointInFlight(), h.c.LastReadyEpoch())
	}
	return e
}

// failCheckpoint starts the next checkpoint and lets it time out.
func (h *harness) failCheckpoint() (int64, error) {
	h.t.Helper()
	e := h.startDue()
	h.advance(h.set.CheckpointTimeout + time.Millisecond)
	_, err := h.c.Progress(h.ctx)
	if h.c.CheckpointInFlight() {
		h.t.Fatalf("checkpoint %d still in flight after its time-out", e)
	}
	return e, err
}

// waitCleanup blocks until the background cleanup has a result and leaves
// it for Progress to collect.
func (h *harness) waitCleanup() {
	h.t.Helper()
	select {
	case r := <-h.c.results:
		h.c.results <- r
	case <-time.After(10 * time.Second):
		h.t.Fatal("the background cleanup never finished")
	}
}

func errorIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one wrapping %v", err, target)
	}
}
