package worker_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/infra/accounting"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/launcher"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
	"github.com/weirstream/weir/worker"
)

// pipeline is a worker program that does nothing but answer: two
// subtasks per worker, instant checkpoints and commits.
type pipeline struct {
	mu       sync.Mutex
	subtasks []worker.Subtask
	commits  []int64
	stopped  job.StopMode
}

func (p *pipeline) Start(_ context.Context, req worker.StartRequest, _ *worker.Reporter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.subtasks = req.Subtasks
	return nil
}

func (p *pipeline) Checkpoint(_ context.Context, req worker.CheckpointRequest) ([]worker.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []worker.Snapshot
	for _, s := range p.subtasks {
		out = append(out, worker.Snapshot{Subtask: s, Bytes: 1 << 20, Metadata: fmt.Sprintf("s3://state/%d/%s", req.Epoch, s)})
	}
	return out, nil
}

func (p *pipeline) Commit(_ context.Context, epoch int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.commits = append(p.commits, epoch)
	return nil
}

func (p *pipeline) Stop(_ context.Context, mode job.StopMode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = mode
	return nil
}

// stack is a test's copy of the worker queue and jobs table, and the
// controller's side of them: it writes the command record and reads what
// workers send, with clients the ledger does not count.
type stack struct {
	t      *testing.T
	cfg    aws.Config
	env    map[string]string
	store  *dynamo.Store
	sqs    *awssqs.Client
	url    string
	cmds   job.Commands
	ledger *accounting.Ledger
}

func newStack(t *testing.T) *stack {
	t.Helper()
	cfg := awstest.Config(t)
	env := resourcestest.ForTest(t, cfg).Env()
	st, err := dynamo.NewStore(dynamodb.NewFromConfig(cfg), env[resources.EnvJobsTable])
	if err != nil {
		t.Fatal(err)
	}
	l, err := accounting.NewLedger()
	if err != nil {
		t.Fatal(err)
	}
	return &stack{t: t, cfg: cfg, env: env, store: st, sqs: awssqs.NewFromConfig(cfg),
		url: env[resources.EnvWorkerQueueURL], cmds: job.Commands{JobID: "orders", RunID: 1}, ledger: l}
}

func (s *stack) identity(heartbeat time.Duration) worker.Identity {
	return worker.Identity{JobID: "orders", RunID: 1, WorkerID: "w-0", Slots: 2, HeartbeatInterval: heartbeat,
		QueueURL: s.env[resources.EnvWorkerQueueURL], JobsTable: s.env[resources.EnvJobsTable]}
}

// newWorker builds a worker whose AWS clients report to the ledger.
func (s *stack) newWorker(p worker.Program, heartbeat time.Duration, opts worker.Options) *worker.Worker {
	s.t.Helper()
	id := s.identity(heartbeat)
	pub, cmds, err := worker.Connect(s.ledger.Instrument(s.cfg), id, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	w, err := worker.New(id, p, pub, cmds, opts)
	if err != nil {
		s.t.Fatal(err)
	}
	return w
}

func (s *stack) write(change func(c *job.Commands)) {
	s.t.Helper()
	change(&s.cmds)
	stored, err := s.store.PutCommands(context.Background(), 1, s.cmds)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmds = stored
}

func (s *stack) start() {
	s.write(func(c *job.Commands) {
		c.Start = &job.StartCommand{Program: "p", Assignments: []job.TaskAssignment{
			{WorkerID: "w-0", OperatorID: "src", Subtask: 0},
			{WorkerID: "w-0", OperatorID: "sink", Subtask: 0},
		}}
	})
}

// waitFor receives envelopes until one satisfies ok.
func (s *stack) waitFor(what string, ok func(env *protocol.Envelope) bool) *protocol.Envelope {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, err := s.sqs.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{
			QueueUrl: &s.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		})
		if err != nil {
			s.t.Fatal(err)
		}
		for _, m := range out.Messages {
			if _, err := s.sqs.DeleteMessage(context.Background(), &awssqs.DeleteMessageInput{QueueUrl: &s.url, ReceiptHandle: m.ReceiptHandle}); err != nil {
				s.t.Fatal(err)
			}
			env, err := protocol.Decode([]byte(aws.ToString(m.Body)))
			if err != nil {
				s.t.Fatalf("the worker sent an envelope the controller refuses: %v", err)
			}
			if ok(env) {
				return env
			}
		}
	}
	s.t.Fatalf("no envelope %s within 20 s", what)
	return nil
}

