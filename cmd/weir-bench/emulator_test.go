package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/infra/accounting"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
)

// The cost model bills each store call as the requests the DynamoDB store
// makes for it. This checks that mapping against the request ledger, call
// by call, on the emulator: the same calls through the real store must
// send the same requests per operation as the model counts.
func TestCostModelCountsTheRequestsOfTheDynamoDBStore(t *testing.T) {
	ledger, err := accounting.NewLedger()
	if err != nil {
		t.Fatal(err)
	}
	cfg := ledger.Instrument(awstest.Config(t))
	stack := resourcestest.ForTest(t, cfg)
	ds, err := dynamo.NewStore(dynamo.NewClient(cfg), stack.Env()[resources.EnvJobsTable])
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ids, err := seed(ctx, ds, 1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	id := ids[0]
	s := newSlowStore(ds, 0)
	s.sizes = true

	// What a new leader does, then three checkpoints and a cleanup.
	calls := []struct {
		name string
		call func() error
	}{
		{"claim", func() error { return s.Claim(ctx, 2, id) }},
		{"get config", func() error { _, err := s.GetConfig(ctx, id); return err }},
		{"get status", func() error { _, err := s.GetStatus(ctx, id); return err }},
		{"get commands", func() error { _, err := s.GetCommands(ctx, id); return err }},
		{"list checkpoints", func() error { _, err := s.ListCheckpoints(ctx, id); return err }},
		{"max epoch", func() error { _, err := s.MaxEpoch(ctx, id); return err }},
		{"put status", func() error {
			st, err := ds.GetStatus(ctx, id)
			if err != nil {
				return err
			}
			ledger.Reset() // the test's own read is not the controller's
			_, err = s.PutStatus(ctx, 2, st)
			return err
		}},
		{"checkpoints", func() error {
			for e := int64(1); e <= 3; e++ {
				cp := job.Checkpoint{JobID: id, Epoch: e, RunID: 1, State: job.CheckpointInProgress, StartedAt: time.Now()}
				if err := s.CreateCheckpoint(ctx, 2, cp); err != nil {
					return err
				}
				compare(t, "create checkpoint", ledger, s)
				cp.State = job.CheckpointReady
				cp.Operators = map[string]job.OperatorCheckpoint{opID(0): {Bytes: 1, Metadata: map[int]string{0: "s3://bench/0"}}}
				if err := s.UpdateCheckpoint(ctx, 2, cp); err != nil {
					return err
				}
				compare(t, "update checkpoint", ledger, s)
				cmds, err := ds.GetCommands(ctx, id)
				if err != nil {
					return err
				}
				cmds.Checkpoint = &job.CheckpointCommand{Epoch: e}
				ledger.Reset() // the test's own read is not the controller's
				if _, err := s.PutCommands(ctx, 2, cmds); err != nil {
					return err
				}
				compare(t, "put commands", ledger, s)
			}
			return nil
		}},
		{"delete checkpoints", func() error { _, err := s.DeleteCheckpoints(ctx, 2, id, 3); return err }},
		{"active jobs", func() error { _, err := s.ActiveJobs(ctx); return err }},
		// A later leader's claim also fences the checkpoint left.
		{"claim with a checkpoint", func() error { return s.Claim(ctx, 3, id) }},
		// A later leader still reads and claims it in bulk.
		{"bulk take-over", func() error {
			read, err := s.ReadJobs(ctx, ids)
			if err != nil {
				return err
			}
			return s.ClaimJobs(ctx, 4, read)[0]
		}},
	}
	for _, c := range calls {
		ledger.Reset()
		s.Usage()
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		compare(t, c.name, ledger, s)
	}
}

// compare checks that the model counted, per DynamoDB operation, the
// requests the ledger saw, and resets both.
func compare(t *testing.T, what string, ledger *accounting.Ledger, s *slowStore) {
	t.Helper()
	got := map[string]int64{}
	for k, n := range ledger.Snapshot() {
		if k.Service == "DynamoDB" {
			got[k.Operation] += n
		}
	}
	model, _ := s.Usage()
	want := map[string]int64{}
	for name, n := range model {
		op, _, _ := strings.Cut(strings.TrimPrefix(name, "dynamodb."), " ")
		want[op] += n
	}
	for op, n := range got {
		if want[op] != n {
			t.Errorf("%s: the store sent %d %s, the model counts %d (model: %v)", what, n, op, want[op], model)
		}
	}
	for op, n := range want {
		if _, ok := got[op]; !ok {
			t.Errorf("%s: the model counts %d %s, the store sent none (sent: %v)", what, n, op, got)
		}
	}
	ledger.Reset()
}
