package memfleet

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
)

func request(id job.ID, run int64) fleet.Request {
	return fleet.Request{JobID: id, RunID: run, Workers: []string{"w-0", "w-1"}, SlotsPerWorker: 2, Program: "img:1"}
}

func TestStartAndStopTrackRunningRuns(t *testing.T) {
	ctx := context.Background()
	l := New()
	for _, req := range []fleet.Request{request("a", 1), request("a", 2), request("a", 3), request("b", 1)} {
		if err := l.Start(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.Running("a"); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("running runs of a = %v", got)
	}
	if err := l.Stop(ctx, "a", 2); err != nil {
		t.Fatal(err)
	}
	if got := l.Running("a"); !slices.Equal(got, []int64{3}) {
		t.Fatalf("after Stop(a, 2) running = %v, want [3]", got)
	}
	if got := l.Running("b"); !slices.Equal(got, []int64{1}) {
		t.Fatalf("Stop of a touched b: %v", got)
	}
	if err := l.Stop(ctx, "a", 0); err != nil {
		t.Fatal(err)
	}
	if got := l.Running("a"); len(got) != 0 {
		t.Fatalf("after Stop(a, 0) running = %v", got)
	}
	if got := l.Jobs(); !slices.Equal(got, []job.ID{"b"}) {
		t.Fatalf("jobs = %v", got)
	}
	// Stopping what is not running is not an error.
	if err := l.Stop(ctx, "zzz", 0); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Stops()); n != 3 {
		t.Fatalf("%d stops recorded, want 3", n)
	}
}

func TestStartIsIdempotent(t *testing.T) {
	ctx := context.Background()
	l := New()
	for range 2 {
		if err := l.Start(ctx, request("a", 1)); err != nil {
			t.Fatal(err)
		}
	}
	if len(l.Starts()) != 2 || !slices.Equal(l.Running("a"), []int64{1}) {
		t.Fatalf("starts %d, running %v", len(l.Starts()), l.Running("a"))
	}
	req, ok := l.Request("a", 1)
	if !ok || req.Program != "img:1" || !slices.Equal(req.Workers, []string{"w-0", "w-1"}) {
		t.Fatalf("request = %+v, %v", req, ok)
	}
}

func TestFailNextFailsOneCallAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	l := New()
	boom := errors.New("capacity unavailable")
	l.FailNext(boom)
	if err := l.Start(ctx, request("a", 1)); !errors.Is(err, boom) {
		t.Fatalf("Start = %v, want the injected failure", err)
	}
	if len(l.Running("a")) != 0 {
		t.Fatal("a failed Start left the run running")
	}
	if err := l.Start(ctx, request("a", 1)); err != nil {
		t.Fatalf("the failure outlived one call: %v", err)
	}
	l.FailNext(boom)
	if err := l.Stop(ctx, "a", 0); !errors.Is(err, boom) {
		t.Fatalf("Stop = %v, want the injected failure", err)
	}
	if len(l.Running("a")) != 1 {
		t.Fatal("a failed Stop stopped the run")
	}
	starts, stops := l.Starts(), l.Stops()
	if len(starts) != 2 || !errors.Is(starts[0].Err, boom) || starts[1].Err != nil {
		t.Fatalf("starts = %+v", starts)
	}
	if len(stops) != 1 || !errors.Is(stops[0].Err, boom) {
		t.Fatalf("stops = %+v", stops)
	}
}

func TestBadRequestsAreRefused(t *testing.T) {
	ctx := context.Background()
	for name, mutate := range map[string]func(*fleet.Request){
		"bad job":       func(r *fleet.Request) { r.JobID = "" },
		"run zero":      func(r *fleet.Request) { r.RunID = 0 },
		"no workers":    func(r *fleet.Request) { r.Workers = nil },
		"repeat worker": func(r *fleet.Request) { r.Workers = []string{"w", "w"} },
		"empty worker":  func(r *fleet.Request) { r.Workers = []string{""} },
		"no slots":      func(r *fleet.Request) { r.SlotsPerWorker = 0 },
		"no program":    func(r *fleet.Request) { r.Program = "" },
	} {
		l := New()
		req := request("a", 1)
		mutate(&req)
		if err := l.Start(ctx, req); err == nil {
			t.Errorf("%s: Start accepted %+v", name, req)
		}
		if len(l.Jobs()) != 0 {
			t.Errorf("%s: a refused request left a run running", name)
		}
	}
	if err := New().Stop(ctx, "a", -1); err == nil {
		t.Error("Stop accepted a negative run id")
	}
}

func TestHooksRunAfterSuccessfulCalls(t *testing.T) {
	ctx := context.Background()
	l := New()
	var started []int64
	var stopped []int64
	l.OnStart(func(r fleet.Request) {
		// Hooks run outside the lock, so they may call the launcher.
		started = append(started, r.RunID)
		_ = l.Running(r.JobID)
	})
	l.OnStop(func(_ job.ID, run int64) { stopped = append(stopped, run) })
	l.FailNext(errors.New("no"))
	_ = l.Start(ctx, request("a", 1))
	_ = l.Start(ctx, request("a", 2))
	_ = l.Stop(ctx, "a", 2)
	if !slices.Equal(started, []int64{2}) || !slices.Equal(stopped, []int64{2}) {
		t.Fatalf("hooks saw starts %v and stops %v", started, stopped)
	}
}

func TestCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := New()
	if err := l.Start(ctx, request("a", 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start = %v", err)
	}
	if err := l.Stop(ctx, "a", 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop = %v", err)
	}
	if len(l.Starts())+len(l.Stops()) != 0 {
		t.Fatal("calls that never reached the launcher were recorded")
	}
}
