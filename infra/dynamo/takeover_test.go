package dynamo_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/store/storetest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/resources"
)

// unprocessHalf makes every first answer to a BatchGetItem leave half of
// its items unprocessed, as DynamoDB does when it throttles a batch, and
// counts the requests.
func unprocessHalf(requests *atomic.Int64) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("UnprocessHalf", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			res, ok := out.Result.(*dynamodb.BatchGetItemOutput)
			if err != nil || !ok || requests.Add(1)%2 == 0 {
				return out, md, err
			}
			for table, items := range res.Responses {
				kept := items[:len(items)/2]
				ka := res.UnprocessedKeys[table]
				for _, item := range items[len(items)/2:] {
					ka.Keys = append(ka.Keys, map[string]types.AttributeValue{"pk": item["pk"], "sk": item["sk"]})
				}
				if res.UnprocessedKeys == nil {
					res.UnprocessedKeys = map[string]types.KeysAndAttributes{}
				}
				ka.ConsistentRead = in.Parameters.(*dynamodb.BatchGetItemInput).RequestItems[table].ConsistentRead
				res.UnprocessedKeys[table] = ka
				res.Responses[table] = kept
			}
			return out, md, err
		}), middleware.After)
	}
}

// Keys DynamoDB leaves unprocessed are asked for again: the bulk read
// still returns every job whole.
func TestReadJobsAsksAgainForUnprocessedKeys(t *testing.T) {
	cfg, env := stack(t)
	table := env[resources.EnvJobsTable]
	var requests atomic.Int64
	s, err := dynamo.NewStore(dynamo.NewClient(cfg, func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, unprocessHalf(&requests))
	}), table)
	if err != nil {
		t.Fatal(err)
	}
	plain := newStore(t, cfg, table)
	ids := make([]job.ID, 40)
	for i := range ids {
		ids[i] = job.ID(fmt.Sprintf("unprocessed-%02d", i))
		if _, err := plain.PutConfig(t.Context(), storetest.Config(ids[i])); err != nil {
			t.Fatal(err)
		}
		if _, err := plain.PutStatus(t.Context(), 1, storetest.Status(ids[i])); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ReadJobs(t.Context(), ids)
	if err != nil {
		t.Fatalf("ReadJobs: %v", err)
	}
	for i, js := range got {
		if js.Err != nil || js.Config.JobID != ids[i] || !js.HasStatus || js.Status.RunID != storetest.Status(ids[i]).RunID {
			t.Fatalf("job %s read as %+v, want its config and status", ids[i], js)
		}
	}
	// 120 keys: two requests, each answered in halves, then the rest.
	if n := requests.Load(); n < 4 {
		t.Fatalf("%d BatchGetItem requests, want the unprocessed keys asked for again", n)
	}
}

// A put of a reserved epoch that lands between the bulk read and the
// claim (a deposed leader paused between reserving and writing) makes the
// job's claim fail, and the put is refused after the job's own claim.
func TestClaimJobsSeesAReservedEpochWrittenAfterTheRead(t *testing.T) {
	cfg, env := stack(t)
	s := newStore(t, cfg, env[resources.EnvJobsTable])
	id := job.ID("reserved-after-read")
	if _, err := s.PutConfig(t.Context(), storetest.Config(id)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCheckpoint(t.Context(), 1, storetest.Checkpoint(id, 1)); err != nil {
		t.Fatal(err)
	}
	// Epoch 2 is reserved (as by CreateCheckpoint's first write) but its
	// item is not written yet.
	if err := s.CreateCheckpoint(t.Context(), 1, storetest.Checkpoint(id, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteCheckpoints(t.Context(), 1, id, 3); err != nil {
		t.Fatal(err)
	}
	read, err := s.ReadJobs(t.Context(), []job.ID{id})
	if err != nil {
		t.Fatal(err)
	}
	if read[0].MaxEpoch != 2 || len(read[0].Checkpoints) != 0 {
		t.Fatalf("read max epoch %d and %d checkpoints, want 2 and none", read[0].MaxEpoch, len(read[0].Checkpoints))
	}
	if err := dynamo.PutReservedCheckpoint(t.Context(), s, 1, storetest.Checkpoint(id, 2)); err != nil {
		t.Fatalf("put of the reserved epoch before any claim: %v", err)
	}
	if err := s.ClaimJobs(t.Context(), 2, read)[0]; err == nil {
		t.Fatal("ClaimJobs claimed a job whose reserved epoch was written after the read")
	}
	// Read again and claimed, the job's reserved epochs are fenced.
	read, err = s.ReadJobs(t.Context(), []job.ID{id})
	if err != nil {
		t.Fatal(err)
	}
	if len(read[0].Checkpoints) != 1 {
		t.Fatalf("read %d checkpoints, want epoch 2", len(read[0].Checkpoints))
	}
	if err := s.ClaimJobs(t.Context(), 2, read)[0]; err != nil {
		t.Fatalf("ClaimJobs of the job read again: %v", err)
	}
	cp := storetest.Checkpoint(id, 2)
	cp.State = job.CheckpointFailed
	if err := s.UpdateCheckpoint(t.Context(), 1, cp); err == nil {
		t.Fatal("the deposed leader updated a checkpoint after the bulk claim")
	}
}

// A job with more items than one transaction takes is not claimed in bulk
// (its claim must land on all of its items or none); the call says so,
// and the job is claimed one at a time.
func TestClaimJobsLeavesAJobTooBigForOneTransaction(t *testing.T) {
	cfg, env := stack(t)
	s := newStore(t, cfg, env[resources.EnvJobsTable])
	big, small := job.ID("too-big-to-claim"), job.ID("small-enough")
	for _, id := range []job.ID{big, small} {
		if _, err := s.PutConfig(t.Context(), storetest.Config(id)); err != nil {
			t.Fatal(err)
		}
	}
	for e := int64(1); e <= 99; e++ {
		if err := s.CreateCheckpoint(t.Context(), 1, storetest.Checkpoint(big, e)); err != nil {
			t.Fatal(err)
		}
	}
	read, err := s.ReadJobs(t.Context(), []job.ID{big, small})
	if err != nil {
		t.Fatal(err)
	}
	errs := s.ClaimJobs(t.Context(), 2, read)
	if errs[1] != nil {
		t.Fatalf("ClaimJobs of the small job: %v", errs[1])
	}
	if !errors.Is(errs[0], store.ErrChanged) {
		t.Fatalf("ClaimJobs of a job with 101 items = %v, want ErrChanged (claim it alone)", errs[0])
	}
	// Nothing of it was claimed.
	if _, err := s.PutStatus(t.Context(), 1, storetest.Status(big)); err != nil {
		t.Fatalf("the job too big to claim in bulk was claimed in part: %v", err)
	}
	if err := s.Claim(t.Context(), 2, big); err != nil {
		t.Fatalf("Claim of the big job alone: %v", err)
	}
}
