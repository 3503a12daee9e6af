package checker_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/weirstream/weir/chaos/checker"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
)

// The checker is only worth its silence if it speaks up: each history
// below breaks one invariant, written straight into the tables, and the
// checker must name it.
func TestCheckerFindsBrokenHistories(t *testing.T) {
	cfg := awstest.Config(t)
	env := resourcestest.ForTest(t, cfg).Env()
	db := dynamodb.NewFromConfig(cfg)
	ctx := context.Background()
	jobs, leases := env[resources.EnvJobsTable], env[resources.EnvLeaseTable]
	c := checker.New(checker.Config{
		DynamoDB: db, SQS: sqs.NewFromConfig(cfg), JobsTable: jobs, LeaseTable: leases,
		QueueURL: env[resources.EnvWorkerQueueURL], DLQURL: env[resources.EnvWorkerDLQURL], Seed: 42,
	})
	put := func(table string, attrs map[string]types.AttributeValue) {
		t.Helper()
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &table, Item: attrs}); err != nil {
			t.Fatal(err)
		}
	}
	poll := func() {
		t.Helper()
		if err := c.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	found := func(check string) bool {
		return slices.ContainsFunc(c.Violations(), func(v checker.Violation) bool { return v.Check == check })
	}

	put(jobs, item("job#a", "status", "fence", n("2"), "version", n("1"), "wtok", s("t1"), "max_epoch", n("3"), "state", s("Running"), "config_version", n("1")))
	put(jobs, item("job#a", "commands", "fence", n("2"), "version", n("1"), "wtok", s("c1"), "run_id", n("1"),
		"start", &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
			"assignments_gz": b(gz(t, `[{"worker_id":"w-0","operator_id":"source","subtask":0},{"worker_id":"w-1","operator_id":"source","subtask":1}]`)),
		}}))
	put(jobs, item("job#a", "cp#00000000000000000003", "fence", n("2"), "epoch", n("3"), "wtok", s("k1"), "state", s("ready"), "started_at", s("A"),
		"run_id", n("1"), "operators_gz", b(gz(t, `{"source":{"bytes":1,"metadata":{"0":"s3://a","1":"s3://b"}}}`))))
	put(leases, map[string]types.AttributeValue{"name": s("controller"), "owner": s("one"), "fence": n("5")})
	poll()
	poll()
	if v := c.Violations(); len(v) != 0 {
		t.Fatalf("a sound history was reported: %v", v)
	}

	// A deposed controller (fence 1) rewrites the command record.
	put(jobs, item("job#a", "commands", "fence", n("1"), "version", n("2"), "wtok", s("c2")))
	// Epoch 3 is deleted and created again.
	if _, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &jobs, Key: item("job#a", "cp#00000000000000000003")}); err != nil {
		t.Fatal(err)
	}
	poll()
	put(jobs, item("job#a", "cp#00000000000000000003", "fence", n("2"), "epoch", n("3"), "wtok", s("k2"), "state", s("in_progress"), "started_at", s("B")))
	// A checkpoint is ready although subtask 1 never reported it.
	put(jobs, item("job#a", "cp#00000000000000000002", "fence", n("2"), "epoch", n("2"), "wtok", s("k4"), "state", s("ready"), "started_at", s("D"),
		"run_id", n("1"), "operators_gz", b(gz(t, `{"source":{"bytes":1,"metadata":{"0":"s3://a"}}}`))))
	// The lease's fence goes back, and a checkpoint appears above the
	// epoch counter.
	put(leases, map[string]types.AttributeValue{"name": s("controller"), "owner": s("two"), "fence": n("4")})
	put(jobs, item("job#a", "cp#00000000000000000009", "fence", n("2"), "epoch", n("9"), "wtok", s("k3"), "state", s("in_progress"), "started_at", s("C")))
	poll()

	c.ConfigAcknowledged("a", 2)
	c.Final(ctx, map[string]checker.Expect{"a": {State: "Stopped", ConfigVersion: 2}}, 0)

	for _, check := range []string{"stale_write", "fence_went_back", "epoch_reused", "lease_fence_went_back", "epoch_unreserved", "checkpoint_ready_incomplete", "end_state"} {
		if !found(check) {
			t.Errorf("the checker did not report %s; it reported:\n%v", check, c.Violations())
		}
	}
	for _, v := range c.Violations() {
		if v.Seed != 42 || v.Detail == "" {
			t.Errorf("violation %v lacks its seed or detail", v)
		}
	}
}

func item(pk, sk string, kv ...any) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{"pk": s(pk), "sk": s(sk)}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(types.AttributeValue)
	}
	return m
}

func b(v []byte) types.AttributeValue { return &types.AttributeValueMemberB{Value: v} }

func gz(t *testing.T, text string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }

// heldScans holds the answer of the first Scan it sends until released,
// so a test can make a poll's read older than the next poll's.
type heldScans struct {
	base     *http.Client
	answered chan struct{} // closed when the held Scan's answer is in
	release  chan struct{}
	once     sync.Once
}

func (h *heldScans) Do(r *http.Request) (*http.Response, error) {
	resp, err := h.base.Do(r)
	if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".Scan") {
		held := false
		h.once.Do(func() { held = true })
		if held {
			close(h.answered)
			<-h.release
		}
	}
	return resp, err
}

// Overlapping polls (the periodic ones and Final's) are compared in the
// order their reads began: an older read compared last would make the
// command record's fence seem to go back, with its own write token.
func TestOverlappingPollsCompareInOrder(t *testing.T) {
	cfg := awstest.Config(t)
	env := resourcestest.ForTest(t, cfg).Env()
	ctx := context.Background()
	jobs, leases := env[resources.EnvJobsTable], env[resources.EnvLeaseTable]
	db := dynamodb.NewFromConfig(cfg)
	held := &heldScans{base: &http.Client{}, answered: make(chan struct{}), release: make(chan struct{})}
	slow := cfg.Copy()
	slow.HTTPClient = held
	c := checker.New(checker.Config{
		DynamoDB: dynamodb.NewFromConfig(slow), SQS: sqs.NewFromConfig(cfg), JobsTable: jobs, LeaseTable: leases,
		QueueURL: env[resources.EnvWorkerQueueURL], DLQURL: env[resources.EnvWorkerDLQURL], Seed: 7,
	})
	put := func(fence string) {
		t.Helper()
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &jobs,
			Item: item("job#a", "commands", "fence", n(fence), "version", n("6"), "wtok", s("c6"), "run_id", n("2"))}); err != nil {
			t.Fatal(err)
		}
	}
	put("5")
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Poll(ctx) }) // reads fence 5, its answer held
	<-held.answered
	put("6") // a successor's claim raises the fence
	wg.Go(func() { _ = c.Poll(ctx) })
	time.Sleep(300 * time.Millisecond) // the second poll would be done by now, were it not to wait
	close(held.release)
	wg.Wait()
	if err := c.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if v := c.Violations(); len(v) != 0 {
		t.Fatalf("two overlapping polls of a sound history were reported: %v", v)
	}
}
