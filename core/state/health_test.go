package state

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
)

// stored is the status as the store holds it.
func (h *harness) stored() job.Status {
	h.t.Helper()
	st, err := h.store.GetStatus(h.ctx, "orders")
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// workers lists the run's workers in a fixed order.
func (h *harness) workers() []string {
	var ws []string
	for w := range h.byWorker() {
		ws = append(ws, w)
	}
	sort.Strings(ws)
	return ws
}

// beat sends a heartbeat from w whose sources report `records` in and out
// in total (each source subtask half).
func (h *harness) beat(w string, records uint64) {
	h.t.Helper()
	env := h.envelope(w)
	for _, a := range h.byWorker()[w] {
		if a.OperatorID == "source" {
			env.Heartbeat.Metrics = append(env.Heartbeat.Metrics, protocol.TaskMetrics{
				Operator: a.OperatorID, Subtask: a.Subtask, RecordsIn: records / 2, RecordsOut: records / 2,
			})
		}
	}
	h.send(env)
}

func TestHealthSummaryIsWrittenWithTheStatus(t *testing.T) {
	cfg := testConfig()
	cfg.CheckpointInterval = time.Hour // no epoch moves the status here
	h := newHarness(t, cfg)
	// The job's phase is zero: the first summary 10 s in, the periodic
	// step a whole log interval after entering Running.
	h.deps.Rand = func() float64 { return 0 }
	h.m = NewMachine(h.deps, cfg, job.Status{})
	h.start()
	h.bringUp()
	ws := h.workers()
	if len(ws) < 2 {
		t.Fatalf("the test needs two workers, the layout has %v", ws)
	}
	entered := h.stored()
	if want := t0; !entered.Health.HeartbeatAt.Equal(want) || !entered.Health.TakenAt.Equal(want) {
		t.Fatalf("health written on entering Running = %+v, want heartbeat and taken at %s", entered.Health, want)
	}

	// Every worker reports 1,000 more records every 5 s, except that the
	// last one falls silent after 20 s.
	var records [16]uint64
	var lastOfSilent time.Time
	for i := 1; i <= 12; i++ {
		if i == 3 {
			// 10 s in: the run's first summary with rates was written.
			if first := h.stored(); first.Version != entered.Version+1 || first.Health.RecordsInPerSec == 0 || !first.Health.TakenAt.Equal(t0.Add(10*time.Second)) {
				t.Fatalf("10 s into Running the stored summary is %+v (version %d), want one with rates taken at %s", first.Health, first.Version, t0.Add(10*time.Second))
			}
		}
		h.advance(5 * time.Second)
		for k, w := range ws {
			if k == len(ws)-1 && i > 4 {
				continue
			}
			records[k] += 1000
			h.beat(w, records[k])
			if k == len(ws)-1 {
				lastOfSilent = h.clk.Now()
			}
		}
	}
	// 60 s in Running: the run's first summary (10 s in, once rates are
	// known) and the log interval's write took the summary.
	st := h.stored()
	if st.Version != entered.Version+2 {
		t.Fatalf("status written %d times in the first minute, want twice", st.Version-entered.Version)
	}
	hl := st.Health
	if !hl.HeartbeatAt.Equal(lastOfSilent) {
		t.Errorf("stored heartbeat_at = %s, want %s: the last heartbeat of the least recently heard worker", hl.HeartbeatAt, lastOfSilent)
	}
	if !hl.TakenAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("taken_at = %s, want %s", hl.TakenAt, t0.Add(time.Minute))
	}
	// The silent worker's 4,000 stop counting after 20 s, the others add
	// 1,000 each per 5 s: (len(ws)-1) * 200 records/s in, the same out,
	// split evenly between in and out (halves of 1,000 per 5 s each).
	want := float64(len(ws)-1) * 100
	if hl.RecordsInPerSec < want*0.9 || hl.RecordsInPerSec > want*1.5 || hl.RecordsOutPerSec != hl.RecordsInPerSec {
		t.Errorf("rates in %.2f, out %.2f; want about %.0f each", hl.RecordsInPerSec, hl.RecordsOutPerSec, want)
	}
	if !st.LastReadyAt.IsZero() || st.LastReadyEpoch != 0 {
		t.Errorf("no checkpoint was taken, but last ready %d at %s", st.LastReadyEpoch, st.LastReadyAt)
	}
}