func allTasks(env *protocol.Envelope, n int, ok func(t protocol.Task) bool) bool {
	if len(env.Tasks) != n {
		return false
	}
	for _, t := range env.Tasks {
		if !ok(t) {
			return false
		}
	}
	return true
}

// TestEnvNamesMatchTheStack: the worker reads the variables the stack's
// outputs are given everywhere else.
func TestEnvNamesMatchTheStack(t *testing.T) {
	if worker.EnvQueueURL != resources.EnvWorkerQueueURL || worker.EnvJobsTable != resources.EnvJobsTable {
		t.Errorf("worker reads %s and %s; the stack's outputs are %s and %s",
			worker.EnvQueueURL, worker.EnvJobsTable, resources.EnvWorkerQueueURL, resources.EnvJobsTable)
	}
	for _, name := range []string{resources.EnvWorkerUrgentQueueURL, launcher.EnvWorkerUrgentQueueURL} {
		if name != worker.EnvUrgentQueueURL {
			t.Errorf("worker reads %s; the stack and the launchers name it %s", worker.EnvUrgentQueueURL, name)
		}
	}
}

// TestWorkerOnTheEmulator runs a worker through the real SDK: it
// registers, starts, checkpoints and stops as the command record in
// DynamoDB asks, and every envelope it sends to SQS decodes.
func TestWorkerOnTheEmulator(t *testing.T) {
	s := newStack(t)
	p := &pipeline{}
	w := s.newWorker(p, time.Second, worker.Options{FastRead: 250 * time.Millisecond, SlowRead: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	s.waitFor("registering the worker", func(env *protocol.Envelope) bool { return env.Slots == 2 && env.Seq == 1 })
	s.start()
	s.waitFor("with both subtasks running", func(env *protocol.Envelope) bool {
		return allTasks(env, 2, func(t protocol.Task) bool { return t.State == protocol.Running })
	})
	s.write(func(c *job.Commands) { c.Checkpoint = &job.CheckpointCommand{Epoch: 1, MinEpoch: 1} })
	s.waitFor("with checkpoint 1", func(env *protocol.Envelope) bool {
		return allTasks(env, 2, func(t protocol.Task) bool { return t.Checkpointed == 1 && t.CheckpointMetadata != "" })
	})
	s.write(func(c *job.Commands) { c.Stop = &job.StopCommand{Mode: job.StopGraceful} })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after a graceful stop", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the stop command")
	}
	s.waitFor("with both subtasks finished", func(env *protocol.Envelope) bool {
		return allTasks(env, 2, func(t protocol.Task) bool { return t.State == protocol.Finished })
	})
	if p.stopped != job.StopGraceful {
		t.Errorf("program stopped with %q, want graceful", p.stopped)
	}
	if n := s.ledger.Usage()[accounting.Key{Service: "SQS", Operation: "SendMessage"}].Requests; n < 4 {
		t.Errorf("the ledger counted %d sends", n)
	}
}

