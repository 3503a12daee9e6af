package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/fleet/memfleet"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/manager"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/infra/accounting"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/faults"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
	"github.com/weirstream/weir/infra/sqs"
)

// stack is one controller process and its workers' side, on a fresh set of
// the template's tables and queues.
type stack struct {
	t      *testing.T
	store  *dynamo.Store
	pub    *sqs.Publisher
	ledger *accounting.Ledger
	fleet  *memfleet.Launcher

	// seq and did belong to the test goroutine, the only one playing
	// workers.
	seq map[string]uint64
	did map[string]bool
}

// newStack starts a controller on fresh resources. inject, if not nil,
// sits between the controller and AWS (the test's own reads and the
// simulated workers go around it).
func newStack(t *testing.T, inject *faults.Injector) (*stack, func()) {
	t.Helper()
	ledger, err := accounting.NewLedger()
	if err != nil {
		t.Fatal(err)
	}
	cfg := ledger.Instrument(awstest.Config(t))
	st := resourcestest.ForTest(t, cfg)
	env := st.Env()
	s, err := dynamo.NewStore(dynamo.NewClient(cfg), env[resources.EnvJobsTable])
	if err != nil {
		t.Fatal(err)
	}
	sq := awssqs.NewFromConfig(cfg)
	ccfg := cfg.Copy()
	if inject != nil {
		ccfg.HTTPClient = inject
	}
	db := dynamo.NewClient(ccfg)
	cs, err := dynamo.NewStore(db, env[resources.EnvJobsTable])
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	in, err := sqs.NewInbox(awssqs.NewFromConfig(ccfg), env[resources.EnvWorkerQueueURL], sqs.InboxOptions{WaitTime: time.Second, Receivers: 2, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sqs.NewPublisher(sq, env[resources.EnvWorkerQueueURL], sqs.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := dynamo.NewLease(db, dynamo.LeaseConfig{
		Table: env[resources.EnvLeaseTable], Name: "controller",
		Duration: 3 * time.Second, RenewInterval: 500 * time.Millisecond, RenewDeadline: 2 * time.Second, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	settings := controller.DefaultSettings()
	settings.ProgressInterval = 50 * time.Millisecond
	fl := memfleet.New()
	m, err := manager.New(manager.Deps{
		Store: cs, Inbox: in, Fleet: fl, Log: log, Settings: settings, PollInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		err := manager.RunAsLeader(ctx, lease, clock.Real{}, log, m.Run)
		if err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return &stack{t: t, store: s, pub: pub, ledger: ledger, fleet: fl, seq: map[string]uint64{}, did: map[string]bool{}}, stop
}

// workers plays the job's workers once: each reads the command record (as
// real workers do, eventually consistent) and answers it through SQS.
func (s *stack) workers(ctx context.Context, id job.ID) {
	cmds, err := s.store.GetCommands(ctx, id)
	if err != nil || cmds.Start == nil {
		return
	}
	by := map[string][]job.TaskAssignment{}
	for _, a := range cmds.Start.Assignments {
		by[a.WorkerID] = append(by[a.WorkerID], a)
	}
	var bodies [][]byte
	for w, as := range by {
		once := func(what string) bool {
			k := string(id) + w + what
			if s.did[k] {
				return false
			}
			s.did[k] = true
			return true
		}
		run := strings.Repeat("I", int(cmds.RunID))
		var evs []protocol.Event
		if once("up" + run) {
			evs = append(evs, protocol.Event{Kind: protocol.WorkerRegistered, Slots: 1})
			for _, a := range as {
				evs = append(evs, protocol.Event{Kind: protocol.TaskStarted, Operator: a.OperatorID, Subtask: a.Subtask})
			}
		}
		if c := cmds.Checkpoint; c != nil && once(run+"cp"+time.Duration(c.Epoch).String()) {
			for _, a := range as {
				evs = append(evs, protocol.Event{Kind: protocol.CheckpointCompleted, Operator: a.OperatorID, Subtask: a.Subtask, Epoch: c.Epoch, Bytes: 100, Metadata: "s3://state/" + a.OperatorID})
			}
		}
		thenStop := cmds.Checkpoint != nil && cmds.Checkpoint.ThenStop
		if thenStop && once(run+"finish-after-checkpoint") {
			// After a then-stop checkpoint, subtasks finish; committing
			// sinks once they have committed.
			for _, a := range as {
				if a.OperatorID != "sink" {
					evs = append(evs, protocol.Event{Kind: protocol.TaskFinished, Operator: a.OperatorID, Subtask: a.Subtask})
				}
			}
		}
		if c := cmds.Commit; c != nil && once(run+"commit"+time.Duration(c.Epoch).String()) {
			for _, a := range as {
				if a.OperatorID == "sink" {
					evs = append(evs, protocol.Event{Kind: protocol.CommitFinished, Operator: a.OperatorID, Subtask: a.Subtask, Epoch: c.Epoch})
					if thenStop && c.Epoch == cmds.Checkpoint.Epoch {
						evs = append(evs, protocol.Event{Kind: protocol.TaskFinished, Operator: a.OperatorID, Subtask: a.Subtask})
					}
				}
			}
		}
		if cmds.Stop != nil && once(run+"stop") {
			for _, a := range as {
				evs = append(evs, protocol.Event{Kind: protocol.TaskFinished, Operator: a.OperatorID, Subtask: a.Subtask})
			}
		}
		s.seq[w]++
		body, err := protocol.Encode(&protocol.Envelope{
			V: protocol.V1, JobID: id, RunID: cmds.RunID, WorkerID: w, Seq: s.seq[w],
			SentAt: time.Now(), Heartbeat: &protocol.Heartbeat{}, Events: evs,
		})
		if err != nil {
			s.t.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	if err := s.pub.PublishBatch(ctx, bodies); err != nil {
		s.t.Errorf("publish: %v", err)
	}
}

func (s *stack) until(ctx context.Context, what string, id job.ID, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			st, _ := s.store.GetStatus(ctx, id)
			s.t.Fatalf("timed out waiting for %s (status %+v)", what, st)
		}
		s.workers(ctx, id)
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *stack) state(ctx context.Context, id job.ID) job.State {
	st, err := s.store.GetStatus(ctx, id)
	if err != nil {
		return ""
	}
	return st.State
}

func TestControllerRunsAJobOnTheEmulator(t *testing.T) {
	runScenario(t, nil)
}

// Under lost answers (15 % of writes) — writes that take effect while the controller never
// hears back, so the SDK sends them again — the same scenario runs to the
// same end: every write knows its own answer, so none is mistaken for a
// conflict or a lost job, and the stop still ends with its final
// checkpoint.
func TestControllerUnderLostAnswers(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			inj, err := faults.New(faults.Options{Seed: seed, Rules: []faults.Rule{
				{Kind: faults.LostAnswer, Rate: 0.15, Operations: []string{
					"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems",
					"SendMessageBatch", "DeleteMessageBatch", "ChangeMessageVisibilityBatch",
				}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			runScenario(t, inj)
			if inj.Injected(faults.LostAnswer, "") == 0 {
				t.Fatal("no answer was lost: the run proves nothing")
			}
			t.Logf("injected: %s", inj)
		})
	}
}

func runScenario(t *testing.T, inj *faults.Injector) {
	s, stop := newStack(t, inj)
	ctx := context.Background()
	cfg, err := s.store.PutConfig(ctx, job.Config{
		JobID: "clicks",
		Spec: job.Spec{
			Operators: []job.Operator{
				{ID: "source", Parallelism: 2, Source: true},
				{ID: "sink", Parallelism: 2, Committing: true},
			},
			SlotsPerWorker: 1, Program: "demo",
		},
		CheckpointInterval: time.Second,
	}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	s.until(ctx, "the job to run", "clicks", func() bool { return s.state(ctx, "clicks") == job.Running })
	s.until(ctx, "two ready checkpoints", "clicks", func() bool {
		cps, _ := s.store.ListCheckpoints(ctx, "clicks")
		ready := 0
		for _, cp := range cps {
			if cp.State == job.CheckpointReady {
				ready++
			}
		}
		return ready >= 2
	})

	// A rescale takes a final checkpoint and starts run 2 from it.
	cfg, err = s.store.GetConfig(ctx, "clicks")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Parallelism = map[string]int{"sink": 3}
	if cfg, err = s.store.PutConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	s.until(ctx, "run 2 to run", "clicks", func() bool {
		st, _ := s.store.GetStatus(ctx, "clicks")
		return st.RunID == 2 && st.State == job.Running
	})
	cmds, _ := s.store.GetCommands(ctx, "clicks")
	if cmds.Start.RestoreEpoch == 0 || len(cmds.Start.Assignments) != 5 {
		t.Fatalf("run 2 start command: restore %d, %d tasks; want a restore epoch and 5 tasks", cmds.Start.RestoreEpoch, len(cmds.Start.Assignments))
	}

	// A stale config write is refused and changes nothing.
	stale := cfg
	stale.Version--
	if _, err := s.store.PutConfig(ctx, stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale config write: %v, want a conflict", err)
	}

	cfg.Stop = job.StopCheckpoint
	if _, err = s.store.PutConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	s.until(ctx, "the job to stop and be parked", "clicks", func() bool {
		refs, _ := s.store.ActiveJobs(ctx)
		return s.state(ctx, "clicks") == job.Stopped && len(refs) == 0
	})
	elapsed := time.Since(started)
	stop()

	cps, _ := s.store.ListCheckpoints(ctx, "clicks")
	for i := 1; i < len(cps); i++ {
		if cps[i].Epoch <= cps[i-1].Epoch {
			t.Fatalf("epochs do not grow: %d then %d", cps[i-1].Epoch, cps[i].Epoch)
		}
	}
	last := cps[len(cps)-1]
	if last.State != job.CheckpointReady || !last.ThenStop {
		t.Fatalf("last checkpoint = %+v, want a ready then-stop checkpoint", last)
	}
	if runs := s.fleet.Running("clicks"); len(runs) != 0 {
		t.Fatalf("workers of runs %v still running after the stop", runs)
	}

	var report strings.Builder
	if err := s.ledger.WriteTable(&report, accounting.USEast1); err != nil {
		t.Fatal(err)
	}
	t.Logf("AWS requests for one job over %s (controller and simulated workers):\n%s", elapsed.Round(time.Second), report.String())
}