// A steady, healthy job whose epoch does not move writes its status at
// most once per log interval: the summary never costs more writes than a
// job that checkpoints every minute already makes.
func TestHealthRefreshIsBoundedToOnePerLogInterval(t *testing.T) {
	cfg := testConfig()
	cfg.CheckpointInterval = time.Hour
	h := newHarness(t, cfg)
	h.start()
	h.bringUp()
	entered := h.stored()
	ws := h.workers()
	var n uint64
	for range 10 * 12 { // ten minutes of 5 s heartbeats at a steady rate
		h.advance(5 * time.Second)
		n += 500
		for _, w := range ws {
			h.beat(w, n)
		}
	}
	// One a minute, plus the run's first summary 10 s in.
	writes := h.stored().Version - entered.Version
	if writes > 11 {
		t.Errorf("%d status writes in ten minutes, want at most one a minute and the first summary", writes)
	}
	if writes < 10 {
		t.Errorf("%d status writes in ten minutes: the stored heartbeat was left to look older than the time-out", writes)
	}

	// Nothing moves when nothing is heard of and the rates hold: a stalled
	// job whose workers are not heard from is the time-out's business.
	if healthMoved(job.Health{HeartbeatAt: t0, RecordsInPerSec: 100}, job.Health{HeartbeatAt: t0, RecordsInPerSec: 105}, t0.Add(time.Minute), 30*time.Second) {
		t.Error("a 5% rate change counted as a move")
	}
	if !healthMoved(job.Health{HeartbeatAt: t0, RecordsInPerSec: 100}, job.Health{HeartbeatAt: t0, RecordsInPerSec: 0}, t0.Add(time.Minute), 30*time.Second) {
		t.Error("a stopped pipeline did not count as a move")
	}
}

// writes records every status the Machine writes.
type writes struct {
	*flakyStore
	mu  sync.Mutex
	all []job.Status
}

func (w *writes) PutStatus(ctx context.Context, f store.Fence, st job.Status) (job.Status, error) {
	out, err := w.flakyStore.PutStatus(ctx, f, st)
	if err == nil {
		w.mu.Lock()
		w.all = append(w.all, out)
		w.mu.Unlock()
	}
	return out, err
}

// written is the last status written in state s.
func (w *writes) written(t *testing.T, s job.State) job.Status {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.all) - 1; i >= 0; i-- {
		if w.all[i].State == s {
			return w.all[i]
		}
	}
	t.Fatalf("no status was written in state %s", s)
	return job.Status{}
}

func TestHealthAfterAWorkerTimedOut(t *testing.T) {
	h := newHarness(t, testConfig())
	rec := &writes{flakyStore: h.store}
	h.deps.Store = rec
	cfg, err := h.store.GetConfig(h.ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	h.m = NewMachine(h.deps, cfg, job.Status{})
	h.start()
	h.bringUp()
	ws := h.workers()
	// The first worker falls silent at once; the others keep beating
	// until the heartbeat time-out gives it up.
	timeout := h.deps.Settings.HeartbeatTimeout
	for h.m.State() == job.Running {
		h.advance(time.Second)
		for _, w := range ws[1:] {
			h.send(h.envelope(w))
		}
		if h.clk.Now().Sub(t0) > 2*timeout {
			t.Fatal("the silent worker was never given up on")
		}
	}
	st := rec.written(t, job.Recovering)
	failedAt := st.TransitionedAt
	if failedAt.Sub(t0) <= timeout {
		t.Fatalf("recovering at %s, before the time-out ran out", failedAt)
	}
	if st.Failure == nil || !st.Failure.At.Equal(failedAt) {
		t.Fatalf("last error %+v, want one recorded at %s", st.Failure, failedAt)
	}
	if !st.Health.HeartbeatAt.Equal(t0) {
		t.Errorf("heartbeat_at after the time-out = %s, want the silent worker's last, %s", st.Health.HeartbeatAt, t0)
	}
	if st.Health.RecordsInPerSec != 0 || st.Health.RecordsOutPerSec != 0 {
		t.Errorf("rates %+v while the run is torn down, want 0", st.Health)
	}

	// The next run starts with no heartbeat of its own: the summary does
	// not pass the old run's off as the new one's.
	h.advanceUntil(job.Scheduling, time.Minute)
	if st := rec.written(t, job.Scheduling); !st.Health.HeartbeatAt.IsZero() || st.RunID != 2 {
		t.Errorf("run %d scheduled with heartbeat_at %s, want none yet", st.RunID, st.Health.HeartbeatAt)
	}
	if st := h.stored(); st.Failure == nil || !st.Failure.At.Equal(failedAt) {
		t.Errorf("last error lost on rescheduling: %+v", st.Failure)
	}
}

func TestHealthOfAStoppedJob(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.update(func(c *job.Config) { c.Stop = job.StopImmediate })
	h.advanceUntil(job.Stopped, 5*time.Minute)
	st := h.stored()
	if !st.Health.HeartbeatAt.IsZero() || st.Health.RecordsInPerSec != 0 || !st.Health.TakenAt.Equal(st.TransitionedAt) {
		t.Errorf("a stopped job's health = %+v, want no heartbeat and no rates, taken when it stopped (%s)", st.Health, st.TransitionedAt)
	}
}

func TestLastReadyAtIsWhenTheEpochBecameReady(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.waitCheckpoint()
	epoch := h.answerCheckpoint()
	readyAt := h.clk.Now()
	// The epoch reaches the store with the next status write; a config
	// change applied live makes one now.
	h.update(func(c *job.Config) { c.CheckpointInterval = time.Hour })
	st := h.stored()
	if st.LastReadyEpoch != epoch || !st.LastReadyAt.Equal(readyAt) {
		t.Errorf("stored last ready %d at %s, want %d at %s", st.LastReadyEpoch, st.LastReadyAt, epoch, readyAt)
	}
}
