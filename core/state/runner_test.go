package state

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

// runnerHarness drives a Runner in its own goroutine. Messages go through
// an unbuffered channel, so when a send returns the runner has finished
// the step before it (including any overdue tick).
type runnerHarness struct {
	*harness
	r      *Runner
	mb     *Mailbox
	cancel context.CancelFunc
	done   chan error
}

func startRunner(t *testing.T, cfg job.Config) *runnerHarness {
	h := newHarness(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	rh := &runnerHarness{harness: h, cancel: cancel, done: make(chan error, 1)}
	rh.mb = NewMailbox(0)
	rh.r = NewRunner(h.m, rh.mb, nil)
	go func() { rh.done <- rh.r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-rh.done; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	return rh
}

// deliver hands one envelope to the runner and waits until it is handled.
func (rh *runnerHarness) deliver(env *protocol.Envelope) {
	rh.t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	if err := rh.mb.Put(Inbound{Env: env, Done: wg.Done}); err != nil {
		rh.t.Fatal(err)
	}
	wg.Wait()
}

// sync waits until the runner has taken everything sent so far: a
// duplicate heartbeat is a no-op message that needs a full loop pass.
func (rh *runnerHarness) sync() {
	rh.t.Helper()
	env := rh.envelope("w-0")
	env.RunID = -1 // another run: handled and dropped
	rh.deliver(env)
	rh.deliver(env)
}

// bringUp registers the workers and starts their tasks through the
// runner, then lets one tick move the job to Running.
func (rh *runnerHarness) bringUp() {
	rh.t.Helper()
	rh.sync()
	for w := range rh.byWorker() {
		rh.deliver(rh.envelope(w, protocol.Event{Kind: protocol.WorkerRegistered, Slots: 1}))
	}
	for w, as := range rh.byWorker() {
		var evs []protocol.Event
		for _, a := range as {
			evs = append(evs, protocol.Event{Kind: protocol.TaskStarted, Operator: a.OperatorID, Subtask: a.Subtask})
		}
		rh.deliver(rh.envelope(w, evs...))
	}
	rh.clk.Advance(200 * time.Millisecond)
	rh.sync()
	if got := rh.r.State(); got != job.Running {
		rh.t.Fatalf("state = %s, want Running", got)
	}
}

func TestRunnerTickHoldsUnderMessageFlood(t *testing.T) {
	cfg := testConfig()
	cfg.TTL = 20 * time.Second
	rh := startRunner(t, cfg)
	rh.bringUp()
	ticksBefore := rh.r.Ticks()
	start := rh.clk.Now()
	// A heartbeat every 2 ms for 19.9 s: ten thousand messages, and the
	// ticker channel is never read (the fake clock fires it, but the
	// runner is busy with messages whenever it looks).
	for rh.clk.Now().Sub(start) < 19900*time.Millisecond {
		rh.clk.Advance(2 * time.Millisecond)
		rh.deliver(rh.envelope("w-0"))
		rh.deliver(rh.envelope("w-1"))
	}
	elapsed := rh.clk.Now().Sub(start)
	ticks := rh.r.Ticks() - ticksBefore
	// Plain heartbeats bring nothing on: the quiet job ticks once per
	// IdleTicks intervals, flood or not.
	want := int(elapsed / (IdleTicks * 200 * time.Millisecond))
	if ticks < want-1 {
		t.Fatalf("%d ticks in %s of message flood, want about %d: the flood delayed the tick", ticks, elapsed, want)
	}
	if ticks > want+2 {
		t.Fatalf("%d ticks in %s of message flood, want about %d: plain heartbeats brought ticks on", ticks, elapsed, want)
	}
	if got := rh.r.State(); got != job.Running {
		t.Fatalf("state = %s before the TTL, want Running", got)
	}
	// The TTL (20 s after start) fires on the first tick past it, flood or not.
	for i := 0; i < 200; i++ {
		rh.clk.Advance(2 * time.Millisecond)
		rh.deliver(rh.envelope("w-0"))
	}
	if got := rh.r.State(); got != job.Stopping {
		t.Fatalf("state = %s 0.4 s past the TTL under a flood, want Stopping", got)
	}
}

func TestRunnerDetectsSilentWorkerUnderFlood(t *testing.T) {
	rh := startRunner(t, testConfig())
	rh.bringUp()
	// w-0 floods, w-1 falls silent.
	timeout := rh.deps.Settings.HeartbeatTimeout
	start := rh.clk.Now()
	for rh.clk.Now().Sub(start) < timeout+300*time.Millisecond {
		rh.clk.Advance(5 * time.Millisecond)
		rh.deliver(rh.envelope("w-0"))
	}
	if got := rh.r.State(); got != job.Recovering {
		t.Fatalf("state = %s %s after w-1 fell silent, want Recovering", got, rh.clk.Now().Sub(start))
	}
}

func TestRunnerParksAJobAtRest(t *testing.T) {
	cfg := testConfig()
	cfg.Stop = job.StopImmediate
	h := newHarness(t, cfg)
	parked := make(chan int64, 1)
	r := NewRunner(h.m, NewMailbox(0), func(_ context.Context, id job.ID, v int64) error {
		parked <- v
		return h.store.Park(context.Background(), 1, id, v)
	})
	if err := r.Run(context.Background()); !errors.Is(err, ErrParked) {
		t.Fatalf("Run = %v, want ErrParked", err)
	}
	if v := <-parked; v != 1 {
		t.Fatalf("parked at config version %d, want 1", v)
	}
	refs, _ := h.store.ActiveJobs(context.Background())
	if len(refs) != 0 {
		t.Fatalf("active jobs after parking: %v", refs)
	}
}

func TestRunnerReportsHowLateEachTickRan(t *testing.T) {
	h := newHarness(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	late := make(chan time.Duration, 16)
	r := NewRunner(h.m, NewMailbox(0), nil)
	r.OnTick(func(d time.Duration) { late <- d })
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	}()
	next := func() time.Duration {
		t.Helper()
		select {
		case d := <-late:
			return d
		case <-time.After(5 * time.Second):
			t.Fatal("no tick reported")
			return 0
		}
	}
	// Wait until Run has read its first deadline (the ticker exists once
	// it has), then run the first tick 50 ms past it, the second on time.
	for deadline := time.Now().Add(5 * time.Second); h.clk.Waiters() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the runner never started its ticker")
		}
		time.Sleep(time.Millisecond)
	}
	h.clk.Advance(250 * time.Millisecond)
	if d := next(); d != 50*time.Millisecond {
		t.Fatalf("first tick reported %s late, want 50ms", d)
	}
	// The runner arms its timer for the next tick on the grid of the first
	// deadline: the next grid point, or a later one while the job is quiet
	// (ticks lapse). Run it exactly then: it is not late.
	var at time.Time
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if d, ok := h.clk.NextDeadline(); ok && d.After(h.clk.Now()) {
			at = d
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the runner never armed its timer for the second tick")
		}
	}
	if off := at.Sub(t0.Add(200*time.Millisecond)) % (200 * time.Millisecond); off != 0 {
		t.Fatalf("second tick armed for %s, %s off the grid of the first deadline", at, off)
	}
	h.clk.Set(at)
	if d := next(); d != 0 {
		t.Fatalf("second tick reported %s late, want 0 (the cadence is kept from the first deadline)", d)
	}
}

