package dynamo

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

var _ store.Catalog = (*Store)(nil)

// ListJobs scans for config and status items. Operators list jobs rarely,
// and a scan of the jobs table reads every item of every job (status,
// commands, checkpoints) whatever it returns: its cost grows with the
// table, which docs/deploy.md says, and returning the status items it
// reads anyway costs nothing more. The items of one job are contiguous in
// a scan and ordered by sort key, so a job's config ("config") comes
// before its status ("status"). The page cursor is the last job id
// returned; the next page starts after that job's config item (a key the
// scan returned) and skips the rest of that job's items.
func (s *Store) ListJobs(ctx context.Context, after job.ID, limit int) ([]store.Listed, job.ID, error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("list jobs: limit %d must be at least 1", limit)
	}
	expr, err := expression.NewBuilder().
		WithFilter(expression.Name(attrSK).In(expression.Value(skConfig), expression.Value(skStatus))).
		Build()
	if err != nil {
		return nil, "", fmt.Errorf("build config filter: %w", err)
	}
	var start map[string]types.AttributeValue
	if after != "" {
		if err := validID(after); err != nil {
			return nil, "", err
		}
		start = key(jobKey(after), skConfig)
	}
	var out []store.Listed
	for {
		page, err := s.db.Scan(ctx, &dynamodb.ScanInput{
			TableName:                 &s.table,
			FilterExpression:          expr.Filter(),
			ExpressionAttributeNames:  expr.Names(),
			ExpressionAttributeValues: expr.Values(),
			ExclusiveStartKey:         start,
			ConsistentRead:            aws.Bool(true),
		})
		if err != nil {
			return nil, "", fmt.Errorf("list jobs: %w", err)
		}
		for _, item := range page.Items {
			pk := stringAttr(item, attrPK)
			switch stringAttr(item, attrSK) {
			case skConfig:
				if len(out) == limit {
					return out, out[len(out)-1].Config.JobID, nil
				}
				var it configItem
				if err := unmarshal(item, &it); err != nil {
					return nil, "", fmt.Errorf("decode config item: %w", err)
				}
				out = append(out, store.Listed{Config: it.Config})
			case skStatus:
				// Only the status of the job just listed; one that carries
				// only the epoch counter (no version) is no status yet.
				if len(out) == 0 || pk != jobKey(out[len(out)-1].Config.JobID) {
					continue
				}
				if _, ok := item[attrVersion]; !ok {
					continue
				}
				var it statusItem
				if err := unmarshal(item, &it); err != nil {
					return nil, "", fmt.Errorf("decode status item of %s: %w", pk, err)
				}
				out[len(out)-1].Status = &it.Status
			}
		}
		if page.LastEvaluatedKey == nil {
			return out, "", nil
		}
		start = page.LastEvaluatedKey
	}
}

// DeleteJob deletes the job's partition in one transaction whose first two
// actions check the config and status versions, so a job that changed
// after it was read is left whole.
func (s *Store) DeleteJob(ctx context.Context, id job.ID, configVersion, statusVersion int64) error {
	if err := validID(id); err != nil {
		return err
	}
	keys, err := s.partitionKeys(ctx, id)
	if err != nil {
		return err
	}
	if len(keys) > maxTransactItems {
		return fmt.Errorf("delete job %s: it has %d records, more than one transaction of %d can delete: wait for checkpoint cleanup and retry", id, len(keys), maxTransactItems)
	}
	versionCond := func(v int64) (expression.Expression, error) {
		c := expression.Name(attrVersion).Equal(expression.Value(v))
		if v == 0 {
			c = expression.AttributeNotExists(expression.Name(attrVersion))
		}
		return expression.NewBuilder().WithCondition(c).Build()
	}
	cfgCond, err := versionCond(configVersion)
	if err != nil {
		return err
	}
	stCond, err := versionCond(statusVersion)
	if err != nil {
		return err
	}
	deleteIf := func(sk string, e expression.Expression) types.TransactWriteItem {
		return types.TransactWriteItem{Delete: &types.Delete{
			TableName:                 &s.table,
			Key:                       key(jobKey(id), sk),
			ConditionExpression:       e.Condition(),
			ExpressionAttributeNames:  e.Names(),
			ExpressionAttributeValues: e.Values(),
		}}
	}
	items := []types.TransactWriteItem{deleteIf(skConfig, cfgCond), deleteIf(skStatus, stCond)}
	for _, k := range keys {
		if sk := k[attrSK].(*types.AttributeValueMemberS).Value; sk != skConfig && sk != skStatus {
			items = append(items, types.TransactWriteItem{Delete: &types.Delete{TableName: &s.table, Key: k}})
		}
	}
	_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
	var canceled *types.TransactionCanceledException
	if errors.As(err, &canceled) {
		reasons := canceled.CancellationReasons
		if len(reasons) > 0 && aws.ToString(reasons[0].Code) == "ConditionalCheckFailed" {
			if configVersion == 0 {
				return fmt.Errorf("config of job %s: %w", id, store.ErrNotFound)
			}
			return &store.ConflictError{What: "config", JobID: id, Expected: configVersion, Current: -1}
		}
		if len(reasons) > 1 && aws.ToString(reasons[1].Code) == "ConditionalCheckFailed" {
			return &store.ConflictError{What: "status", JobID: id, Expected: statusVersion, Current: -1}
		}
	}
	if err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	return nil
}

// partitionKeys returns the keys of every item of the job, or ErrNotFound
// when it has no config.
func (s *Store) partitionKeys(ctx context.Context, id job.ID) ([]map[string]types.AttributeValue, error) {
	expr, err := expression.NewBuilder().
		WithKeyCondition(expression.Key(attrPK).Equal(expression.Value(jobKey(id)))).
		WithProjection(expression.NamesList(expression.Name(attrPK), expression.Name(attrSK))).
		Build()
	if err != nil {
		return nil, fmt.Errorf("build partition query: %w", err)
	}
	var keys []map[string]types.AttributeValue
	hasConfig := false
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 &s.table,
		KeyConditionExpression:    expr.KeyCondition(),
		ProjectionExpression:      expr.Projection(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("read records of job %s: %w", id, err)
		}
		for _, item := range page.Items {
			if sk, ok := item[attrSK].(*types.AttributeValueMemberS); ok && sk.Value == skConfig {
				hasConfig = true
			}
			keys = append(keys, item)
		}
	}
	if !hasConfig {
		return nil, fmt.Errorf("config of job %s: %w", id, store.ErrNotFound)
	}
	return keys, nil
}
