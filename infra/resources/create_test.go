package resources_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
)

type clients struct {
	ddb   *dynamodb.Client
	sqs   *sqs.Client
	sched *scheduler.Client
}

func (c clients) all() resources.Clients {
	return resources.Clients{DynamoDB: c.ddb, SQS: c.sqs, Scheduler: c.sched}
}

// setup loads the repository's template.yaml and returns clients for the
// emulator; it skips unless integration tests are on.
func setup(t *testing.T) (*resources.Template, clients) {
	t.Helper()
	cfg := awstest.Config(t)
	path, err := resourcestest.TemplatePath()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := resources.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl, clients{ddb: dynamodb.NewFromConfig(cfg), sqs: sqs.NewFromConfig(cfg), sched: scheduler.NewFromConfig(cfg)}
}

// create runs Create and deletes the stack when the test ends.
func create(t *testing.T, tmpl *resources.Template, c clients, opts resources.Options) *resources.Stack {
	t.Helper()
	stack, err := tmpl.Create(t.Context(), c.ddb, c.sqs, opts)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { cleanup(t, c, stack) })
	return stack
}

func cleanup(t *testing.T, c clients, stack *resources.Stack) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := stack.Delete(ctx, c.ddb, c.sqs); err != nil {
		t.Errorf("Delete: %v", err)
	}
}

func mustResource(t *testing.T, s *resources.Stack, id string) resources.Resource {
	t.Helper()
	r, ok := s.Resource(id)
	if !ok {
		t.Fatalf("stack has no %s; it has %+v", id, s.Resources)
	}
	return r
}

func keys(ks []dbtypes.KeySchemaElement) []string {
	var out []string
	for _, k := range ks {
		out = append(out, aws.ToString(k.AttributeName)+" "+string(k.KeyType))
	}
	return out
}

func attrTypes(ds []dbtypes.AttributeDefinition) map[string]string {
	out := map[string]string{}
	for _, d := range ds {
		out[aws.ToString(d.AttributeName)] = string(d.AttributeType)
	}
	return out
}

func TestCreateMakesTheTablesTheTemplateDeclares(t *testing.T) {
	tmpl, c := setup(t)
	ctx := t.Context()
	stackName := awstest.Name(t, "weir")
	stack := create(t, tmpl, c, resources.Options{StackName: stackName})

	jobs := mustResource(t, stack, "JobsTable")
	if jobs.Name != stackName+"-jobs" || !jobs.Created || jobs.ARN == "" {
		t.Errorf("JobsTable = %+v, want name %s-jobs, created, with an ARN", jobs, stackName)
	}
	out, err := c.ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(jobs.Name)})
	if err != nil {
		t.Fatal(err)
	}
	desc := out.Table
	if got, want := keys(desc.KeySchema), []string{"pk HASH", "sk RANGE"}; !slices.Equal(got, want) {
		t.Errorf("jobs key schema = %v, want %v", got, want)
	}
	types := attrTypes(desc.AttributeDefinitions)
	for _, a := range []string{"pk", "sk", "active"} {
		if types[a] != "S" {
			t.Errorf("attribute %s has type %q, want S", a, types[a])
		}
	}
	if desc.BillingModeSummary == nil || desc.BillingModeSummary.BillingMode != dbtypes.BillingModePayPerRequest {
		t.Errorf("billing mode = %+v, want PAY_PER_REQUEST", desc.BillingModeSummary)
	}
	if desc.SSEDescription == nil || desc.SSEDescription.Status != dbtypes.SSEStatusEnabled {
		t.Errorf("SSE = %+v, want ENABLED", desc.SSEDescription)
	}
	if len(desc.GlobalSecondaryIndexes) != 1 {
		t.Fatalf("jobs table has %d indexes, want 1 (active-jobs)", len(desc.GlobalSecondaryIndexes))
	}
	gsi := desc.GlobalSecondaryIndexes[0]
	if aws.ToString(gsi.IndexName) != "active-jobs" {
		t.Errorf("index name = %q, want active-jobs", aws.ToString(gsi.IndexName))
	}
	if got, want := keys(gsi.KeySchema), []string{"active HASH", "pk RANGE"}; !slices.Equal(got, want) {
		t.Errorf("active-jobs key schema = %v, want %v", got, want)
	}
	if gsi.Projection == nil || gsi.Projection.ProjectionType != dbtypes.ProjectionTypeInclude || !slices.Equal(gsi.Projection.NonKeyAttributes, []string{"version"}) {
		t.Errorf("active-jobs projection = %+v, want INCLUDE [version]", gsi.Projection)
	}
	ttl, err := c.ddb.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(jobs.Name)})
	if err != nil {
		t.Fatal(err)
	}
	if d := ttl.TimeToLiveDescription; d == nil || d.TimeToLiveStatus != dbtypes.TimeToLiveStatusEnabled || aws.ToString(d.AttributeName) != "expires_at" {
		t.Errorf("TTL = %+v, want ENABLED on expires_at", ttl.TimeToLiveDescription)
	}
	backups, err := c.ddb.DescribeContinuousBackups(ctx, &dynamodb.DescribeContinuousBackupsInput{TableName: aws.String(jobs.Name)})
	if err != nil {
		t.Fatal(err)
	}
	if d := backups.ContinuousBackupsDescription; d == nil || d.PointInTimeRecoveryDescription == nil ||
		d.PointInTimeRecoveryDescription.PointInTimeRecoveryStatus != dbtypes.PointInTimeRecoveryStatusEnabled {
		t.Errorf("point-in-time recovery = %+v, want ENABLED", backups.ContinuousBackupsDescription)
	}

	lease := mustResource(t, stack, "LeaseTable")
	out, err = c.ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(lease.Name)})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Name != stackName+"-leases" {
		t.Errorf("lease table name = %q, want %s-leases", lease.Name, stackName)
	}
	if got, want := keys(out.Table.KeySchema), []string{"name HASH"}; !slices.Equal(got, want) {
		t.Errorf("lease key schema = %v, want %v", got, want)
	}
	if attrTypes(out.Table.AttributeDefinitions)["name"] != "S" {
		t.Errorf("lease key attribute types = %v, want name S", attrTypes(out.Table.AttributeDefinitions))
	}
	if d := out.Table.SSEDescription; d == nil || d.Status != dbtypes.SSEStatusEnabled {
		t.Errorf("lease table SSE = %+v, want ENABLED", d)
	}
	if len(out.Table.GlobalSecondaryIndexes) != 0 {
		t.Errorf("lease table has indexes %v, want none", out.Table.GlobalSecondaryIndexes)
	}
}

