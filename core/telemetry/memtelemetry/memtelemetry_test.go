package memtelemetry

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/telemetry"
)

func TestRecordsEveryCallInOrder(t *testing.T) {
	r := New()
	r.Transition("a", job.Created, job.Scheduling, time.Second)
	r.Transition("b", job.Created, job.Scheduling, 0)
	r.Transition("a", job.Scheduling, job.Running, 2*time.Second)
	r.CheckpointFinished("a", 1, 300*time.Millisecond, true)
	r.CheckpointFinished("a", 2, time.Minute, false)
	r.Restarted("a", 1)
	r.Metrics("a", telemetry.JobMetrics{RecordsIn: 5})
	r.Metrics("b", telemetry.JobMetrics{RecordsIn: 7})
	r.Metrics("a", telemetry.JobMetrics{RecordsIn: 9})

	if got := r.States("a"); !slices.Equal(got, []job.State{job.Created, job.Scheduling, job.Running}) {
		t.Fatalf("States(a) = %v", got)
	}
	if got := r.States("zzz"); got != nil {
		t.Fatalf("States of an unknown job = %v", got)
	}
	if tr := r.Transitions(); len(tr) != 3 || tr[2] != (Transition{"a", job.Scheduling, job.Running, 2 * time.Second}) {
		t.Fatalf("Transitions = %+v", tr)
	}
	if cp := r.Checkpoints(); len(cp) != 2 || cp[1] != (Checkpoint{"a", 2, time.Minute, false}) {
		t.Fatalf("Checkpoints = %+v", cp)
	}
	if rs := r.Restarts(); len(rs) != 1 || rs[0] != (Restart{"a", 1}) {
		t.Fatalf("Restarts = %+v", rs)
	}
	if m, ok := r.LastMetrics("a"); !ok || m.RecordsIn != 9 {
		t.Fatalf("LastMetrics(a) = %+v, %v", m, ok)
	}
	if _, ok := r.LastMetrics("zzz"); ok {
		t.Fatal("LastMetrics of an unknown job reported something")
	}
	if n := len(r.AllMetrics()); n != 3 {
		t.Fatalf("%d metrics reports, want 3", n)
	}

	// Returned slices are copies.
	r.Transitions()[0].To = job.Failed
	if r.Transitions()[0].To != job.Scheduling {
		t.Fatal("a caller changed the recorded transitions")
	}
	r.Reset()
	if len(r.Transitions())+len(r.Checkpoints())+len(r.Restarts())+len(r.AllMetrics()) != 0 {
		t.Fatal("Reset kept something")
	}
}

func TestAwaitTransition(t *testing.T) {
	r := New()
	r.Transition("a", job.Created, job.Scheduling, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Already recorded.
	if tr, err := r.AwaitTransition(ctx, "a", job.Scheduling); err != nil || tr.From != job.Created {
		t.Fatalf("AwaitTransition = %+v, %v", tr, err)
	}
	// Recorded later, by another goroutine.
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		r.Transition("b", job.Scheduling, job.Running, 0)
		r.Transition("a", job.Scheduling, job.Running, time.Second)
	})
	tr, err := r.AwaitTransition(ctx, "a", job.Running)
	if err != nil || tr.In != time.Second {
		t.Fatalf("AwaitTransition = %+v, %v", tr, err)
	}

	short, cancelShort := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancelShort()
	if _, err := r.AwaitTransition(short, "a", job.Finished); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AwaitTransition of a state never entered = %v", err)
	}
}

func TestConcurrentRecording(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 100 {
				r.Metrics("a", telemetry.JobMetrics{RecordsIn: uint64(i)})
				r.Restarted("a", i)
				_ = r.Transitions()
			}
		})
	}
	wg.Wait()
	if len(r.AllMetrics()) != 800 || len(r.Restarts()) != 800 {
		t.Fatalf("recorded %d metrics and %d restarts, want 800 each", len(r.AllMetrics()), len(r.Restarts()))
	}
}
