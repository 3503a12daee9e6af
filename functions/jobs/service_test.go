package jobs_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/store/memstore"
	"github.com/weirstream/weir/functions/jobs"
)

type timers struct {
	mu  sync.Mutex
	at  map[job.ID]time.Time
	err error
}

func (f *timers) Set(_ context.Context, id job.ID, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.at[id] = at
	return nil
}

func (f *timers) Clear(_ context.Context, id job.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.at, id)
	return nil
}

type env struct {
	svc    *jobs.Service
	store  *memstore.Store
	timers *timers
	now    time.Time
}

func setup(t *testing.T) *env {
	t.Helper()
	e := &env{store: memstore.New(), timers: &timers{at: map[job.ID]time.Time{}}, now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	svc, err := jobs.New(jobs.Deps{Store: e.store, Timers: e.timers, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

func cfg(id job.ID, ttl time.Duration) job.Config {
	return job.Config{JobID: id, TTL: ttl, Spec: job.Spec{
		Operators: []job.Operator{{ID: "src", Parallelism: 1, Source: true}}, SlotsPerWorker: 1, Program: "p",
	}}
}

func (e *env) running(t *testing.T, id job.ID, started time.Time) {
	t.Helper()
	if _, err := e.store.PutStatus(t.Context(), 1, job.Status{JobID: id, State: job.Running, StartedAt: started}); err != nil {
		t.Fatal(err)
	}
}

func TestExpireStopsAJobPastItsTTL(t *testing.T) {
	e := setup(t)
	if _, err := e.svc.Create(t.Context(), cfg("late", time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.running(t, "late", e.now.Add(-2*time.Hour))
	out, err := e.svc.Expire(t.Context(), jobs.ExpiryEvent{JobID: "late"})
	if err != nil || out != jobs.Stopped {
		t.Fatalf("Expire = %s, %v; want stopped", out, err)
	}
	got, _ := e.store.GetConfig(t.Context(), "late")
	if got.Stop != job.StopImmediate || !strings.Contains(got.StopReason, "ttl: the job's TTL of 1h0m0s ran out at 2026-11-29T11:00:00Z") {
		t.Errorf("config after expiry: stop %s, reason %q", got.Stop, got.StopReason)
	}
	// A second firing is a no-op.
	writes := e.store.Writes()
	if out, err := e.svc.Expire(t.Context(), jobs.ExpiryEvent{JobID: "late"}); err != nil || out != jobs.Ignored {
		t.Errorf("second firing = %s, %v; want ignored", out, err)
	}
	if e.store.Writes() != writes {
		t.Error("a second firing wrote")
	}
}

func TestExpireMovesTheTimerOfAJobThatStartedLate(t *testing.T) {
	e := setup(t)
	if _, err := e.svc.Create(t.Context(), cfg("slow", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if at := e.timers.at["slow"]; !at.Equal(e.now.Add(time.Hour)) {
		t.Fatalf("timer at create = %v, want now+TTL", at)
	}
	e.running(t, "slow", e.now.Add(20*time.Minute))
	e.now = e.now.Add(time.Hour)
	out, err := e.svc.Expire(t.Context(), jobs.ExpiryEvent{JobID: "slow"})
	if err != nil || out != jobs.Moved {
		t.Fatalf("Expire = %s, %v; want moved", out, err)
	}
	if at, want := e.timers.at["slow"], e.now.Add(20*time.Minute); !at.Equal(want) {
		t.Errorf("timer moved to %v, want the true deadline %v", at, want)
	}
	if got, _ := e.store.GetConfig(t.Context(), "slow"); got.Stop.Requested() {
		t.Error("a job not yet due was stopped")
	}
	// Not started at all: the timer moves a TTL ahead.
	if _, err := e.svc.Create(t.Context(), cfg("idle", time.Minute)); err != nil {
		t.Fatal(err)
	}
	if out, _ := e.svc.Expire(t.Context(), jobs.ExpiryEvent{JobID: "idle"}); out != jobs.Moved || !e.timers.at["idle"].Equal(e.now.Add(time.Minute)) {
		t.Errorf("unstarted job: %s, timer %v", out, e.timers.at["idle"])
	}
}

func TestExpireIgnoresWhatHasNothingToStop(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	for _, id := range []job.ID{"rest", "nottl", "stopping"} {
		c := cfg(id, time.Minute)
		if id == "nottl" {
			c.TTL = 0
		}
		if id == "stopping" {
			c.Stop = job.StopGraceful
		}
		if _, err := e.svc.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.PutStatus(ctx, 1, job.Status{JobID: "rest", State: job.Stopped, StartedAt: e.now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	writes := e.store.Writes()
	for _, id := range []job.ID{"rest", "nottl", "stopping", "missing", "bad id!"} {
		if out, err := e.svc.Expire(ctx, jobs.ExpiryEvent{JobID: id}); err != nil || out != jobs.Ignored {
			t.Errorf("%s: %s, %v; want ignored", id, out, err)
		}
	}
	if e.store.Writes() != writes {
		t.Error("ignored firings wrote")
	}
}

func TestExpireRetriesAStoreFailure(t *testing.T) {
	e := setup(t)
	e.store.FailNext(errors.New("throttled"))
	if _, err := e.svc.Expire(t.Context(), jobs.ExpiryEvent{JobID: "any"}); err == nil {
		t.Error("a store failure was swallowed; Scheduler must retry the firing")
	}
}

func TestTimerFollowsTheConfig(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	v, err := e.svc.Create(ctx, cfg("j", 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.timers.at["j"]; ok {
		t.Error("a job without TTL got a timer")
	}
	e.running(t, "j", e.now.Add(-10*time.Minute))
	ttl := time.Hour
	if v, err = e.svc.Patch(ctx, "j", v.Config.Version, jobs.Change{TTL: &ttl}); err != nil {
		t.Fatal(err)
	}
	if at := e.timers.at["j"]; !at.Equal(e.now.Add(50 * time.Minute)) {
		t.Errorf("timer = %v, want start + TTL", at)
	}
	ttl = time.Minute
	if v, err = e.svc.Patch(ctx, "j", v.Config.Version, jobs.Change{TTL: &ttl}); err != nil {
		t.Fatal(err)
	}
	if at := e.timers.at["j"]; !at.Equal(e.now) {
		t.Errorf("timer of a TTL already past = %v, want now", at)
	}
	stop := job.StopForce
	if v, err = e.svc.Patch(ctx, "j", v.Config.Version, jobs.Change{Stop: &stop, Reason: "operator"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.timers.at["j"]; ok {
		t.Error("a stopped job keeps its timer")
	}
	if v.Config.StopReason != "operator" {
		t.Errorf("stop reason %q", v.Config.StopReason)
	}
	// A failing scheduler does not fail the write: the controller's own
	// TTL check still applies.
	e.timers.err = errors.New("scheduler down")
	none := job.StopNone
	if _, err := e.svc.Patch(ctx, "j", v.Config.Version, jobs.Change{Stop: &none}); err != nil {
		t.Errorf("patch with the scheduler down: %v", err)
	}
}

func TestPatchRefusesAStaleVersionAndInvalidChanges(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	if _, err := e.svc.Create(ctx, cfg("j", 0)); err != nil {
		t.Fatal(err)
	}
	var conflict *store.ConflictError
	if _, err := e.svc.Patch(ctx, "j", 5, jobs.Change{}); !errors.As(err, &conflict) || conflict.Current != 1 {
		t.Errorf("stale patch: %v", err)
	}
	short := time.Millisecond
	if _, err := e.svc.Patch(ctx, "j", 1, jobs.Change{CheckpointInterval: &short}); !errors.Is(err, jobs.ErrInvalid) {
		t.Errorf("invalid patch: %v", err)
	}
	if _, err := e.svc.Create(ctx, cfg("j", 0)); !errors.Is(err, jobs.ErrExists) {
		t.Errorf("second create: %v", err)
	}
	if got, _ := e.store.GetConfig(ctx, "j"); got.Version != 1 {
		t.Errorf("refused changes wrote: version %d", got.Version)
	}
}
