package e2e

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/fleet/memfleet"
	"github.com/weirstream/weir/core/inbox"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/manager"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
	"github.com/weirstream/weir/infra/sqs"
	"github.com/weirstream/weir/worker"
)

// idleProgram runs its subtasks doing nothing; the test fails one through
// the Reporter it keeps.
type idleProgram struct {
	mu       sync.Mutex
	reporter *worker.Reporter
	subtasks []worker.Subtask
}

func (p *idleProgram) Start(_ context.Context, req worker.StartRequest, r *worker.Reporter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reporter, p.subtasks = r, req.Subtasks
	return nil
}

func (p *idleProgram) Checkpoint(_ context.Context, req worker.CheckpointRequest) ([]worker.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []worker.Snapshot
	for _, s := range p.subtasks {
		out = append(out, worker.Snapshot{Subtask: s, Metadata: "s3://state/" + s.String()})
	}
	return out, nil
}

func (p *idleProgram) Commit(context.Context, int64) error      { return nil }
func (p *idleProgram) Stop(context.Context, job.StopMode) error { return nil }

func (p *idleProgram) started() (*worker.Reporter, []worker.Subtask) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reporter, p.subtasks
}

// TestAFailureOvertakesTheLinger: a controller that lingers 1.5 s between
// partial receives of the worker queue, with a trickle of heartbeats from
// three real SDK workers, still persists Recovering soon after one worker
// reports a failed subtask, because that envelope goes to the urgent queue,
// which is received without linger.
func TestAFailureOvertakesTheLinger(t *testing.T) {
	took := failureToRecovering(t, true)
	t.Logf("failure reported → Recovering persisted in %s (receive linger %s)", took.Round(time.Millisecond), sqs.DefaultReceiveLinger)
	// Well under the linger, with room for a loaded CI machine.
	if took >= time.Second {
		t.Errorf("Recovering %s after the failure; want under 1s, well under the %s receive linger", took, sqs.DefaultReceiveLinger)
	}
}

// TestAFailureWithoutTheUrgentQueue is the same setup with every envelope
// on the lingering worker queue. It only logs the time: whether a failure
// lands inside a linger is chance, so it is no bound to assert.
func TestAFailureWithoutTheUrgentQueue(t *testing.T) {
	took := failureToRecovering(t, false)
	t.Logf("without the urgent queue: failure reported → Recovering persisted in %s (receive linger %s)", took.Round(time.Millisecond), sqs.DefaultReceiveLinger)
}

// failureToRecovering runs a lingering controller and three workers, fails
// one worker's subtask, and says how long until Recovering is persisted.
// With urgent, the workers know the urgent queue.
func failureToRecovering(t *testing.T, urgentQueue bool) time.Duration {
	cfg := awstest.Config(t)
	env := resourcestest.ForTest(t, cfg).Env()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	client := awssqs.NewFromConfig(cfg)
	routine, err := sqs.NewInbox(client, env[resources.EnvWorkerQueueURL], sqs.InboxOptions{Linger: sqs.DefaultReceiveLinger, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	urgent, err := sqs.NewInbox(client, env[resources.EnvWorkerUrgentQueueURL], sqs.InboxOptions{Receivers: 1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	in, err := inbox.NewFanIn(clock.Real{}, routine, urgent)
	if err != nil {
		t.Fatal(err)
	}
	st, err := dynamo.NewStore(dynamo.NewClient(cfg), env[resources.EnvJobsTable])
	if err != nil {
		t.Fatal(err)
	}
	lease, err := dynamo.NewLease(dynamo.NewClient(cfg), dynamo.LeaseConfig{
		Table: env[resources.EnvLeaseTable], Name: "controller",
		// Generous: a lease lost to a stalled emulator would time a
		// take-over, not the urgent queue.
		Duration: 15 * time.Second, RenewInterval: 500 * time.Millisecond, RenewDeadline: 10 * time.Second, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := manager.New(manager.Deps{
		Store: st, Inbox: in, Fleet: memfleet.New(), Log: log, Settings: controller.DefaultSettings(), PollInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Workers stop before the controller: cleanups run last-in first-out.
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		if err := manager.RunAsLeader(ctx, lease, clock.Real{}, log, m.Run); err != nil {
			t.Errorf("controller: %v", err)
		}
	})

	const id job.ID = "clicks"
	if _, err := st.PutConfig(ctx, job.Config{
		JobID: id,
		Spec: job.Spec{
			Operators:      []job.Operator{{ID: "source", Parallelism: 3, Source: true}},
			SlotsPerWorker: 1, Program: "idle",
		},
		CheckpointInterval: 10 * time.Minute,
	}.WithDefaults()); err != nil {
		t.Fatal(err)
	}

	// Start the workers the start command names, each a real SDK worker
	// sending through both queues.
	var cmds job.Commands
	waitUntil(t, "the start command", func() bool {
		cmds, err = st.GetCommands(ctx, id)
		return err == nil && cmds.Start != nil
	})
	progs := map[string]*idleProgram{}
	for _, a := range cmds.Start.Assignments {
		if progs[a.WorkerID] != nil {
			continue
		}
		p := &idleProgram{}
		progs[a.WorkerID] = p
		ident := worker.Identity{
			JobID: id, RunID: cmds.RunID, WorkerID: a.WorkerID, JobsTable: env[resources.EnvJobsTable],
			QueueURL: env[resources.EnvWorkerQueueURL], HeartbeatInterval: time.Second,
		}
		if urgentQueue {
			ident.UrgentQueueURL = env[resources.EnvWorkerUrgentQueueURL]
		}
		pub, wcmds, err := worker.Connect(cfg, ident, log)
		if err != nil {
			t.Fatal(err)
		}
		w, err := worker.New(ident, p, pub, wcmds, worker.Options{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := w.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("worker %s: %v", ident.WorkerID, err)
			}
		})
	}
	waitUntil(t, "the job to run", func() bool {
		s, err := st.GetStatus(ctx, id)
		return err == nil && s.State == job.Running
	})
	// Let the heartbeats settle into the trickle the linger batches.
	time.Sleep(3 * time.Second)

	var failing *idleProgram
	for _, p := range progs {
		failing = p
		break
	}
	r, subtasks := failing.started()
	failed := time.Now()
	if err := r.Fail(subtasks[0], worker.Retryable(job.DomainExternal, errors.New("connection reset"))); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "Recovering", func() bool {
		s, err := st.GetStatus(ctx, id)
		return err == nil && (s.State == job.Recovering || s.RunID > cmds.RunID)
	})
	return time.Since(failed)
}

// waitUntil polls cond every 20 ms; the deadline only guards against a
// hung test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
