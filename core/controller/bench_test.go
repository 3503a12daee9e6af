package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store/memstore"
)

// benchRun builds a running job of n subtasks: up to four operators of
// equal parallelism on workers of four slots, every worker registered and
// every task started, no checkpoint due.
func benchRun(b *testing.B, n int) (*JobController, Layout, *clock.Fake) {
	b.Helper()
	ops := min(4, n)
	cfg := job.Config{JobID: testJob, Spec: job.Spec{SlotsPerWorker: 4, Program: "p"}, CheckpointInterval: time.Hour}
	for i := range ops {
		cfg.Spec.Operators = append(cfg.Spec.Operators, job.Operator{ID: fmt.Sprintf("op-%d", i), Parallelism: n / ops, Source: i == 0})
	}
	l := NewLayout(cfg)
	clk := clock.NewFake(t0)
	c := New(Deps{Store: memstore.New(), Clock: clk, Fence: 1, Rand: func() float64 { return 0.5 }},
		Run{JobID: testJob, RunID: 1, Layout: l, Program: "p", Restore: Restore{NextEpoch: 1, MinEpoch: 1}, CheckpointInterval: time.Hour})
	b.Cleanup(c.Close)
	if err := c.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	seq := map[string]uint64{}
	send := func(w string, evs ...protocol.Event) {
		seq[w]++
		if err := c.HandleMessage(&protocol.Envelope{V: 1, JobID: testJob, RunID: 1, WorkerID: w, Seq: seq[w], Events: evs}); err != nil {
			b.Fatal(err)
		}
	}
	for _, w := range l.Workers {
		send(w, protocol.Event{Kind: protocol.WorkerRegistered, Slots: 4})
	}
	for _, a := range l.Assignments {
		send(a.WorkerID, protocol.Event{Kind: protocol.TaskStarted, Operator: a.OperatorID, Subtask: a.Subtask})
	}
	if r, total := c.TasksRunning(); r != total || total != n {
		b.Fatalf("%d of %d tasks running, want %d", r, total, n)
	}
	return c, l, clk
}

func BenchmarkProgressIdle(b *testing.B) {
	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("subtasks=%d", n), func(b *testing.B) {
			c, _, _ := benchRun(b, n)
			ctx := context.Background()
			if _, err := c.Progress(ctx); err != nil { // anchors the schedule, first metrics
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				p, err := c.Progress(ctx)
				if err != nil || p.Kind != Continue {
					b.Fatalf("Progress = %v, %v", p.Kind, err)
				}
			}
			if c.CheckpointInFlight() {
				b.Fatal("a checkpoint started: the run was not idle")
			}
		})
	}
}

func BenchmarkHeartbeat(b *testing.B) {
	c, l, _ := benchRun(b, 1000)
	w := l.Workers[len(l.Workers)/2]
	env := &protocol.Envelope{V: 1, JobID: testJob, RunID: 1, WorkerID: w, Seq: 1000, Heartbeat: &protocol.Heartbeat{}}
	for _, a := range l.Assignments {
		if a.WorkerID == w {
			env.Heartbeat.Metrics = append(env.Heartbeat.Metrics, protocol.TaskMetrics{
				Operator: a.OperatorID, Subtask: a.Subtask, RecordsIn: 1e6, RecordsOut: 1e6,
				BytesIn: 1e8, BytesOut: 1e8, Backpressure: 0.1, WatermarkMs: t0.UnixMilli(),
			})
		}
	}
	b.ReportMetric(float64(len(env.Heartbeat.Metrics)), "subtasks/heartbeat")
	b.ReportAllocs()
	for b.Loop() {
		env.Seq++ // each one new, so it is applied in full
		env.Heartbeat.Metrics[0].RecordsIn++
		if err := c.HandleMessage(env); err != nil {
			b.Fatal(err)
		}
	}
	m := env.Heartbeat.Metrics[0]
	if got := c.perTask[c.ops[c.opIndex[m.Operator]].offset+m.Subtask].recordsIn; got != m.RecordsIn {
		b.Fatalf("records in = %d, want %d: the heartbeat was not applied", got, m.RecordsIn)
	}
}
