package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/store/memstore"
	"github.com/weirstream/weir/core/telemetry"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// launcher records what the state machine asked of the fleet.
type launcher struct {
	mu       sync.Mutex
	starts   []fleet.Request
	stops    []int64
	failNext error
}

func (l *launcher) Start(_ context.Context, req fleet.Request) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.failNext; err != nil {
		l.failNext = nil
		return err
	}
	l.starts = append(l.starts, req)
	return nil
}

func (l *launcher) Stop(_ context.Context, _ job.ID, runID int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.failNext; err != nil {
		l.failNext = nil
		return err
	}
	l.stops = append(l.stops, runID)
	return nil
}

func (l *launcher) stopped(runID int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.stops {
		if r >= runID {
			return true
		}
	}
	return false
}

// harness runs one job's Machine against the in-memory store, a fake clock
// and simulated workers that answer the command record like real ones.
type harness struct {
	t      *testing.T
	ctx    context.Context
	clk    *clock.Fake
	store  *flakyStore
	fleet  *launcher
	m      *Machine
	deps   Deps
	seq    map[string]uint64
	lastEp int64
}

func testConfig() job.Config {
	return job.Config{
		JobID: "orders",
		Spec: job.Spec{
			Operators: []job.Operator{
				{ID: "source", Parallelism: 2, Source: true},
				{ID: "map", Parallelism: 2},
				{ID: "sink", Parallelism: 2, Committing: true},
			},
			SlotsPerWorker: 1,
			Program:        "s3://programs/orders.wasm",
		},
	}.WithDefaults()
}

func testSettings() controller.Settings {
	s := controller.DefaultSettings()
	return s
}

func newHarness(t *testing.T, cfg job.Config) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		ctx:   context.Background(),
		clk:   clock.NewFake(t0),
		store: &flakyStore{Store: memstore.New(), fail: map[string]int{}},
		fleet: &launcher{},
		seq:   map[string]uint64{},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	stored, err := h.store.PutConfig(h.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.deps = Deps{
		Store:     h.store,
		Fleet:     h.fleet,
		Clock:     h.clk,
		Telemetry: telemetry.Nop{},
		Settings:  testSettings(),
		Fence:     1,
		Rand:      func() float64 { return 0.5 },
	}
	h.m = NewMachine(h.deps, stored, job.Status{})
	return h
}

func (h *harness) start() {
	h.t.Helper()
	if err := h.m.Start(h.ctx); err != nil {
		h.t.Fatalf("start: %v", err)
	}
}

func (h *harness) want(s job.State) {
	h.t.Helper()
	if got := h.m.State(); got != s {
		st := h.m.Status()
		h.t.Fatalf("state = %s, want %s (failure: %+v)", got, s, st.Failure)
	}
	stored, err := h.store.GetStatus(h.ctx, "orders")
	if err != nil {
		h.t.Fatalf("stored status: %v", err)
	}
	if stored.State != s {
		h.t.Fatalf("stored state = %s, want %s: transitions must be persisted", stored.State, s)
	}
}

func (h *harness) tick() {
	h.t.Helper()
	if err := h.m.Tick(h.ctx); err != nil {
		h.t.Fatalf("tick: %v", err)
	}
}

// advance moves time on in progress-interval steps, ticking each time.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	step := h.deps.Settings.ProgressInterval
	for d > 0 {
		s := min(step, d)
		h.clk.Advance(s)
		d -= s
		h.tick()
	}
}

