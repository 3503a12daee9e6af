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
// equal parallelism on workers of four slots (the last a committing sink),
// every worker registered and every task started, no checkpoint due.
func benchRun(b *testing.B, n int) (*JobController, Layout, *clock.Fake) {
	b.Helper()
	ops := min(4, n)
	cfg := job.Config{JobID: testJob, Spec: job.Spec{SlotsPerWorker: 4, Program: "p"}, CheckpointInterval: time.Hour}
	for i := range ops {
		cfg.Spec.Operators = append(cfg.Spec.Operators, job.Operator{ID: fmt.Sprintf("op-%d", i), Parallelism: n / ops, Source: i == 0,
			Committing: i > 0 && i == ops-1})
	}
	l := NewLayout(cfg)
	clk := clock.NewFake(t0)
	c := New(Deps{Store: memstore.New(), Clock: clk, Fence: 1, Rand: func() float64 { return 0.5 }},
		Run{JobID: testJob, RunID: 1, Layout: l, Program: "p", Restore: Restore{NextEpoch: 1, MinEpoch: 1}, CheckpointInterval: time.Hour})
	b.Cleanup(c.Close)
	if err := c.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	tasks := map[string][]protocol.Task{}
	for _, a := range l.Assignments {
		tasks[a.WorkerID] = append(tasks[a.WorkerID], protocol.Task{Operator: a.OperatorID, Subtask: a.Subtask, State: protocol.Running})
	}
	for _, w := range l.Workers {
		env := &protocol.Envelope{V: protocol.V2, JobID: testJob, RunID: 1, WorkerID: w, Seq: 1, Slots: 4, Tasks: tasks[w]}
		if err := c.HandleMessage(env); err != nil {
			b.Fatal(err)
		}
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

// BenchmarkHeartbeat applies a routine heartbeat of a worker of a
// 1,000-subtask job, in protocol v2 (whole state: every subtask running,
// past a checkpoint and its commit) and v1 (metrics only).
func BenchmarkHeartbeat(b *testing.B) {
	for _, v := range []int{protocol.V2, protocol.V1} {
		b.Run(fmt.Sprintf("v%d", v), func(b *testing.B) {
			c, l, _ := benchRun(b, 1000)
			w := l.Workers[len(l.Workers)/2]
			env := &protocol.Envelope{V: v, JobID: testJob, RunID: 1, WorkerID: w, Seq: 1000}
			if v == protocol.V1 {
				env.Heartbeat = &protocol.Heartbeat{}
			} else {
				env.Slots = 4
			}
			for _, a := range l.Assignments {
				if a.WorkerID != w {
					continue
				}
				m := protocol.TaskMetrics{
					Operator: a.OperatorID, Subtask: a.Subtask, RecordsIn: 1e6, RecordsOut: 1e6,
					BytesIn: 1e8, BytesOut: 1e8, Backpressure: 0.1, WatermarkMs: t0.UnixMilli(),
				}
				if v == protocol.V1 {
					env.Heartbeat.Metrics = append(env.Heartbeat.Metrics, m)
					continue
				}
				env.Tasks = append(env.Tasks, protocol.Task{
					Operator: m.Operator, Subtask: m.Subtask, State: protocol.Running,
					RecordsIn: m.RecordsIn, RecordsOut: m.RecordsOut, BytesIn: m.BytesIn, BytesOut: m.BytesOut,
					Backpressure: m.Backpressure, WatermarkMs: m.WatermarkMs,
					Checkpointed: 3, CheckpointBytes: 1 << 20, CheckpointMetadata: "s3://state/3",
				})
				if c.ops[c.opIndex[m.Operator]].committing {
					env.Tasks[len(env.Tasks)-1].Committed = 3
				}
			}
			first := func() (string, int, uint64) {
				if v == protocol.V1 {
					return env.Heartbeat.Metrics[0].Operator, env.Heartbeat.Metrics[0].Subtask, env.Heartbeat.Metrics[0].RecordsIn
				}
				return env.Tasks[0].Operator, env.Tasks[0].Subtask, env.Tasks[0].RecordsIn
			}
			b.ReportMetric(float64(max(len(env.Tasks), 1)), "subtasks/heartbeat")
			b.ReportAllocs()
			for b.Loop() {
				env.Seq++ // each one new, so it is applied in full
				if v == protocol.V1 {
					env.Heartbeat.Metrics[0].RecordsIn++
				} else {
					env.Tasks[0].RecordsIn++
				}
				if err := c.HandleMessage(env); err != nil {
					b.Fatal(err)
				}
			}
			op, s, records := first()
			if got := c.perTask[c.ops[c.opIndex[op]].offset+s].recordsIn; got != records {
				b.Fatalf("records in = %d, want %d: the heartbeat was not applied", got, records)
			}
		})
	}
}
