package awstest_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/weirstream/weir/infra/awstest"
)

// weir's safety rests on DynamoDB's conditional writes being atomic, and
// the integration tests and fault campaigns judge it on the emulator. moto
// alone is not atomic: it checks a condition and applies the write in
// separate steps, and a cancelled transaction puts back a copy of the
// whole table taken when it began, undoing every write made meanwhile to
// any item. localstack/moto_serial.py serialises DynamoDB requests; this
// test shows the emulator the tests run on keeps both properties through
// the SDK.
func TestEmulatorDynamoDBWritesAreAtomic(t *testing.T) {
	cfg := awstest.Config(t)
	db := dynamodb.NewFromConfig(cfg)
	table := table(t, db)
	ctx := t.Context()

	t.Run("one winner per version", func(t *testing.T) {
		const rounds, writers = 20, 8
		for r := range rounds {
			var won atomic.Int32
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					cond, vals := "attribute_not_exists(#v)", map[string]types.AttributeValue{":next": num(r + 1)}
					if r > 0 {
						cond, vals[":read"] = "#v = :read", num(r)
					}
					_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
						TableName: &table, Key: key("version", "x"),
						UpdateExpression: aws.String("SET #v = :next"), ConditionExpression: &cond,
						ExpressionAttributeNames: map[string]string{"#v": "version"}, ExpressionAttributeValues: vals,
					})
					if err == nil {
						won.Add(1)
					} else if !errors.As(err, new(*types.ConditionalCheckFailedException)) {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if won.Load() != 1 {
				t.Fatalf("version %d: %d of %d conditional writers succeeded, want exactly 1", r+1, won.Load(), writers)
			}
		}
	})

	t.Run("cancelled transactions undo nothing else", func(t *testing.T) {
		const counters, increments, cancellers = 4, 15, 3
		var done atomic.Bool
		var wg sync.WaitGroup
		var cancelled atomic.Int32
		for range cancellers {
			wg.Go(func() {
				for !done.Load() {
					// Always refused: the guard item holds no such value.
					_, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
						{Update: &types.Update{TableName: &table, Key: key("guard", "x"), UpdateExpression: aws.String("SET n = :one"),
							ConditionExpression: aws.String("n = :never"), ExpressionAttributeValues: map[string]types.AttributeValue{":one": num(1), ":never": num(-1)}}},
						{Put: &types.Put{TableName: &table, Item: key("scratch", "x")}},
					}})
					if errors.As(err, new(*types.TransactionCanceledException)) {
						cancelled.Add(1)
					} else if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		var writers sync.WaitGroup
		for c := range counters {
			writers.Go(func() {
				for range increments {
					if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
						TableName: &table, Key: key("counter", strconv.Itoa(c)),
						UpdateExpression:          aws.String("ADD n :one"),
						ExpressionAttributeValues: map[string]types.AttributeValue{":one": num(1)},
					}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		writers.Wait()
		done.Store(true)
		wg.Wait()
		for c := range counters {
			out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &table, Key: key("counter", strconv.Itoa(c)), ConsistentRead: aws.Bool(true)})
			if err != nil {
				t.Fatal(err)
			}
			got := "nothing"
			if n, ok := out.Item["n"].(*types.AttributeValueMemberN); ok {
				got = n.Value
			}
			if got != strconv.Itoa(increments) {
				t.Errorf("counter %d holds %s after %d acknowledged increments (%d transactions cancelled meanwhile): a cancelled transaction undid other writes", c, got, increments, cancelled.Load())
			}
		}
		if cancelled.Load() == 0 {
			t.Error("no transaction was cancelled while the counters were written: the test proved nothing")
		}
	})
}

func table(t *testing.T, db *dynamodb.Client) string {
	t.Helper()
	name := awstest.Name(t, "atomic")
	_, err := db.CreateTable(t.Context(), &dynamodb.CreateTableInput{
		TableName: &name, BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &name}) })
	return name
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: sk}}
}

func num(n int) types.AttributeValue { return &types.AttributeValueMemberN{Value: strconv.Itoa(n)} }