// update changes the desired config as the config API would.
func (h *harness) update(f func(*job.Config)) {
	h.t.Helper()
	cfg, err := h.store.GetConfig(h.ctx, "orders")
	if err != nil {
		h.t.Fatal(err)
	}
	f(&cfg)
	cfg, err = h.store.PutConfig(h.ctx, cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.m.Config(h.ctx, cfg); err != nil {
		h.t.Fatalf("config: %v", err)
	}
}

func (h *harness) commands() job.Commands {
	h.t.Helper()
	c, err := h.store.GetCommands(h.ctx, "orders")
	if err != nil {
		h.t.Fatalf("commands: %v", err)
	}
	return c
}

func (h *harness) envelope(worker string, events ...protocol.Event) *protocol.Envelope {
	h.seq[worker]++
	// The run id as workers learn it: from the command record (reading
	// the machine would race with a Runner driving it).
	run := int64(0)
	if c, err := h.store.GetCommands(h.ctx, "orders"); err == nil {
		run = c.RunID
	}
	return &protocol.Envelope{
		V: protocol.V1, JobID: "orders", RunID: run, WorkerID: worker,
		Seq: h.seq[worker], SentAt: h.clk.Now(), Heartbeat: &protocol.Heartbeat{}, Events: events,
	}
}

func (h *harness) send(env *protocol.Envelope) {
	h.t.Helper()
	if err := h.m.Message(h.ctx, env); err != nil {
		h.t.Fatalf("message: %v", err)
	}
}

// byWorker groups the run's assignments by worker.
func (h *harness) byWorker() map[string][]job.TaskAssignment {
	h.t.Helper()
	cmds := h.commands()
	if cmds.Start == nil {
		h.t.Fatal("no start command")
	}
	out := map[string][]job.TaskAssignment{}
	for _, a := range cmds.Start.Assignments {
		out[a.WorkerID] = append(out[a.WorkerID], a)
	}
	return out
}

// eachTask sends, per worker, one envelope with an event for each of its tasks.
func (h *harness) eachTask(ev func(a job.TaskAssignment) protocol.Event) {
	h.t.Helper()
	for w, as := range h.byWorker() {
		var events []protocol.Event
		for _, a := range as {
			events = append(events, ev(a))
		}
		h.send(h.envelope(w, events...))
	}
}

// bringUp registers every worker, starts every task and ticks into Running.
func (h *harness) bringUp() {
	h.t.Helper()
	h.want(job.Scheduling)
	for w := range h.byWorker() {
		h.send(h.envelope(w, protocol.Event{Kind: protocol.WorkerRegistered, Slots: 1}))
	}
	h.eachTask(func(a job.TaskAssignment) protocol.Event {
		return protocol.Event{Kind: protocol.TaskStarted, Operator: a.OperatorID, Subtask: a.Subtask}
	})
	h.tick()
	h.want(job.Running)
}

func (h *harness) heartbeats() {
	h.t.Helper()
	for w := range h.byWorker() {
		h.send(h.envelope(w))
	}
}

// answerCheckpoint completes the checkpoint the command record asks for,
// and acknowledges its commit when the record asks for that.
func (h *harness) answerCheckpoint() int64 {
	h.t.Helper()
	cmds := h.commands()
	if cmds.Checkpoint == nil {
		h.t.Fatal("no checkpoint command")
	}
	epoch := cmds.Checkpoint.Epoch
	h.eachTask(func(a job.TaskAssignment) protocol.Event {
		return protocol.Event{Kind: protocol.CheckpointCompleted, Operator: a.OperatorID, Subtask: a.Subtask, Epoch: epoch, Bytes: 10}
	})
	h.tick()
	if c := h.commands(); c.Commit != nil && c.Commit.Epoch == epoch {
		h.eachTask(func(a job.TaskAssignment) protocol.Event {
			if a.OperatorID != "sink" {
				return protocol.Event{Kind: protocol.CheckpointEvent, Operator: a.OperatorID, Subtask: a.Subtask, Epoch: epoch, Phase: "committed"}
			}
			return protocol.Event{Kind: protocol.CommitFinished, Operator: a.OperatorID, Subtask: a.Subtask, Epoch: epoch}
		})
		h.tick()
	}
	return epoch
}

// waitCheckpoint advances time, with heartbeats, until a checkpoint is asked for.
func (h *harness) waitCheckpoint() {
	h.t.Helper()
	for i := 0; i < 1000; i++ {
		if c := h.commands(); c.Checkpoint != nil && c.Checkpoint.Epoch > h.lastEp {
			h.lastEp = c.Checkpoint.Epoch
			return
		}
		h.advance(time.Second)
		h.heartbeats()
	}
	h.t.Fatal("no checkpoint was started")
}

func (h *harness) finishAll() {
	h.eachTask(func(a job.TaskAssignment) protocol.Event {
		return protocol.Event{Kind: protocol.TaskFinished, Operator: a.OperatorID, Subtask: a.Subtask}
	})
}

func (h *harness) readyEpochs() []int64 {
	h.t.Helper()
	cps, err := h.store.ListCheckpoints(h.ctx, "orders")
	if err != nil {
		h.t.Fatal(err)
	}
	var out []int64
	for _, cp := range cps {
		if cp.State == job.CheckpointReady {
			out = append(out, cp.Epoch)
		}
	}
	return out
}

var errTransient = errors.New("throttled")

// flakyStore fails chosen operations a given number of times.
type flakyStore struct {
	*memstore.Store
	mu   sync.Mutex
	fail map[string]int
}

func (f *flakyStore) failing(op string, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = times
}

func (f *flakyStore) take(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[op] > 0 {
		f.fail[op]--
		return fmt.Errorf("%s: %w", op, errTransient)
	}
	return nil
}

func (f *flakyStore) PutStatus(ctx context.Context, fe store.Fence, st job.Status) (job.Status, error) {
	if err := f.take("PutStatus"); err != nil {
		return job.Status{}, err
	}
	// "PutStatusUnanswered": the write lands but its answer is lost, and
	// the transport has given up retrying.
	if err := f.take("PutStatusUnanswered"); err != nil {
		if _, werr := f.Store.PutStatus(ctx, fe, st); werr != nil {
			return job.Status{}, werr
		}
		return job.Status{}, fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return f.Store.PutStatus(ctx, fe, st)
}

func (f *flakyStore) CreateCheckpoint(ctx context.Context, fe store.Fence, cp job.Checkpoint) error {
	if err := f.take("CreateCheckpoint"); err != nil {
		return err
	}
	return f.Store.CreateCheckpoint(ctx, fe, cp)
}

// advanceUntil ticks in progress-interval steps until the job is in s.
func (h *harness) advanceUntil(s job.State, limit time.Duration) {
	h.t.Helper()
	step := h.deps.Settings.ProgressInterval
	for waited := time.Duration(0); h.m.State() != s; waited += step {
		if waited > limit {
			h.t.Fatalf("still %s after %s, want %s (failure: %q)", h.m.State(), limit, s, failureMessage(h.m.Status()))
		}
		h.clk.Advance(step)
		h.tick()
	}
	h.want(s)
}

func failureMessage(st job.Status) string {
	if st.Failure == nil {
		return ""
	}
	return fmt.Sprintf("%s (%s)", st.Failure.Message, st.Failure.Domain)
}
