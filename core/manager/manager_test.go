package manager

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/fleet/memfleet"
	"github.com/weirstream/weir/core/inbox/meminbox"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/leader/memlease"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/state"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/store/memstore"
)

// world is the core with every port in memory: the manager runs in its own
// goroutines on a fake clock, workers are simulated by the test.
type world struct {
	t     *testing.T
	ctx   context.Context
	clk   *clock.Fake
	store *memstore.Store
	inbox *meminbox.Inbox
	fleet *memfleet.Launcher
	deps  Deps
	seq   map[string]uint64
	acted map[string]bool
}

func newWorld(t *testing.T) *world {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	in, err := meminbox.New(meminbox.Options{Clock: clk, Duplicates: 0.2, Reorder: true, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{
		t: t, ctx: context.Background(), clk: clk, store: memstore.New(), inbox: in,
		fleet: memfleet.New(), seq: map[string]uint64{}, acted: map[string]bool{},
	}
	w.deps = Deps{
		Store: w.store, Inbox: in, Fleet: w.fleet, Clock: clk,
		Settings: controller.DefaultSettings(), Rand: func() float64 { return 0.5 },
	}
	return w
}

func (w *world) putJob(id job.ID, f func(*job.Config)) job.Config {
	w.t.Helper()
	cfg, err := w.store.GetConfig(w.ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		cfg = job.Config{JobID: id, Spec: job.Spec{
			Operators:      []job.Operator{{ID: "src", Parallelism: 2, Source: true}, {ID: "sink", Parallelism: 2}},
			SlotsPerWorker: 1, Program: "demo",
		}}.WithDefaults()
	} else if err != nil {
		w.t.Fatal(err)
	}
	if f != nil {
		f(&cfg)
	}
	cfg, err = w.store.PutConfig(w.ctx, cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	return cfg
}

// run starts the manager under fence and returns a stop function that
// waits for it and returns its error; ended reports an error the manager
// returned by itself.
func (w *world) run(fence store.Fence) func() error {
	stop, _ := w.runWatched(fence)
	return stop
}

func (w *world) runWatched(fence store.Fence) (func() error, <-chan error) {
	m, err := New(w.deps)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ended := make(chan error, 1)
	go func() {
		err := m.Run(ctx, fence)
		if ctx.Err() == nil {
			ended <- err
		}
		done <- err
	}()
	var once sync.Once
	var result error
	stop := func() error {
		once.Do(func() { cancel(); result = <-done })
		return result
	}
	w.t.Cleanup(func() { _ = stop() })
	return stop, ended
}

// send puts an envelope from a simulated worker on the queue.
func (w *world) send(id job.ID, run int64, worker string, events ...protocol.Event) {
	w.t.Helper()
	key := string(id) + "/" + worker
	w.seq[key]++
	body, err := protocol.Encode(&protocol.Envelope{
		V: protocol.V1, JobID: id, RunID: run, WorkerID: worker, Seq: w.seq[key],
		SentAt: w.clk.Now(), Heartbeat: &protocol.Heartbeat{}, Events: events,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.inbox.Send(body)
}

// workers plays every worker of every job once: it reads each job's
// command record and answers what it asks for, as real workers would.
func (w *world) workers(ids ...job.ID) {
	for _, id := range ids {
		cmds, err := w.store.GetCommands(w.ctx, id)
		if err != nil || cmds.Start == nil {
			continue
		}
		byWorker := map[string][]job.TaskAssignment{}
		for _, a := range cmds.Start.Assignments {
			byWorker[a.WorkerID] = append(byWorker[a.WorkerID], a)
		}
		for wk, as := range byWorker {
			key := func(what string, n int64) string {
				return string(id) + "/" + wk + "/" + what + "/" + string(rune('0'+cmds.RunID)) + "/" + time.Duration(n).String()
			}
			var evs []protocol.Event
			if !w.acted[key("up", 0)] {
				w.acted[key("up", 0)] = true
				evs = append(evs, protocol.Event{Kind: protocol.WorkerRegistered, Slots: 1})
				for _, a := range as {
					evs = append(evs, protocol.Event{Kind: protocol.TaskStarted, Operator: a.OperatorID, Subtask: a.Subtask})
				}
			}
			if cp := cmds.Checkpoint; cp != nil && !w.acted[key("cp", cp.Epoch)] {
				w.acted[key("cp", cp.Epoch)] = true
				for _, a := range as {
					evs = append(evs, protocol.Event{Kind: protocol.CheckpointCompleted, Operator: a.OperatorID, Subtask: a.Subtask, Epoch: cp.Epoch})
				}
			}
			if cmds.Stop != nil && !w.acted[key("stop", 0)] {
				w.acted[key("stop", 0)] = true
				for _, a := range as {
					evs = append(evs, protocol.Event{Kind: protocol.TaskFinished, Operator: a.OperatorID, Subtask: a.Subtask})
				}
			}
			w.send(id, cmds.RunID, wk, evs...)
		}
	}
}

// until moves the fake clock on in small steps, letting the manager's
// goroutines run and the simulated workers answer, until cond holds.
func (w *world) until(what string, cond func() bool, ids ...job.ID) {
	w.t.Helper()
	for i := 0; i < 3000; i++ {
		if cond() {
			return
		}
		if i%5 == 0 {
			w.workers(ids...)
		}
		w.clk.Advance(100 * time.Millisecond)
		time.Sleep(200 * time.Microsecond)
	}
	w.t.Fatalf("timed out waiting for %s", what)
}

func (w *world) stateIs(id job.ID, s job.State) func() bool {
	return func() bool {
		st, err := w.store.GetStatus(w.ctx, id)
		return err == nil && st.State == s
	}
}

func TestManagerRunsJobsFromTheIndexToRest(t *testing.T) {
	w := newWorld(t)
	w.putJob("a", nil)
	w.putJob("b", nil)
	stop := w.run(1)
	w.until("both jobs running", func() bool {
		return w.stateIs("a", job.Running)() && w.stateIs("b", job.Running)()
	}, "a", "b")
	w.until("a checkpoint of job a", func() bool {
		st, _ := w.store.MaxEpoch(w.ctx, "a")
		cps, _ := w.store.ListCheckpoints(w.ctx, "a")
		return st >= 1 && len(cps) > 0 && cps[0].State == job.CheckpointReady
	}, "a", "b")

	w.putJob("a", func(c *job.Config) { c.Stop = job.StopGraceful })
	w.until("job a stopped and parked", func() bool {
		refs, _ := w.store.ActiveJobs(w.ctx)
		return w.stateIs("a", job.Stopped)() && len(refs) == 1 && refs[0].ID == "b"
	}, "a", "b")
	if !w.stateIs("b", job.Running)() {
		t.Fatal("stopping job a disturbed job b")
	}

	// A parked job comes back when its config changes again.
	w.putJob("a", func(c *job.Config) { c.Stop = job.StopNone })
	w.until("job a running again", w.stateIs("a", job.Running), "a", "b")
	if st, _ := w.store.GetStatus(w.ctx, "a"); st.RunID != 2 {
		t.Fatalf("job a run id = %d, want 2", st.RunID)
	}
	if err := stop(); err != nil {
		t.Fatalf("manager: %v", err)
	}
}

func TestManagerDeadLettersMalformedMessagesAndKeepsGoing(t *testing.T) {
	w := newWorld(t)
	w.putJob("a", nil)
	w.run(1)
	w.inbox.Send([]byte(`{"v":1,"job":`))
	w.inbox.Send([]byte(`{"v":9,"job":"a","run":1,"worker":"w-0","seq":1,"sent_at":"2026-03-01T00:00:00Z"}`))
	w.until("job running despite bad messages", w.stateIs("a", job.Running), "a")
	w.until("bad messages dead-lettered", func() bool {
		// A rejected message is visible again at once and moves on its
		// next receive after the fifth.
		return len(w.inbox.Dead()) >= 2
	}, "a")
	for _, d := range w.inbox.Dead() {
		var v map[string]any
		if json.Unmarshal([]byte(d.Body), &v) == nil && v["v"] == float64(1) {
			t.Fatalf("a well-formed message was dead-lettered: %s", d.Body)
		}
	}
}

func TestManagerStopsWhenAnotherControllerOwnsAJob(t *testing.T) {
	w := newWorld(t)
	w.putJob("a", nil)
	_, ended := w.runWatched(1)
	w.until("job running", w.stateIs("a", job.Running), "a")
	st, _ := w.store.GetStatus(w.ctx, "a")
	if _, err := w.store.PutStatus(w.ctx, 2, st); err != nil {
		t.Fatal(err)
	}
	// The manager finds out at its next write: the status write for a
	// config version it has not acted on.
	w.putJob("a", func(c *job.Config) { c.CheckpointInterval += time.Second })
	var err error
	w.until("manager gives up", func() bool {
		select {
		case err = <-ended:
			return true
		default:
			return false
		}
	}, "a")
	if !errors.Is(err, state.ErrLostOwnership) {
		t.Fatalf("manager ended with %v, want lost ownership", err)
	}
}

func TestRunAsLeaderStopsWorkWhenTheLeaseIsLost(t *testing.T) {
	lease := memlease.New()
	clk := clock.NewFake(time.Unix(0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tenures := make(chan store.Fence, 4)
	ended := make(chan store.Fence, 4)
	done := make(chan error, 1)
	go func() {
		done <- RunAsLeader(ctx, lease.Contender("a"), clk, nil, func(ctx context.Context, f store.Fence) error {
			tenures <- f
			<-ctx.Done()
			ended <- f
			return nil
		})
	}()
	if f := <-tenures; f != 1 {
		t.Fatalf("first tenure fence = %d, want 1", f)
	}
	lease.Expire()
	if f := <-ended; f != 1 {
		t.Fatalf("tenure %d ended, want 1", f)
	}
	if f := <-tenures; f != 2 {
		t.Fatalf("second tenure fence = %d, want 2: fences must grow", f)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if <-ended != 2 {
		t.Fatal("second tenure did not end with the context")
	}
}

func TestManagerReportsTickLateness(t *testing.T) {
	w := newWorld(t)
	var mu sync.Mutex
	ticks := 0
	w.deps.OnTick = func(time.Duration) {
		mu.Lock()
		ticks++
		mu.Unlock()
	}
	w.putJob("a", nil)
	w.putJob("b", nil)
	w.run(1)
	w.until("ticks reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return ticks >= 10
	}, "a", "b")
}

// A tenure whose work fails at once (a broken dependency) is not retried in
// a tight loop: the next campaign waits, doubling.
func TestRunAsLeaderBacksOffAfterAFailingTenure(t *testing.T) {
	lease := memlease.New()
	clk := clock.NewFake(time.Unix(0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	tenures := make(chan store.Fence, 16)
	done := make(chan error, 1)
	go func() {
		done <- RunAsLeader(ctx, lease.Contender("a"), clk, nil, func(_ context.Context, f store.Fence) error {
			tenures <- f
			return errors.New("inbox: cannot reach the queue")
		})
	}()
	<-tenures
	// Wait until the loop sleeps on the clock, then check nothing ran.
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case f := <-tenures:
		t.Fatalf("tenure %d started again without a pause", f)
	case <-time.After(20 * time.Millisecond):
	}
	clk.Advance(500 * time.Millisecond)
	<-tenures
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
