package accounting_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/weirstream/weir/infra/accounting"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
)

func TestLedgerCountsExactCallsPerOperation(t *testing.T) {
	cfg := awstest.Config(t)
	env := resourcestest.ForTest(t, cfg).Env()
	l, err := accounting.NewLedger()
	if err != nil {
		t.Fatal(err)
	}
	cfg = l.Instrument(cfg)
	ctx := context.Background()
	q := sqs.NewFromConfig(cfg)
	url := aws.String(env[resources.EnvWorkerQueueURL])

	for range 3 {
		if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String("small")}); err != nil {
			t.Fatal(err)
		}
	}
	// 130 KiB: three started 64 KiB chunks, so three billed requests.
	big := strings.Repeat("x", 130*1024)
	if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: &big}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: url, Entries: []sqstypes.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String("1")}, {Id: aws.String("b"), MessageBody: aws.String("2")},
	}}); err != nil {
		t.Fatal(err)
	}
	var handles []sqstypes.DeleteMessageBatchRequestEntry
	for i := 0; len(handles) < 6 && i < 20; i++ {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			handles = append(handles, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strings.Repeat("i", len(handles)+1)), ReceiptHandle: m.ReceiptHandle})
		}
	}
	if len(handles) != 6 {
		t.Fatalf("received %d messages, want 6", len(handles))
	}
	if _, err := q.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: url, Entries: handles}); err != nil {
		t.Fatal(err)
	}

	db := dynamodb.NewFromConfig(cfg)
	table := aws.String(env[resources.EnvJobsTable])
	item := map[string]ddbtypes.AttributeValue{
		"pk": &ddbtypes.AttributeValueMemberS{Value: "job#ledger"},
		"sk": &ddbtypes.AttributeValueMemberS{Value: "config"},
	}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: table, Item: item}); err != nil {
		t.Fatal(err)
	}
	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: table, Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")})
	var ccf *ddbtypes.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("conditional put of an existing item: %v, want ConditionalCheckFailedException", err)
	}
	reported := 0.0 // read units as the answers report them
	for _, consistent := range []bool{false, true} {
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: table, Key: item, ConsistentRead: aws.Bool(consistent)})
		if err != nil {
			t.Fatal(err)
		}
		if out.ConsumedCapacity == nil {
			t.Fatal("GetItem answered without consumed capacity although the ledger asked for it")
		}
		reported += aws.ToFloat64(out.ConsumedCapacity.CapacityUnits)
	}

	got := l.Snapshot()
	receives := got[accounting.Key{Service: "SQS", Operation: "ReceiveMessage"}]
	if receives < 1 {
		t.Fatalf("no ReceiveMessage counted: %v", got)
	}
	want := map[accounting.Key]int64{
		{Service: "SQS", Operation: "SendMessage"}:        4,
		{Service: "SQS", Operation: "SendMessageBatch"}:   1,
		{Service: "SQS", Operation: "ReceiveMessage"}:     receives,
		{Service: "SQS", Operation: "DeleteMessageBatch"}: 1,
		{Service: "DynamoDB", Operation: "PutItem"}:       2,
		{Service: "DynamoDB", Operation: "GetItem"}:       2,
	}
	if !maps.Equal(got, want) {
		t.Fatalf("Snapshot() = %v\nwant         %v", got, want)
	}

	u := l.Usage()
	if b := u[accounting.Key{Service: "SQS", Operation: "SendMessage"}].Billed; b != 3+3 {
		t.Errorf("SendMessage billed %d requests, want 6 (three small, one of 130 KiB billed as three)", b)
	}
	put := u[accounting.Key{Service: "DynamoDB", Operation: "PutItem"}]
	if put.Failed != 1 || put.WriteUnits != 2 {
		t.Errorf("PutItem usage = %+v; want 1 failed and 2 write units (one reported, one for the failed condition)", put)
	}
	if get := u[accounting.Key{Service: "DynamoDB", Operation: "GetItem"}]; get.ReadUnits != reported || reported == 0 {
		t.Errorf("GetItem usage = %+v; want the %v read units the answers reported", get, reported)
	}
	t.Logf("\n%s", l.Table())
}

func TestCallersOwnCapacityRequestIsKept(t *testing.T) {
	cfg := awstest.Config(t)
	env := resourcestest.ForTest(t, cfg).Env()
	l, err := accounting.NewLedger()
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(l.Instrument(cfg))
	in := &dynamodb.PutItemInput{
		TableName: aws.String(env[resources.EnvJobsTable]),
		Item: map[string]ddbtypes.AttributeValue{
			"pk": &ddbtypes.AttributeValueMemberS{Value: "job#mine"},
			"sk": &ddbtypes.AttributeValueMemberS{Value: "config"},
		},
	}
	out, err := db.PutItem(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if in.ReturnConsumedCapacity != "" {
		t.Errorf("the caller's input was changed: ReturnConsumedCapacity = %q", in.ReturnConsumedCapacity)
	}
	if out.ConsumedCapacity == nil {
		t.Errorf("no consumed capacity in the answer although the ledger asked for it")
	}
}

func TestTransactionsArePricedEvenWhenCapacityIsNotReported(t *testing.T) {
	cfg := awstest.Config(t)
	env := resourcestest.ForTest(t, cfg).Env()
	l, err := accounting.NewLedger()
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(l.Instrument(cfg))
	table := aws.String(env[resources.EnvJobsTable])
	put := func(sk string) ddbtypes.TransactWriteItem {
		return ddbtypes.TransactWriteItem{Put: &ddbtypes.Put{TableName: table, Item: map[string]ddbtypes.AttributeValue{
			"pk": &ddbtypes.AttributeValueMemberS{Value: "job#tx"},
			"sk": &ddbtypes.AttributeValueMemberS{Value: sk},
		}}}
	}
	out, err := db.TransactWriteItems(context.Background(), &dynamodb.TransactWriteItemsInput{
		TransactItems: []ddbtypes.TransactWriteItem{put("status"), put("commands")},
	})
	if err != nil {
		t.Fatal(err)
	}
	u := l.Usage()[accounting.Key{Service: "DynamoDB", Operation: "TransactWriteItems"}]
	if len(out.ConsumedCapacity) > 0 {
		if u.Unmetered != 0 || u.WriteUnits == 0 {
			t.Fatalf("usage = %+v; the endpoint reported %+v", u, out.ConsumedCapacity)
		}
		return
	}
	// Two items of under 1 KB in a transaction: at least 2 × 2 write units.
	if u.Unmetered != 1 || u.WriteUnits != 4 {
		t.Fatalf("usage = %+v; want 4 write units (the minimum) and the request marked unmetered", u)
	}
	if e := l.Estimate(accounting.USEast1); !strings.Contains(e.String(), "minimum") {
		t.Fatalf("estimate %q does not say that some requests are priced at their minimum", e)
	}
}
