package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testIdentity() Identity {
	return Identity{JobID: "orders", RunID: 3, WorkerID: "w-0", QueueURL: "http://127.0.0.1:1/queue/q",
		JobsTable: "jobs", Slots: 2, HeartbeatInterval: 20 * time.Second}
}

// fakePublisher keeps every envelope it is given; it fails the next
// `failures` calls.
type fakePublisher struct {
	mu       sync.Mutex
	envs     []*protocol.Envelope
	calls    int
	failures int
}

func (p *fakePublisher) Publish(_ context.Context, body []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.failures > 0 {
		p.failures--
		return errors.New("queue unreachable")
	}
	env, err := protocol.Decode(body)
	if err != nil {
		return fmt.Errorf("the worker sent an envelope the controller would refuse: %w", err)
	}
	p.envs = append(p.envs, env)
	return nil
}

func (p *fakePublisher) sent() []*protocol.Envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*protocol.Envelope(nil), p.envs...)
}

func (p *fakePublisher) last() *protocol.Envelope {
	envs := p.sent()
	if len(envs) == 0 {
		return nil
	}
	return envs[len(envs)-1]
}

// fakeCommands is a command record the test writes and the worker reads.
type fakeCommands struct {
	mu    sync.Mutex
	cmds  *job.Commands
	reads int
}

func (f *fakeCommands) GetCommands(_ context.Context, id job.ID) (job.Commands, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.cmds == nil {
		return job.Commands{}, fmt.Errorf("commands of job %s: %w", id, store.ErrNotFound)
	}
	return *f.cmds, nil
}

// write changes the record, counting its version up.
func (f *fakeCommands) write(change func(c *job.Commands)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cmds == nil {
		f.cmds = &job.Commands{JobID: "orders", RunID: 3}
	}
	change(f.cmds)
	f.cmds.Version++
}

func (f *fakeCommands) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// fakeProgram records what the worker asked of it.
type fakeProgram struct {
	mu          sync.Mutex
	calls       []string
	startErr    error
	checkpoints []int64
	commits     []int64
	stops       []job.StopMode
	reporter    *Reporter
	subtasks    []Subtask
	clk         *clock.Fake
	seenAt      map[int64]time.Time // when Checkpoint was called, per epoch
}

func (p *fakeProgram) record(call string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, call)
}

func (p *fakeProgram) Start(_ context.Context, req StartRequest, r *Reporter) error {
	p.record(fmt.Sprintf("start restore=%d subtasks=%d", req.RestoreEpoch, len(req.Subtasks)))
	p.mu.Lock()
	p.reporter, p.subtasks = r, req.Subtasks
	p.mu.Unlock()
	return p.startErr
}

func (p *fakeProgram) Checkpoint(_ context.Context, req CheckpointRequest) ([]Snapshot, error) {
	p.record(fmt.Sprintf("checkpoint %d", req.Epoch))
	p.mu.Lock()
	defer p.mu.Unlock()
	p.checkpoints = append(p.checkpoints, req.Epoch)
	if p.clk != nil {
		if p.seenAt == nil {
			p.seenAt = map[int64]time.Time{}
		}
		p.seenAt[req.Epoch] = p.clk.Now()
	}
	var out []Snapshot
	for _, s := range p.subtasks {
		out = append(out, Snapshot{Subtask: s, Bytes: 10, Metadata: fmt.Sprintf("s3://state/%d/%s", req.Epoch, s)})
	}
	return out, nil
}

func (p *fakeProgram) Commit(_ context.Context, epoch int64) error {
	p.record(fmt.Sprintf("commit %d", epoch))
	p.mu.Lock()
	defer p.mu.Unlock()
	p.commits = append(p.commits, epoch)
	return nil
}

func (p *fakeProgram) Stop(_ context.Context, mode job.StopMode) error {
	p.record("stop " + string(mode))
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stops = append(p.stops, mode)
	return nil
}

func (p *fakeProgram) callList() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// harness runs one worker on a fake clock.
type harness struct {
	t    *testing.T
	clk  *clock.Fake
	pub  *fakePublisher
	cmds *fakeCommands
	prog *fakeProgram
	w    *Worker
	done chan error
	stop context.CancelFunc
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	clk := clock.NewFake(t0)
	h := &harness{t: t, clk: clk, pub: &fakePublisher{}, cmds: &fakeCommands{}, prog: &fakeProgram{clk: clk}}
	opts.Clock = h.clk
	w, err := New(testIdentity(), h.prog, h.pub, h.cmds, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	return h
}

// run starts Run and waits until both loops wait on the clock.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.w.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			h.t.Error("Run did not return after its context ended")
		}
	})
	h.settle()
}

// settle waits until the worker's two loops are both asleep on the clock
// (or Run has returned): both timers armed and no wake-up waiting, for a
// while of real time, so that a loop the scheduler has not run yet is
// not taken for an idle one.
func (h *harness) settle() {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var since time.Time
	for stable := 0; stable < 50 || time.Since(since) < 200*time.Microsecond; stable++ {
		if time.Now().After(deadline) {
			h.t.Fatalf("the worker did not settle: %d timers armed", h.clk.Waiters())
		}
		if !h.returned() && (h.clk.Waiters() < 2 || len(h.w.b.Wake()) > 0) {
			stable, since = -1, time.Now()
		}
		if stable == 0 {
			since = time.Now()
		}
		runtime.Gosched()
	}
}

func (h *harness) returned() bool {
	select {
	case err := <-h.done:
		h.done <- err
		return true
	default:
		return false
	}
}

// advance moves the clock in small steps, letting the worker act at each.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	const step = 50 * time.Millisecond
	for d > 0 {
		s := min(step, d)
		h.clk.Advance(s)
		h.settle()
		d -= s
	}
}

func (h *harness) result() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(5 * time.Second):
		h.t.Fatal("Run did not return")
		return nil
	}
}

// startRun writes the start command: w-0 runs src[0] and sink[0].
func (h *harness) startRun(restore int64) {
	h.cmds.write(func(c *job.Commands) {
		c.Start = &job.StartCommand{Program: "p", RestoreEpoch: restore, Assignments: []job.TaskAssignment{
			{WorkerID: "w-0", OperatorID: "src", Subtask: 0},
			{WorkerID: "w-1", OperatorID: "src", Subtask: 1},
			{WorkerID: "w-0", OperatorID: "sink", Subtask: 0},
			{WorkerID: "w-1", OperatorID: "sink", Subtask: 1},
		}}
	})
}

func (h *harness) checkpoint(epoch int64, thenStop bool) {
	h.cmds.write(func(c *job.Commands) {
		c.Checkpoint = &job.CheckpointCommand{Epoch: epoch, MinEpoch: 1, ThenStop: thenStop}
	})
}

func (h *harness) commit(epoch int64) {
	h.cmds.write(func(c *job.Commands) { c.Commit = &job.CommitCommand{Epoch: epoch} })
}

// state is the newest envelope's entry for a subtask.
func (h *harness) state(op string) protocol.Task {
	h.t.Helper()
	env := h.pub.last()
	if env == nil {
		h.t.Fatal("nothing sent")
	}
	for _, t := range env.Tasks {
		if t.Operator == op {
			return t
		}
	}
	h.t.Fatalf("the newest envelope has no %s: %v", op, env)
	return protocol.Task{}
}

func errContextCanceled() error { return context.Canceled }