// TestRequestsPerWorkerMinute measures what one worker costs at the
// defaults, counting its AWS requests with infra/accounting while the
// fake clock runs simulated minutes (the requests are real, to the
// emulator): a controller's command record starts the run, asks for a
// checkpoint every interval and, for committing sinks, a commit 1.5 s
// later. It prints the cost of a 10-worker job-month and checks it
// against weir's budget for the worker's own requests.
func TestRequestsPerWorkerMinute(t *testing.T) {
	cases := []struct {
		interval   time.Duration
		committing bool
		// Budgets per worker-minute.
		sends, reads float64
	}{
		{60 * time.Second, false, 3.1, 7.5},
		{60 * time.Second, true, 3.1, 9.5},
		{10 * time.Second, false, 6.1, 7},
		{10 * time.Second, true, 12.1, 19},
	}
	const warmUp, measured = 2 * time.Minute, 10 * time.Minute
	for _, c := range cases {
		name := fmt.Sprintf("checkpoint every %s, committing sinks %v", c.interval, c.committing)
		t.Run(name, func(t *testing.T) {
			s := newStack(t)
			clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			var opts worker.Options
			opts.Clock = clk
			if c.committing {
				opts.CommittingOperators = []string{"sink"}
			}
			p := &pipeline{}
			w := s.newWorker(p, 0, opts)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			defer func() {
				cancel()
				<-done
			}()

			begin := clk.Now()
			s.start()
			// The controller states its checkpoint interval in the record.
			s.write(func(cm *job.Commands) { cm.CheckpointInterval = c.interval })
			var epoch int64
			var commitAt time.Time
			step := func(d time.Duration) {
				for end := clk.Now().Add(d); clk.Now().Before(end); {
					clk.Advance(100 * time.Millisecond)
					settle(t, clk, done)
					now := clk.Now()
					if next := begin.Add(time.Duration(epoch+1) * c.interval); !now.Before(next) {
						epoch++
						s.write(func(cm *job.Commands) { cm.Checkpoint = &job.CheckpointCommand{Epoch: epoch, MinEpoch: 1} })
						commitAt = now.Add(1500 * time.Millisecond)
					}
					if c.committing && !commitAt.IsZero() && !now.Before(commitAt) {
						e := epoch
						s.write(func(cm *job.Commands) { cm.Commit = &job.CommitCommand{Epoch: e} })
						commitAt = time.Time{}
					}
				}
			}
			step(warmUp)
			s.ledger.Reset()
			step(measured)

			usage := s.ledger.Usage()
			minutes := measured.Minutes()
			sends := float64(usage[accounting.Key{Service: "SQS", Operation: "SendMessage"}].Requests) / minutes
			reads := float64(usage[accounting.Key{Service: "DynamoDB", Operation: "GetItem"}].Requests) / minutes
			month := 30 * 24 * time.Hour
			cost := s.ledger.Estimate(accounting.USEast1).Scale(measured, 10*month) // ten workers
			t.Logf("per worker-minute: %.2f sends, %.2f command reads; a 10-worker job-month: %s", sends, reads, cost)
			if sends > c.sends || reads > c.reads {
				t.Errorf("per worker-minute: %.2f sends and %.2f reads, over the budget of %.1f and %.1f", sends, reads, c.sends, c.reads)
			}
			for k := range usage {
				if k.Operation != "SendMessage" && k.Operation != "GetItem" {
					t.Errorf("the worker made %v requests; it should only send and read", k)
				}
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if c.committing && (len(p.commits) == 0 || p.commits[len(p.commits)-1] < epoch-1) {
				t.Errorf("the worker committed %v; the record asked up to %d", p.commits, epoch)
			}
		})
	}
}

// settle waits until the worker's two loops are asleep on the fake clock
// (their requests to the emulator done) for a while of real time, or Run
// has returned.
func settle(t *testing.T, clk *clock.Fake, done chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var since time.Time
	for stable := 0; stable < 50 || time.Since(since) < 200*time.Microsecond; stable++ {
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not settle: %d timers armed", clk.Waiters())
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned %v", err)
		default:
		}
		if clk.Waiters() < 2 {
			stable = -1
		}
		if stable <= 0 {
			since = time.Now()
		}
		runtime.Gosched()
	}
}