func queueAttrs(t *testing.T, c clients, url string) map[string]string {
	t.Helper()
	out, err := c.sqs.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil {
		t.Fatalf("GetQueueAttributes(%s): %v", url, err)
	}
	return out.Attributes
}

type redrive struct {
	DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
	MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
}

func redriveOf(t *testing.T, attrs map[string]string) (arn string, max int) {
	t.Helper()
	var r redrive
	if err := json.Unmarshal([]byte(attrs["RedrivePolicy"]), &r); err != nil {
		t.Fatalf("RedrivePolicy %q: %v", attrs["RedrivePolicy"], err)
	}
	// SQS may report the count as a number or as a string.
	s := string(r.MaxReceiveCount)
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("maxReceiveCount %s: %v", r.MaxReceiveCount, err)
	}
	return r.DeadLetterTargetArn, n
}

func TestCreateMakesTheQueuesTheTemplateDeclares(t *testing.T) {
	tmpl, c := setup(t)
	stackName := awstest.Name(t, "weir")
	stack := create(t, tmpl, c, resources.Options{StackName: stackName})

	dlq := mustResource(t, stack, "WorkerDeadLetterQueue")
	queue := mustResource(t, stack, "WorkerQueue")
	if queue.Name != stackName+"-worker-messages" || dlq.Name != stackName+"-worker-dlq" {
		t.Errorf("queue names = %q, %q; want %s-worker-messages, %s-worker-dlq", queue.Name, dlq.Name, stackName, stackName)
	}
	dlqAttrs := queueAttrs(t, c, dlq.URL)
	if dlqAttrs["QueueArn"] != dlq.ARN {
		t.Errorf("DLQ ARN = %q, stack says %q", dlqAttrs["QueueArn"], dlq.ARN)
	}
	for k, want := range map[string]string{"MessageRetentionPeriod": "1209600", "SqsManagedSseEnabled": "true"} {
		if dlqAttrs[k] != want {
			t.Errorf("DLQ %s = %q, want %q", k, dlqAttrs[k], want)
		}
	}
	if _, ok := dlqAttrs["RedrivePolicy"]; ok {
		t.Errorf("DLQ has a RedrivePolicy %q, want none", dlqAttrs["RedrivePolicy"])
	}

	attrs := queueAttrs(t, c, queue.URL)
	for k, want := range map[string]string{
		"VisibilityTimeout":             "30",
		"MessageRetentionPeriod":        "345600",
		"ReceiveMessageWaitTimeSeconds": "20",
		"SqsManagedSseEnabled":          "true",
	} {
		if attrs[k] != want {
			t.Errorf("worker queue %s = %q, want %q", k, attrs[k], want)
		}
	}
	if _, fifo := attrs["FifoQueue"]; fifo {
		t.Errorf("worker queue is FIFO, want standard")
	}
	arn, max := redriveOf(t, attrs)
	if arn != dlqAttrs["QueueArn"] {
		t.Errorf("redrive target = %q, want the DLQ's ARN %q", arn, dlqAttrs["QueueArn"])
	}
	if max != 5 {
		t.Errorf("maxReceiveCount = %d, want the parameter's default 5", max)
	}

	env := stack.Env()
	scheduleDLQ, _ := stack.Resource("ScheduleDeadLetterQueue")
	if !strings.HasSuffix(scheduleDLQ.ARN, ":"+stackName+"-schedule-dlq") {
		t.Errorf("schedule DLQ = %+v", scheduleDLQ)
	}
	want := map[string]string{
		resources.EnvJobsTable:            stackName + "-jobs",
		resources.EnvLeaseTable:           stackName + "-leases",
		resources.EnvWorkerQueueURL:       queue.URL,
		resources.EnvWorkerDLQURL:         dlq.URL,
		resources.EnvScheduleDLQARN:       scheduleDLQ.ARN,
		resources.EnvWorkerUrgentQueueURL: mustResource(t, stack, "WorkerUrgentQueue").URL,
	}
	if len(env) != len(want) {
		t.Errorf("Env() = %v, want %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("Env()[%s] = %q, want %q", k, env[k], v)
		}
	}
}

