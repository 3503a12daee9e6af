package dynamo_test

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

var (
	atomicOnce sync.Once
	atomicOK   bool
)

// atomicConditions reports whether the endpoint applies concurrent
// conditional writes to one item atomically, as DynamoDB does. moto's
// server mode does not: it evaluates the condition and applies the write
// in separate steps with no lock, so two writers of one version can both
// succeed. Tests that race writers against one item can only be judged on
// an endpoint that passes this probe (DynamoDB, LocalStack, or moto with
// its DynamoDB requests serialised).
func atomicConditions(t *testing.T, cfg aws.Config, table string) bool {
	t.Helper()
	atomicOnce.Do(func() { atomicOK = probeAtomic(t, cfg, table) })
	return atomicOK
}

func probeAtomic(t *testing.T, cfg aws.Config, table string) bool {
	db := dynamodb.NewFromConfig(cfg)
	key := map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "probe#atomic"},
		"sk": &types.AttributeValueMemberS{Value: "probe"},
	}
	// A long update widens the window between check and write, as the
	// store's status writes do.
	set := "SET #v = :next"
	values := map[string]types.AttributeValue{}
	for i := range 30 {
		set += fmt.Sprintf(", pad%d = :pad", i)
	}
	values[":pad"] = &types.AttributeValueMemberS{Value: "x"}
	const rounds, writers = 40, 8
	for r := range rounds {
		cond := "#v = :read"
		vals := map[string]types.AttributeValue{
			":next": &types.AttributeValueMemberN{Value: strconv.Itoa(r + 1)},
			":pad":  values[":pad"],
		}
		if r == 0 {
			cond = "attribute_not_exists(#v)"
		} else {
			vals[":read"] = &types.AttributeValueMemberN{Value: strconv.Itoa(r)}
		}
		var won atomic.Int32
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				_, err := db.UpdateItem(t.Context(), &dynamodb.UpdateItemInput{
					TableName:                 &table,
					Key:                       key,
					UpdateExpression:          &set,
					ConditionExpression:       &cond,
					ExpressionAttributeNames:  map[string]string{"#v": "version"},
					ExpressionAttributeValues: vals,
				})
				if err == nil {
					won.Add(1)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Logf("endpoint is not atomic: %d of %d writers of version %d succeeded", won.Load(), writers, r)
			return false
		}
	}
	return true
}

// raceSkip is why race tests are skipped on a non-atomic endpoint.
const raceSkip = "the AWS endpoint applies concurrent conditional writes non-atomically (moto server mode without serialised DynamoDB requests), so races against it prove nothing; they run against memstore here, and against DynamoDB, LocalStack or a serialised moto"
