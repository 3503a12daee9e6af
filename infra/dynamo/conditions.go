package dynamo

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/weirstream/weir/core/store"
)

// fenceOK holds when no controller with a higher fence wrote the item.
func fenceOK(f store.Fence) expression.ConditionBuilder {
	return expression.Or(
		expression.AttributeNotExists(expression.Name(attrFence)),
		expression.Name(attrFence).LessThanEqual(expression.Value(int64(f))),
	)
}

// versionIs holds when the stored version is the one the writer read; 0
// means the record must not exist yet.
func versionIs(v int64) expression.ConditionBuilder {
	if v == 0 {
		return expression.AttributeNotExists(expression.Name(attrVersion))
	}
	return expression.Name(attrVersion).Equal(expression.Value(v))
}

// tokenIsNot holds when the item's last record write was not the one
// carrying tok: a write that would change the item again on a retry (a
// counter) uses it, so the retry fails and finds its own token.
func tokenIsNot(tok string) expression.ConditionBuilder {
	return expression.Or(
		expression.AttributeNotExists(expression.Name(attrToken)),
		expression.Name(attrToken).NotEqual(expression.Value(tok)),
	)
}

// stored is what a failed condition says of the item as it was: the
// numbers the conditions compare and the write tokens. A missing attribute
// reads as 0 or "".
type stored struct {
	exists bool
	// record: the item holds a record, not only a fence a claim left
	// (checkpoint items: it has an epoch).
	record     bool
	version    int64
	fence      int64
	maxEpoch   int64
	token      string
	epochToken string
	batchToken string
}

func storedOf(item map[string]types.AttributeValue) stored {
	s := stored{exists: len(item) > 0}
	_, s.record = item[attrEpoch]
	s.version, _ = numberAttr(item, attrVersion)
	s.fence, _ = numberAttr(item, attrFence)
	s.maxEpoch, _ = numberAttr(item, attrMaxEpoch)
	s.token = stringAttr(item, attrToken)
	s.epochToken = stringAttr(item, attrEpochToken)
	s.batchToken = stringAttr(item, attrBatchToken)
	return s
}

// conditionFailure returns the stored item of a failed single-item
// condition (nil when the item did not exist) and whether err is one.
func conditionFailure(err error) (map[string]types.AttributeValue, bool) {
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return ccf.Item, true
	}
	return nil, false
}

// cancellation returns the reasons of a cancelled transaction.
func cancellation(err error) ([]types.CancellationReason, bool) {
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		return tce.CancellationReasons, true
	}
	return nil, false
}

func conditionFailed(r types.CancellationReason) bool {
	return aws.ToString(r.Code) == "ConditionalCheckFailed"
}

// storedAfterFailure returns what a failed condition reported of the item.
// DynamoDB and the emulators that support ALL_OLD send it with the error
// (no read is charged); when an endpoint sends nothing, a strongly
// consistent read stands in, so the error is still classified correctly.
func (s *Store) storedAfterFailure(ctx context.Context, k map[string]types.AttributeValue, returned map[string]types.AttributeValue) (stored, error) {
	if returned != nil {
		return storedOf(returned), nil
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &s.table,
		Key:            k,
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return stored{}, fmt.Errorf("read the item after a failed condition: %w", err)
	}
	return storedOf(out.Item), nil
}

// updateInput is an UpdateItem of item k with expr's update and condition.
// rv selects what a successful update returns; should the condition fail,
// DynamoDB sends the item as it was with the error (ALL_OLD).
func updateInput(table string, k map[string]types.AttributeValue, expr expression.Expression, rv types.ReturnValue) *dynamodb.UpdateItemInput {
	return &dynamodb.UpdateItemInput{
		TableName:                           &table,
		Key:                                 k,
		UpdateExpression:                    expr.Update(),
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValues:                        rv,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
}

// updateIf runs a conditional update of item k on the Jobs table and
// returns what rv selects of the updated item. refused reports a failed
// condition, with cur what the item held; err is then only a failure to
// learn that.
func (s *Store) updateIf(ctx context.Context, k map[string]types.AttributeValue, expr expression.Expression, rv types.ReturnValue) (attrs map[string]types.AttributeValue, cur stored, refused bool, err error) {
	out, err := s.db.UpdateItem(ctx, updateInput(s.table, k, expr, rv))
	if cur, refused, err = s.refusal(ctx, k, err); refused || err != nil {
		return nil, cur, refused, err
	}
	return out.Attributes, stored{}, false, nil
}

// putIf puts item, whose key is k, if expr's condition holds. A failed
// condition is reported as by updateIf.
func (s *Store) putIf(ctx context.Context, k, item map[string]types.AttributeValue, expr expression.Expression) (cur stored, refused bool, err error) {
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                           &s.table,
		Item:                                item,
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	return s.refusal(ctx, k, err)
}

// refusal tells a failed condition of a write on k (refused, with what the
// item held, or the error of reading it) from any other outcome of the
// write (err as it came).
func (s *Store) refusal(ctx context.Context, k map[string]types.AttributeValue, err error) (cur stored, refused bool, rerr error) {
	old, failed := conditionFailure(err)
	if !failed {
		return stored{}, false, err
	}
	cur, rerr = s.storedAfterFailure(ctx, k, old)
	return cur, true, rerr
}

func fencedError(what string, f store.Fence, st stored) error {
	return fmt.Errorf("%s was written under fence %d, this controller holds fence %d (%w): stop acting and let the new leader work", what, st.fence, f, store.ErrFenced)
}