// A message received more than WorkerMaxReceiveCount times without being
// deleted must end in the DLQ: the redrive policy is live, not just stored.
func TestRedriveMovesAPoisonedMessageToTheDLQ(t *testing.T) {
	tmpl, c := setup(t)
	ctx := t.Context()
	stack := create(t, tmpl, c, resources.Options{StackName: awstest.Name(t, "weir"), Parameters: map[string]string{"WorkerMaxReceiveCount": "1"}})
	queue := mustResource(t, stack, "WorkerQueue")
	dlq := mustResource(t, stack, "WorkerDeadLetterQueue")
	if _, max := redriveOf(t, queueAttrs(t, c, queue.URL)); max != 1 {
		t.Fatalf("maxReceiveCount = %d, want the override 1", max)
	}

	if _, err := c.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(queue.URL), MessageBody: aws.String("poison")}); err != nil {
		t.Fatal(err)
	}
	// Zero wait and zero visibility cannot be sent (the SDK omits zeros), so
	// wait 1 s at most and make the message visible again by hand.
	receive := func(url string) []sqstypes.Message {
		out, err := c.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 1, MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		return out.Messages
	}
	msgs := receive(queue.URL)
	if len(msgs) != 1 {
		t.Fatalf("first receive got %d messages, want 1", len(msgs))
	}
	if _, err := c.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(queue.URL), ReceiptHandle: msgs[0].ReceiptHandle, VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	if n := len(receive(queue.URL)); n != 0 {
		t.Errorf("second receive got %d messages, want 0: the message should have moved to the DLQ", n)
	}
	if got := receive(dlq.URL); len(got) != 1 || aws.ToString(got[0].Body) != "poison" {
		t.Errorf("DLQ holds %v, want the one poisoned message", got)
	}
}

func TestCreateAgainReusesTheStack(t *testing.T) {
	tmpl, c := setup(t)
	opts := resources.Options{StackName: awstest.Name(t, "weir")}
	first := create(t, tmpl, c, opts)

	// A changed parameter reaches the existing queue, as a stack update would.
	opts.Parameters = map[string]string{"WorkerMaxReceiveCount": "7"}
	second, err := tmpl.Create(t.Context(), c.ddb, c.sqs, opts)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	if len(second.Resources) != len(first.Resources) {
		t.Fatalf("second Create made %d resources, first %d", len(second.Resources), len(first.Resources))
	}
	for i, r := range second.Resources {
		f := first.Resources[i]
		if r.Created {
			t.Errorf("%s: Created = true on the second run, want it reused", r.LogicalID)
		}
		if r.LogicalID != f.LogicalID || r.Name != f.Name || r.URL != f.URL || r.ARN != f.ARN {
			t.Errorf("second run gave %+v, first %+v", r, f)
		}
	}
	arn, max := redriveOf(t, queueAttrs(t, c, mustResource(t, second, "WorkerQueue").URL))
	if max != 7 || arn != mustResource(t, first, "WorkerDeadLetterQueue").ARN {
		t.Errorf("redrive after re-create = %s, %d; want the DLQ and 7", arn, max)
	}
}

