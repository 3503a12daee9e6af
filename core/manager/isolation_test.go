package manager

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/telemetry/memtelemetry"
)

// gatedStore blocks or fails chosen writes of chosen jobs, to play a slow
// or failing DynamoDB for one job while the others are served.
type gatedStore struct {
	store.Store
	mu sync.Mutex
	// gate, when set for a job, holds its status writes until closed;
	// entered is signalled when one is held.
	gate    map[job.ID]chan struct{}
	entered chan job.ID
	// failCommands fails that many command-record writes of the job.
	failCommands map[job.ID]int
	// failStatus fails that many status writes of the job.
	failStatus map[job.ID]int
}

func newGatedStore(s store.Store) *gatedStore {
	return &gatedStore{
		Store: s, gate: map[job.ID]chan struct{}{}, entered: make(chan job.ID, 16),
		failCommands: map[job.ID]int{}, failStatus: map[job.ID]int{},
	}
}

var errInjected = errors.New("injected: service unavailable")

func (g *gatedStore) PutStatus(ctx context.Context, f store.Fence, st job.Status) (job.Status, error) {
	g.mu.Lock()
	gate := g.gate[st.JobID]
	fail := g.failStatus[st.JobID] > 0
	if fail {
		g.failStatus[st.JobID]--
	}
	g.mu.Unlock()
	if gate != nil {
		g.entered <- st.JobID
		select {
		case <-gate:
		case <-ctx.Done():
			return job.Status{}, ctx.Err()
		}
	}
	if fail {
		return job.Status{}, errInjected
	}
	return g.Store.PutStatus(ctx, f, st)
}

func (g *gatedStore) PutCommands(ctx context.Context, f store.Fence, c job.Commands) (job.Commands, error) {
	g.mu.Lock()
	fail := g.failCommands[c.JobID] > 0
	if fail {
		g.failCommands[c.JobID]--
	}
	g.mu.Unlock()
	if fail {
		return job.Commands{}, errInjected
	}
	return g.Store.PutCommands(ctx, f, c)
}

func (g *gatedStore) hold(id job.ID) func() {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch := make(chan struct{})
	g.gate[id] = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			delete(g.gate, id)
			g.mu.Unlock()
			close(ch)
		})
	}
}

func (w *world) gated() *gatedStore {
	g := newGatedStore(w.store)
	w.deps.Store = g
	return g
}