// A park that keeps failing is retried with back-off, not on every pass.
func TestRunnerBacksOffAFailingPark(t *testing.T) {
	cfg := testConfig()
	cfg.Stop = job.StopImmediate
	h := newHarness(t, cfg)
	var mu sync.Mutex
	calls := 0
	r := NewRunner(h.m, NewMailbox(0), func(context.Context, job.ID, int64) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return errors.New("throttled")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	// Ten seconds of ticks: 50 passes of the loop.
	for range 50 {
		for h.clk.Waiters() == 0 {
			time.Sleep(100 * time.Microsecond)
		}
		h.clk.Advance(200 * time.Millisecond)
		time.Sleep(200 * time.Microsecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Back-off from 500 ms doubling: about 5 tries in 10 s, never 50.
	if calls < 2 || calls > 8 {
		t.Fatalf("%d park attempts in 10 s, want a handful (back-off)", calls)
	}
}

// settle waits until the runner sleeps on a timer in the future with its
// mailbox empty: it has done all that the clock's time brought on.
func (rh *runnerHarness) settle() {
	rh.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if at, ok := rh.clk.NextDeadline(); ok && at.After(rh.clk.Now()) && rh.mb.Len() == 0 {
			return
		}
		if time.Now().After(deadline) {
			rh.t.Fatal("the runner never went back to sleep")
		}
		runtime.Gosched()
	}
}

// quietConfig is testConfig with no checkpoint due for an hour.
func quietConfig() job.Config {
	cfg := testConfig()
	cfg.CheckpointInterval = time.Hour
	return cfg
}

// A running job with nothing due lets ticks lapse: it ticks once per
// IdleTicks intervals, not once per interval.
func TestRunnerLetsTicksLapseWhileQuiet(t *testing.T) {
	rh := startRunner(t, quietConfig())
	rh.bringUp()
	rh.settle()
	before := rh.r.Ticks()
	for range 50 { // 10 s
		rh.clk.Advance(200 * time.Millisecond)
		rh.settle()
	}
	ticks := rh.r.Ticks() - before
	if ticks < 9 || ticks > 12 {
		t.Fatalf("%d ticks in 10 s of quiet, want about 10 (one per %d intervals)", ticks, IdleTicks)
	}
	if got := rh.r.State(); got != job.Running {
		t.Fatalf("state = %s, want Running", got)
	}
}

// A message that brings something on is acted on at once, even when the
// job's loop was letting ticks lapse.
func TestRunnerActsOnAMessageAtOnceWhileQuiet(t *testing.T) {
	rh := startRunner(t, quietConfig())
	rh.bringUp()
	rh.settle()
	for range 3 { // past the next grid point, before the idle tick
		rh.clk.Advance(200 * time.Millisecond)
		rh.settle()
	}
	before := rh.r.Ticks()
	rh.deliver(rh.envelope("w-0", protocol.Event{Kind: protocol.TaskFailed, Operator: "source", Subtask: 0,
		Error: "boom", Domain: job.DomainExternal, Retry: protocol.RetryBackoff}))
	rh.sync() // the loop pass that took the failure has ended
	if rh.r.Ticks() == before {
		t.Fatal("no tick after the failure: it waits for the idle tick")
	}
	if got := rh.r.State(); got == job.Running {
		t.Fatalf("state = %s right after a task failure, want it left", got)
	}
}

// A failure reported between two grid points is acted on at once, not at
// the next grid point: reacting to it is what the job waits for.
func TestRunnerActsOnAFailureWithoutWaitingForTheGrid(t *testing.T) {
	rh := startRunner(t, quietConfig())
	rh.bringUp()
	rh.settle()
	before := rh.r.Ticks()
	rh.deliver(rh.envelope("w-0", protocol.Event{Kind: protocol.TaskFailed, Operator: "source", Subtask: 0,
		Error: "boom", Domain: job.DomainExternal, Retry: protocol.RetryBackoff}))
	rh.sync() // the clock has not moved: no grid point has come
	if rh.r.Ticks() == before {
		t.Fatal("no tick after the failure: it waits for the next grid point")
	}
	if got := rh.r.State(); got == job.Running {
		t.Fatalf("state = %s right after a task failure, want it left", got)
	}
}

// Silent workers are found out within an interval of their time-out
// although no message comes to wake the loop.
func TestRunnerDetectsSilenceWhileQuiet(t *testing.T) {
	rh := startRunner(t, quietConfig())
	rh.bringUp()
	rh.settle()
	timeout := rh.deps.Settings.HeartbeatTimeout
	start := rh.clk.Now()
	for rh.r.State() == job.Running {
		if rh.clk.Now().Sub(start) > timeout+time.Second {
			t.Fatalf("still Running %s after the workers fell silent (time-out %s)", rh.clk.Now().Sub(start), timeout)
		}
		rh.clk.Advance(100 * time.Millisecond)
		rh.settle()
	}
	if late := rh.clk.Now().Sub(start) - timeout; late > 2*rh.deps.Settings.ProgressInterval {
		t.Fatalf("silence found %s after the time-out, want within two intervals", late)
	}
}
