package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/worker"
)

func TestFlags(t *testing.T) {
	var out bytes.Buffer
	s, err := parseFlags([]string{"-sources=src,gen", "-committing=sink", "-fail-at=30s", "-fail-subtask=map[1]", "-fail-retry=none"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.sources) != 2 || s.committing[0] != "sink" || s.failAt != 30*time.Second || s.failRetry != protocol.RetryNone {
		t.Errorf("settings = %+v", s)
	}
	for _, c := range []struct{ args, want string }{
		{"-fail-subtask=map", `"map" is not a subtask: write op[index]`},
		{"-backpressure=2", "-backpressure 2: use a share from 0 to 1"},
		{"-fail-domain=cosmic", `-fail-domain "cosmic": use user, internal or external`},
		{"-crash-code=0", "-crash-code 0: use 1 to 125"},
		{"-commit-delay=-1s", "-commit-delay -1s: must not be negative"},
		{"-finish-after=soon", `invalid value "soon" for flag -finish-after`},
		{"-no-such-flag", "flag provided but not defined: -no-such-flag"},
	} {
		out.Reset()
		if _, err := parseFlags(strings.Fields(c.args), &out); err == nil || !strings.Contains(out.String(), c.want) {
			t.Errorf("parseFlags(%s) = %v, printed %q; want it to say %q", c.args, err, out.String(), c.want)
		}
	}
	out.Reset()
	if _, err := parseFlags([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "WEIR_JOB_ID") {
		t.Errorf("-h = %v, printed %q", err, out.String())
	}
}

func TestBadEnvironmentExitsWithUsageError(t *testing.T) {
	var out bytes.Buffer
	code := run(context.Background(), nil, func(string) (string, bool) { return "", false }, &out)
	if code != 2 || !strings.Contains(out.String(), "WEIR_RUN_ID is not set") {
		t.Fatalf("run = %d, printed %q", code, out.String())
	}
}

// queue keeps what the worker sends.
type queue struct {
	mu   sync.Mutex
	envs []*protocol.Envelope
}

func (q *queue) Publish(_ context.Context, body []byte) error {
	env, err := protocol.Decode(body)
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.envs = append(q.envs, env)
	return nil
}

func (q *queue) last() *protocol.Envelope {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.envs) == 0 {
		return nil
	}
	return q.envs[len(q.envs)-1]
}

// record is a command record that starts run 1 with w-0 running src[0]
// and map[0].
type record struct{}

func (record) GetCommands(context.Context, job.ID) (job.Commands, error) {
	return job.Commands{JobID: "orders", RunID: 1, Version: 1, Start: &job.StartCommand{Program: "p", Assignments: []job.TaskAssignment{
		{WorkerID: "w-0", OperatorID: "src", Subtask: 0}, {WorkerID: "w-0", OperatorID: "map", Subtask: 0},
	}}}, nil
}

// simulate runs the simulator under the worker SDK on a fake clock for d.
func simulate(t *testing.T, args []string, d time.Duration) (*queue, []int) {
	t.Helper()
	s, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	var crashes []int
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := newSim(s, clk, log, func(code int) { mu.Lock(); crashes = append(crashes, code); mu.Unlock() })
	q := &queue{}
	id := worker.Identity{JobID: "orders", RunID: 1, WorkerID: "w-0", QueueURL: "http://queue", JobsTable: "jobs"}
	w, err := worker.New(id, m, publisher{next: q, sim: m}, record{}, worker.Options{Clock: clk, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	settle := func() {
		// Asleep for a while of real time, so that a goroutine the
		// scheduler has not run yet is not taken for an idle one.
		deadline := time.Now().Add(10 * time.Second)
		var since time.Time
		for stable := 0; stable < 50 || time.Since(since) < 200*time.Microsecond; stable++ {
			if time.Now().After(deadline) {
				t.Fatalf("the worker and the simulator did not settle: %d timers armed", clk.Waiters())
			}
			// The worker's two loops asleep on their timers, and the
			// simulator's counting loop (whose ticker is armed too)
			// caught up with the clock.
			want := 2
			if m.ticking() {
				want++
			}
			if clk.Waiters() < want || m.behind() {
				stable = -1
			}
			if stable <= 0 {
				since = time.Now()
			}
			runtime.Gosched()
		}
	}
	settle()
	for end := clk.Now().Add(d); clk.Now().Before(end); {
		clk.Advance(100 * time.Millisecond)
		settle()
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return q, crashes
}

func task(t *testing.T, env *protocol.Envelope, op string) protocol.Task {
	t.Helper()
	for _, task := range env.Tasks {
		if task.Operator == op {
			return task
		}
	}
	t.Fatalf("no %s in %v", op, env)
	return protocol.Task{}
}

func TestSimulatedPipeline(t *testing.T) {
	q, _ := simulate(t, []string{"-sources=src", "-records-per-second=100", "-record-bytes=10"}, 61*time.Second)
	src := task(t, q.last(), "src")
	if src.State != protocol.Running || src.RecordsIn < 5000 || src.BytesIn != 10*src.RecordsIn || src.Backpressure != 0.05 || src.WatermarkMs == 0 {
		t.Fatalf("src = %+v, want it running with about 6,000 records of 10 bytes", src)
	}
}

func TestSimulatedMisbehaviour(t *testing.T) {
	cases := []struct {
		args  []string
		check func(t *testing.T, q *queue, crashes []int)
	}{
		{[]string{"-fail-at=10s", "-fail-subtask=map[0]", "-fail-retry=none", "-fail-domain=user"}, func(t *testing.T, q *queue, _ []int) {
			m := task(t, q.last(), "map")
			if m.State != protocol.Failed || m.Retry != protocol.RetryNone || m.Domain != job.DomainUser || !strings.Contains(m.Error, "simulated failure") {
				t.Errorf("map = %+v, want failed by the user, not retryable", m)
			}
		}},
		{[]string{"-sources=src", "-finish-after-records=3000", "-records-per-second=1000"}, func(t *testing.T, q *queue, _ []int) {
			src, m := task(t, q.last(), "src"), task(t, q.last(), "map")
			if src.State != protocol.Finished || src.RecordsIn != 3000 || m.State != protocol.Finished {
				t.Errorf("src = %+v, map = %+v: want both finished, src after 3,000 records", src, m)
			}
		}},
		{[]string{"-stop-heartbeats-at=5s"}, func(t *testing.T, q *queue, _ []int) {
			if last := q.last(); last.SentAt.After(time.Date(2026, 3, 1, 12, 0, 7, 0, time.UTC)) {
				t.Errorf("an envelope was sent at %v, after the simulated hang began", last.SentAt)
			}
		}},
		{[]string{"-crash-at=15s", "-crash-code=7"}, func(t *testing.T, _ *queue, crashes []int) {
			if len(crashes) == 0 || crashes[0] != 7 {
				t.Errorf("crashes = %v, want exit 7", crashes)
			}
		}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			q, crashes := simulate(t, c.args, 30*time.Second)
			c.check(t, q, crashes)
		})
	}
}

func TestSimulatedCheckpointsAndCommits(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	s, err := parseFlags([]string{"-hang-checkpoint=3", "-fail-checkpoint=5", "-commit-delay=2s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := newSim(s, clk, slog.New(slog.NewTextHandler(io.Discard, nil)), func(int) {})
	m.subtasks = []worker.Subtask{{Operator: "src"}}
	ctx := context.Background()
	if snaps, err := m.Checkpoint(ctx, worker.CheckpointRequest{Epoch: 2}); err != nil || len(snaps) != 1 {
		t.Fatalf("checkpoint 2 = %v, %v", snaps, err)
	}
	if _, err := m.Checkpoint(ctx, worker.CheckpointRequest{Epoch: 5}); err == nil {
		t.Fatal("checkpoint 5 did not fail")
	}
	hung, cancel := context.WithCancel(ctx)
	result := make(chan error, 1)
	go func() {
		_, err := m.Checkpoint(hung, worker.CheckpointRequest{Epoch: 3})
		result <- err
	}()
	select {
	case err := <-result:
		t.Fatalf("checkpoint 3 returned %v instead of hanging", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Fatalf("hung checkpoint = %v, want it to end with its context", err)
	}
	committed := make(chan error, 1)
	go func() { committed <- m.Commit(ctx, 2) }()
	for clk.Waiters() == 0 {
		runtime.Gosched()
	}
	select {
	case <-committed:
		t.Fatal("the commit did not wait for -commit-delay")
	default:
	}
	clk.Advance(2 * time.Second)
	if err := <-committed; err != nil {
		t.Fatal(err)
	}
}