func (w *world) status(id job.ID) job.Status {
	st, err := w.store.GetStatus(w.ctx, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}

// One job stuck for a long time in a store call holds up no other: their
// messages are still applied (no worker times out) and their ticks stay on
// time (checkpoints go on).
func TestSlowJobDoesNotHoldUpOthers(t *testing.T) {
	w := newWorld(t)
	g := w.gated()
	for _, id := range []job.ID{"a", "b", "slow"} {
		w.putJob(id, nil)
	}
	w.run(1)
	w.until("every job running", func() bool {
		return w.stateIs("a", job.Running)() && w.stateIs("b", job.Running)() && w.stateIs("slow", job.Running)()
	}, "a", "b", "slow")

	release := g.hold("slow")
	defer release()
	// A live config change makes the slow job write its status: held.
	w.putJob("slow", func(c *job.Config) { c.CheckpointInterval = 20 * time.Second })
	w.until("the slow job's write is held", func() bool {
		select {
		case <-g.entered:
			return true
		default:
			return false
		}
	}, "a", "b", "slow")
	epochA, _ := w.store.MaxEpoch(w.ctx, "a")
	// Twice the heartbeat time-out passes while the slow job is stuck.
	start := w.clk.Now()
	timeout := w.deps.Settings.HeartbeatTimeout
	w.until("two heartbeat time-outs", func() bool { return w.clk.Now().Sub(start) > 2*timeout }, "a", "b", "slow")
	for _, id := range []job.ID{"a", "b"} {
		if st := w.status(id); st.State != job.Running || st.Restarts != 0 {
			t.Fatalf("job %s is %s with %d restarts while another job was stuck: %+v", id, st.State, st.Restarts, st.Failure)
		}
	}
	if got, _ := w.store.MaxEpoch(w.ctx, "a"); got < epochA+3 {
		t.Fatalf("job a went from epoch %d to %d in %s: its ticks were held up", epochA, got, 2*timeout)
	}
	release()
	// The slow job's own workers kept heartbeating into its mailbox, so
	// once unstuck it carries on rather than timing them out.
	w.until("the slow job checkpoints again", func() bool {
		cps, _ := w.store.ListCheckpoints(w.ctx, "slow")
		return len(cps) > 0 && cps[len(cps)-1].StartedAt.After(start.Add(2*timeout))
	}, "a", "b", "slow")
	if st := w.status("slow"); st.State != job.Running {
		t.Fatalf("slow job is %s after it was unstuck, want Running", st.State)
	}
}

// A job's loop that ends (its take-over write failed) and is started again
// gets the messages that arrived meanwhile: they wait in its mailbox, and
// no other job's deliveries stop.
func TestMessagesWaitForTheNextLoopOfAJob(t *testing.T) {
	w := newWorld(t)
	g := w.gated()
	w.putJob("a", nil)
	w.putJob("b", nil)
	// Job a's first status write (its take-over) fails a few times: its
	// loop ends and is started again with back-off.
	g.failStatus["a"] = 3
	w.run(1)
	w.until("both jobs running", func() bool {
		return w.stateIs("a", job.Running)() && w.stateIs("b", job.Running)()
	}, "a", "b")
	if st := w.status("a"); st.RunID != 1 || st.Restarts != 0 {
		t.Fatalf("job a: run %d, restarts %d; want run 1 without restarts", st.RunID, st.Restarts)
	}
	w.until("every message settled", func() bool { return w.inbox.InFlight() == 0 && w.inbox.Len() == 0 }, "a", "b")
	if dead := w.inbox.Dead(); len(dead) != 0 {
		t.Fatalf("%d messages dead-lettered", len(dead))
	}
}

// Registration sent while a state's entry is being retried (the start
// command cannot be written yet) is not lost: it waits in the mailbox and
// is applied once the entry succeeds, so the run comes up without the
// workers sending it again.
func TestMessagesSentWhileEntryIsRetriedAreKept(t *testing.T) {
	w := newWorld(t)
	g := w.gated()
	g.failCommands["a"] = 4
	w.putJob("a", nil)
	w.run(1)
	w.until("workers launched", func() bool { return len(w.fleet.Running("a")) > 0 })
	// The workers register and start their tasks once, while the start
	// command still cannot be written.
	for _, wk := range []string{"w-0", "w-1"} {
		sub := 0
		if wk == "w-1" {
			sub = 1
		}
		w.send("a", 1, wk,
			protocol.Event{Kind: protocol.WorkerRegistered, Slots: 1},
			protocol.Event{Kind: protocol.TaskStarted, Operator: "src", Subtask: sub},
			protocol.Event{Kind: protocol.TaskStarted, Operator: "sink", Subtask: sub})
	}
	w.until("job running on the registrations sent during the retries", func() bool {
		// Heartbeats only: nothing is sent again.
		for _, wk := range []string{"w-0", "w-1"} {
			w.send("a", 1, wk)
		}
		return w.stateIs("a", job.Running)()
	})
}

// A job's gauges are dropped when it comes to rest here, and every job's
// when the tenure ends: a successor reports them from then on.
func TestGaugesAreForgottenWhenAJobRestsAndWhenTheTenureEnds(t *testing.T) {
	w := newWorld(t)
	rec := memtelemetry.New()
	w.deps.Telemetry = rec
	w.putJob("a", nil)
	w.putJob("b", nil)
	stop := w.run(1)
	w.until("both jobs running", func() bool {
		return w.stateIs("a", job.Running)() && w.stateIs("b", job.Running)()
	}, "a", "b")
	w.putJob("a", func(c *job.Config) { c.Stop = job.StopImmediate })
	w.until("job a parked and forgotten", func() bool {
		return slices.Contains(rec.Forgotten(), "a")
	}, "a", "b")
	if slices.Contains(rec.Forgotten(), "b") {
		t.Fatal("job b was forgotten while it still runs here")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rec.Forgotten(), "b") {
		t.Fatal("job b's gauges outlived the tenure")
	}
}

// sendState puts a v2 envelope on the queue: the worker's whole state,
// every task running.
func (w *world) sendState(id job.ID, run int64, worker string, tasks []job.TaskAssignment) {
	w.t.Helper()
	key := string(id) + "/" + worker
	w.seq[key]++
	env := &protocol.Envelope{V: protocol.V2, JobID: id, RunID: run, WorkerID: worker, Seq: w.seq[key],
		SentAt: w.clk.Now(), Slots: 1}
	for _, a := range tasks {
		env.Tasks = append(env.Tasks, protocol.Task{Operator: a.OperatorID, Subtask: a.Subtask, State: protocol.Running})
	}
	body, err := protocol.Encode(env)
	if err != nil {
		w.t.Fatal(err)
	}
	w.inbox.Send(body)
}

// A controller that takes over while a job's workers start adopts the run
// (no new launch) and, because every heartbeat carries the worker's whole
// state, reaches Running within one heartbeat interval, although the
// registrations went to its predecessor.
func TestTakeoverDuringSchedulingReachesRunningWithinAHeartbeat(t *testing.T) {
	w := newWorld(t)
	w.putJob("a", nil)
	stop := w.run(1)
	w.until("workers launched", func() bool { return len(w.fleet.Running("a")) > 0 })
	cmds, err := w.store.GetCommands(w.ctx, "a")
	for err != nil || cmds.Start == nil {
		time.Sleep(time.Millisecond)
		cmds, err = w.store.GetCommands(w.ctx, "a")
	}
	by := map[string][]job.TaskAssignment{}
	for _, a := range cmds.Start.Assignments {
		by[a.WorkerID] = append(by[a.WorkerID], a)
	}
	// The workers register with the first leader, whose tenure then ends
	// before it has seen them all start.
	for wk, as := range by {
		w.sendState("a", 1, wk, as[:0])
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := w.status("a"); st.State != job.Scheduling {
		t.Fatalf("job is %s at take-over, want Scheduling", st.State)
	}
	launches := len(w.fleet.Starts())
	w.run(2)
	start := w.clk.Now()
	interval := protocol.DefaultHeartbeatInterval
	w.until("job running under the new leader", func() bool {
		// Each worker's next heartbeat, one interval after the last.
		if w.clk.Now().Sub(start) >= interval/2 && !w.acted["beat"] {
			w.acted["beat"] = true
			for wk, as := range by {
				w.sendState("a", 1, wk, as)
			}
		}
		return w.stateIs("a", job.Running)()
	})
	if took := w.clk.Now().Sub(start); took > interval {
		t.Fatalf("took %s to reach Running after the take-over, want within one heartbeat interval (%s)", took, interval)
	}
	if st := w.status("a"); st.RunID != 1 || len(w.fleet.Starts()) != launches {
		t.Fatalf("run %d after %d launches (from %d): the take-over started a new run", st.RunID, len(w.fleet.Starts()), launches)
	}
}