func TestCreateRejectsATableWithOtherKeys(t *testing.T) {
	tmpl, c := setup(t)
	ctx := t.Context()
	stackName := awstest.Name(t, "weir")
	// A lease table with the wrong key, made by hand before the stack.
	leaseName := stackName + "-leases"
	if _, err := c.ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(leaseName),
		BillingMode:          dbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []dbtypes.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: dbtypes.ScalarAttributeTypeN}},
		KeySchema:            []dbtypes.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: dbtypes.KeyTypeHash}},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.ddb.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(leaseName)})
	})

	_, err := tmpl.Create(ctx, c.ddb, c.sqs, resources.Options{StackName: stackName})
	if !errors.Is(err, resources.ErrMismatch) {
		t.Fatalf("Create = %v, want an error wrapping ErrMismatch", err)
	}
	t.Logf("error: %v", err)

	// The jobs table, created before the lease table was checked, is rolled
	// back; the hand-made lease table is left alone.
	if _, err := c.ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(stackName + "-jobs")}); err == nil {
		t.Errorf("jobs table still exists after the failed Create")
	}
	if _, err := c.ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(leaseName)}); err != nil {
		t.Errorf("the pre-existing lease table is gone: %v", err)
	}
}

// Nothing in the package knows the weir template: a FIFO queue declared
// without a name gets the stack's name, its logical id and .fifo.
func TestCreateMakesAFIFOQueueFromAnyTemplate(t *testing.T) {
	_, c := setup(t)
	tmpl, err := resources.Load("testdata/fifo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stackName := awstest.Name(t, "weir")
	stack := create(t, tmpl, c, resources.Options{StackName: stackName})
	q := mustResource(t, stack, "Events")
	if q.Name != stackName+"-Events.fifo" {
		t.Errorf("FIFO queue name = %q, want %s-Events.fifo", q.Name, stackName)
	}
	attrs := queueAttrs(t, c, q.URL)
	if attrs["FifoQueue"] != "true" || attrs["ContentBasedDeduplication"] != "true" || attrs["DelaySeconds"] != "2" {
		t.Errorf("FIFO queue attributes = %v, want FifoQueue, ContentBasedDeduplication and DelaySeconds 2", attrs)
	}
	if len(stack.Env()) != 0 {
		t.Errorf("Env() = %v, want nothing: the template declares none of weir's resources", stack.Env())
	}
}

func TestInvalidParametersCreateNothing(t *testing.T) {
	tmpl, c := setup(t)
	stackName := awstest.Name(t, "weir")
	_, err := tmpl.Create(t.Context(), c.ddb, c.sqs, resources.Options{StackName: stackName, Parameters: map[string]string{"WorkerMaxReceiveCount": "0"}})
	var perr *resources.ParameterError
	if !errors.As(err, &perr) || perr.Name != "WorkerMaxReceiveCount" {
		t.Fatalf("Create = %v, want a ParameterError for WorkerMaxReceiveCount", err)
	}
	if _, err := c.ddb.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(stackName + "-jobs")}); err == nil {
		t.Errorf("jobs table exists after Create rejected its parameters")
	}
}

func TestLookupFindsWhatCreateMadeAndDeleteRemovesIt(t *testing.T) {
	tmpl, c := setup(t)
	ctx := t.Context()
	opts := resources.Options{StackName: awstest.Name(t, "weir")}
	created, err := tmpl.CreateWith(ctx, c.all(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := created.Resource("TtlScheduleGroup"); !ok || g.Name != opts.StackName+"-ttl" || g.ARN == "" {
		t.Errorf("schedule group = %+v, want %s-ttl with an ARN", g, opts.StackName)
	}
	found, err := tmpl.Lookup(ctx, c.all(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := found.Env(), created.Env(); len(got) != 7 || !maps.Equal(got, want) {
		t.Errorf("Lookup env = %v, want %v", got, want)
	}
	for _, c := range created.Resources {
		f, ok := found.Resource(c.LogicalID)
		if !ok || f.Name != c.Name || f.URL != c.URL || f.ARN != c.ARN {
			t.Errorf("Lookup found %+v for %s, Create made %+v", f, c.LogicalID, c)
		}
	}
	if err := found.DeleteWith(ctx, c.all()); err != nil {
		t.Fatal(err)
	}
	after, err := tmpl.Lookup(ctx, c.all(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Resources) != 0 {
		t.Errorf("after Delete, Lookup finds %+v", after.Resources)
	}
	// Deleting again is harmless.
	if err := found.DeleteWith(ctx, c.all()); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}
