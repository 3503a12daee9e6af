package dynamo

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// Store is store.Store on the Jobs table. It is safe for concurrent use.
type Store struct {
	db    *dynamodb.Client
	table string
}

var _ store.Store = (*Store)(nil)

// NewStore returns a store on the named Jobs table (WEIR_JOBS_TABLE). Build
// db with NewClient so throttling is retried patiently.
func NewStore(db *dynamodb.Client, table string) (*Store, error) {
	if db == nil {
		return nil, errors.New("dynamo store: the DynamoDB client is nil: build one with dynamo.NewClient")
	}
	if table == "" {
		return nil, errors.New("dynamo store: the jobs table name is empty: set WEIR_JOBS_TABLE to the stack's JobsTableName output")
	}
	return &Store{db: db, table: table}, nil
}

// Transactions cancel whole: 100 actions at most, one of which is the fence
// check on the status item.
const maxTransactItems = 100

var (
	statusAttrs   = attrNames(reflect.TypeFor[statusItem]())
	commandsAttrs = attrNames(reflect.TypeFor[commandsItem]())
)

func validID(id job.ID) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("dynamo store: %w", err)
	}
	return nil
}

func (s *Store) get(ctx context.Context, id job.ID, sk string, consistent bool) (map[string]types.AttributeValue, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &s.table,
		Key:            key(jobKey(id), sk),
		ConsistentRead: aws.Bool(consistent),
	})
	if err != nil {
		return nil, err
	}
	return out.Item, nil
}

// GetConfig reads the config strongly consistently.
func (s *Store) GetConfig(ctx context.Context, id job.ID) (job.Config, error) {
	item, err := s.get(ctx, id, skConfig, true)
	if err != nil {
		return job.Config{}, fmt.Errorf("read config of job %s: %w", id, err)
	}
	if item == nil {
		return job.Config{}, fmt.Errorf("config of job %s: %w", id, store.ErrNotFound)
	}
	var it configItem
	if err := unmarshal(item, &it); err != nil {
		return job.Config{}, fmt.Errorf("decode config of job %s: %w", id, err)
	}
	return it.Config, nil
}

// PutConfig replaces the config item if its version is the one read, and
// (re)sets `active` so the job is on the active-jobs index.
func (s *Store) PutConfig(ctx context.Context, cfg job.Config) (job.Config, error) {
	if err := validID(cfg.JobID); err != nil {
		return job.Config{}, err
	}
	next := cfg
	next.Version++
	tok := newToken()
	item, err := marshal(configItem{PK: jobKey(cfg.JobID), SK: skConfig, Active: activeValue, Token: tok, Config: next})
	if err != nil {
		return job.Config{}, fmt.Errorf("encode config of job %s: %w", cfg.JobID, err)
	}
	if err := checkSize("config", cfg.JobID, item, 0, "use fewer operators or shorter ids and program"); err != nil {
		return job.Config{}, err
	}
	cond := versionIs(cfg.Version)
	if cfg.Version == 0 {
		cond = expression.AttributeNotExists(expression.Name(attrPK))
	}
	expr, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		return job.Config{}, fmt.Errorf("build config condition: %w", err)
	}
	cur, refused, err := s.putIf(ctx, key(jobKey(cfg.JobID), skConfig), item, expr)
	if refused {
		switch {
		case err != nil:
			return job.Config{}, fmt.Errorf("config of job %s changed since version %d was read: %w", cfg.JobID, cfg.Version, err)
		case cur.token == tok:
			return next, nil // a retry of this write, which had landed
		}
		return job.Config{}, &store.ConflictError{What: "config", JobID: cfg.JobID, Expected: cfg.Version, Current: cur.version}
	}
	if err != nil {
		return job.Config{}, fmt.Errorf("write config of job %s: %w", cfg.JobID, err)
	}
	return next, nil
}

// GetStatus reads the status strongly consistently: the controller decides
// on it.
func (s *Store) GetStatus(ctx context.Context, id job.ID) (job.Status, error) {
	item, err := s.get(ctx, id, skStatus, true)
	if err != nil {
		return job.Status{}, fmt.Errorf("read status of job %s: %w", id, err)
	}
	// A status item that only carries the epoch counter (a checkpoint was
	// created before any status) has no version: no status yet.
	if _, ok := item[attrVersion]; !ok {
		return job.Status{}, fmt.Errorf("status of job %s: %w", id, store.ErrNotFound)
	}
	var it statusItem
	if err := unmarshal(item, &it); err != nil {
		return job.Status{}, fmt.Errorf("decode status of job %s: %w", id, err)
	}
	return it.Status, nil
}

// replaceRecord is the update that makes an item's record attributes
// exactly those of item: every attribute present is set, every attribute
// the record type can hold but item omits is removed. Keys and the names
// in skip are left to the caller; attributes outside the record (the epoch
// counter on the status item) are untouched.
func replaceRecord(item map[string]types.AttributeValue, all []string, skip ...string) expression.UpdateBuilder {
	var up expression.UpdateBuilder
	for _, name := range all {
		if name == attrPK || name == attrSK || slices.Contains(skip, name) {
			continue
		}
		if v, ok := item[name]; ok {
			up = up.Set(expression.Name(name), expression.Value(v))
		} else {
			up = up.Remove(expression.Name(name))
		}
	}
	return up
}

// PutStatus writes the status if its version is the one read and no newer
// controller wrote or claimed the item. ErrFenced wins over a version
// conflict; a conflict names the stored fence.
func (s *Store) PutStatus(ctx context.Context, f store.Fence, st job.Status) (job.Status, error) {
	if err := validID(st.JobID); err != nil {
		return job.Status{}, err
	}
	next := st
	next.Version++
	tok := newToken()
	item, err := marshal(statusItem{PK: jobKey(st.JobID), SK: skStatus, Fence: int64(f), Token: tok, Status: next})
	if err != nil {
		return job.Status{}, fmt.Errorf("encode status of job %s: %w", st.JobID, err)
	}
	if err := checkSize("status", st.JobID, item, statusHeadroom, "use fewer operators or a shorter failure message"); err != nil {
		return job.Status{}, err
	}
	expr, err := expression.NewBuilder().
		WithUpdate(replaceRecord(item, statusAttrs)).
		WithCondition(fenceOK(f).And(versionIs(st.Version))).
		Build()
	if err != nil {
		return job.Status{}, fmt.Errorf("build status update: %w", err)
	}
	_, cur, refused, err := s.updateIf(ctx, key(jobKey(st.JobID), skStatus), expr, types.ReturnValueNone)
	if refused {
		switch {
		case err != nil:
			return job.Status{}, fmt.Errorf("status of job %s: write rejected: %w", st.JobID, err)
		case cur.token == tok:
			return next, nil
		case cur.fence > int64(f):
			return job.Status{}, fencedError(fmt.Sprintf("status of job %s", st.JobID), f, cur)
		default:
			return job.Status{}, &store.ConflictError{What: "status", JobID: st.JobID, Expected: st.Version, Current: cur.version, CurrentFence: store.Fence(cur.fence)}
		}
	}
	if err != nil {
		return job.Status{}, fmt.Errorf("write status of job %s: %w", st.JobID, err)
	}
	return next, nil
}

// GetCommands reads the command record eventually consistently: workers
// poll it, and half-price reads are what keep that polling cheap. A worker
// that reads a record a moment old sees the new one on its next poll.
func (s *Store) GetCommands(ctx context.Context, id job.ID) (job.Commands, error) {
	item, err := s.get(ctx, id, skCommands, false)
	if err != nil {
		return job.Commands{}, fmt.Errorf("read commands of job %s: %w", id, err)
	}
	// A record with no version is the fence a claim left before any
	// command was written.
	if _, ok := item[attrVersion]; !ok {
		return job.Commands{}, fmt.Errorf("commands of job %s: %w", id, store.ErrNotFound)
	}
	var it commandsItem
	if err := unmarshal(item, &it); err != nil {
		return job.Commands{}, fmt.Errorf("decode commands of job %s: %w", id, err)
	}
	return it.commands()
}

// PutCommands replaces the command record unless a newer controller wrote
// or claimed it; the version is counted up in the same write, once: the
// write also requires that its token is not stored yet, so a retry of a
// write that landed fails and returns the version that write stored.
func (s *Store) PutCommands(ctx context.Context, f store.Fence, c job.Commands) (job.Commands, error) {
	if err := validID(c.JobID); err != nil {
		return job.Commands{}, err
	}
	tok := newToken()
	it, err := newCommandsItem(int64(f), tok, c)
	if err != nil {
		return job.Commands{}, fmt.Errorf("commands of job %s: %w", c.JobID, err)
	}
	item, err := marshal(it)
	if err != nil {
		return job.Commands{}, fmt.Errorf("encode commands of job %s: %w", c.JobID, err)
	}
	if err := checkSize("command record", c.JobID, item, 0, "assign fewer subtasks or use shorter worker and operator ids"); err != nil {
		return job.Commands{}, err
	}
	version := expression.Name(attrVersion)
	update := replaceRecord(item, commandsAttrs, attrVersion).
		Set(version, expression.Plus(expression.IfNotExists(version, expression.Value(0)), expression.Value(1)))
	expr, err := expression.NewBuilder().WithUpdate(update).WithCondition(fenceOK(f).And(tokenIsNot(tok))).Build()
	if err != nil {
		return job.Commands{}, fmt.Errorf("build commands update: %w", err)
	}
	attrs, cur, refused, err := s.updateIf(ctx, key(jobKey(c.JobID), skCommands), expr, types.ReturnValueUpdatedNew)
	if refused {
		switch {
		case err != nil:
			return job.Commands{}, fmt.Errorf("commands of job %s: write rejected: %w", c.JobID, err)
		case cur.token == tok:
			c.Version = cur.version
			return c, nil
		case cur.fence <= int64(f):
			return job.Commands{}, fmt.Errorf("write commands of job %s: refused, yet the record now allows fence %d: it changed meanwhile; write it again", c.JobID, f)
		}
		return job.Commands{}, fencedError(fmt.Sprintf("command record of job %s", c.JobID), f, cur)
	}
	if err != nil {
		return job.Commands{}, fmt.Errorf("write commands of job %s: %w", c.JobID, err)
	}
	v, ok := numberAttr(attrs, attrVersion)
	if !ok {
		return job.Commands{}, fmt.Errorf("write commands of job %s: DynamoDB returned no version", c.JobID)
	}
	c.Version = v
	return c, nil
}

// CreateCheckpoint reserves the epoch, then writes its item: two
// single-item conditional writes.
//
// The reservation is the guarantee: an update of the status item that sets
// max_epoch to the new epoch only if it is below it, and only if no newer
// controller wrote or claimed the item (raising the item's fence to the
// writer's). DynamoDB applies it atomically, so of any number of racing
// writers, in one process or many, exactly one gets each epoch, and the
// counter outlives deleted checkpoints, so an epoch is never reused. The
// item is then put if absent. A crash between the two leaves an epoch with
// no item: a gap, never a repeat. Both writes carry the call's token, so a
// retry of either after a lost answer is recognised as the call's own
// (no skipped epoch, no orphan item).
//
// This is cheaper than one TransactWriteItems of both (transactions cost
// twice the write units, and checkpoint items are the largest the store
// writes), and no less safe: the put cannot collide, because only the
// reserving writer knows the epoch is free, and Claim leaves its fence on
// the newest reserved epoch's key, so a deposed writer's put that arrives
// after a successor's claim is refused.
func (s *Store) CreateCheckpoint(ctx context.Context, f store.Fence, cp job.Checkpoint) error {
	if err := validID(cp.JobID); err != nil {
		return err
	}
	if cp.Epoch <= 0 {
		return fmt.Errorf("checkpoint epoch %d of job %s: epochs start at 1 (%w)", cp.Epoch, cp.JobID, store.ErrEpochNotIncreasing)
	}
	tok := newToken()
	// Encode and size-check first, so a record that cannot be stored does
	// not use up an epoch.
	item, err := s.checkpointAttrs(f, tok, cp)
	if err != nil {
		return err
	}
	if err := s.reserveEpoch(ctx, f, cp.JobID, cp.Epoch, tok); err != nil {
		return err
	}
	return s.putCheckpoint(ctx, f, tok, cp, item)
}

// putCheckpoint writes the item of an epoch just reserved, if absent.
func (s *Store) putCheckpoint(ctx context.Context, f store.Fence, tok string, cp job.Checkpoint, item map[string]types.AttributeValue) error {
	expr, err := expression.NewBuilder().WithCondition(expression.AttributeNotExists(expression.Name(attrPK))).Build()
	if err != nil {
		return fmt.Errorf("build checkpoint condition: %w", err)
	}
	cur, refused, err := s.putIf(ctx, key(jobKey(cp.JobID), checkpointKey(cp.Epoch)), item, expr)
	if refused {
		switch {
		case err != nil:
			return fmt.Errorf("write checkpoint %d of job %s (the epoch is reserved; start the next checkpoint at a new epoch): %w", cp.Epoch, cp.JobID, err)
		case cur.token == tok:
			return nil
		case cur.fence > int64(f):
			return fencedError(fmt.Sprintf("checkpoint %d of job %s", cp.Epoch, cp.JobID), f, cur)
		}
		return fmt.Errorf("checkpoint %d of job %s already exists although its epoch was just reserved (%w): was the status item deleted by hand?", cp.Epoch, cp.JobID, store.ErrEpochNotIncreasing)
	}
	if err != nil {
		return fmt.Errorf("write checkpoint %d of job %s (the epoch is reserved; start the next checkpoint at a new epoch): %w", cp.Epoch, cp.JobID, err)
	}
	return nil
}

func (s *Store) reserveEpoch(ctx context.Context, f store.Fence, id job.ID, epoch int64, tok string) error {
	maxEpoch := expression.Name(attrMaxEpoch)
	expr, err := expression.NewBuilder().
		WithUpdate(expression.Set(maxEpoch, expression.Value(epoch)).
			Set(expression.Name(attrFence), expression.Value(int64(f))).
			Set(expression.Name(attrEpochToken), expression.Value(tok))).
		WithCondition(fenceOK(f).And(expression.Or(
			expression.AttributeNotExists(maxEpoch),
			maxEpoch.LessThan(expression.Value(epoch)),
		))).
		Build()
	if err != nil {
		return fmt.Errorf("build epoch counter update: %w", err)
	}
	_, cur, refused, err := s.updateIf(ctx, key(jobKey(id), skStatus), expr, types.ReturnValueNone)
	if refused {
		switch {
		case err != nil:
			return fmt.Errorf("reserve checkpoint epoch %d of job %s: rejected: %w", epoch, id, err)
		case cur.epochToken == tok:
			return nil
		case cur.fence > int64(f):
			return fencedError(fmt.Sprintf("epoch counter of job %s", id), f, cur)
		default:
			return fmt.Errorf("checkpoint epoch %d of job %s is not above %d, the highest it has had (%w): start the next checkpoint at MaxEpoch+1", epoch, id, cur.maxEpoch, store.ErrEpochNotIncreasing)
		}
	}
	if err != nil {
		return fmt.Errorf("reserve checkpoint epoch %d of job %s: %w", epoch, id, err)
	}
	return nil
}

func reasonCodes(reasons []types.CancellationReason) string {
	codes := make([]string, len(reasons))
	for i, r := range reasons {
		codes[i] = aws.ToString(r.Code)
	}
	return fmt.Sprint(codes)
}

func (s *Store) checkpointAttrs(f store.Fence, tok string, cp job.Checkpoint) (map[string]types.AttributeValue, error) {
	it, err := newCheckpointItem(int64(f), tok, cp)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %d of job %s: %w", cp.Epoch, cp.JobID, err)
	}
	item, err := marshal(it)
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint %d of job %s: %w", cp.Epoch, cp.JobID, err)
	}
	what := fmt.Sprintf("checkpoint %d", cp.Epoch)
	if err := checkSize(what, cp.JobID, item, 0, "keep less operator metadata per subtask (store a pointer to the state, not the state)"); err != nil {
		return nil, err
	}
	return item, nil
}

// UpdateCheckpoint replaces an existing epoch's item unless a newer
// controller wrote or claimed it. A fence-only item a claim left is not a
// checkpoint: it has no epoch attribute.
func (s *Store) UpdateCheckpoint(ctx context.Context, f store.Fence, cp job.Checkpoint) error {
	if err := validID(cp.JobID); err != nil {
		return err
	}
	tok := newToken()
	item, err := s.checkpointAttrs(f, tok, cp)
	if err != nil {
		return err
	}
	expr, err := expression.NewBuilder().
		WithCondition(expression.AttributeExists(expression.Name(attrEpoch)).And(fenceOK(f))).
		Build()
	if err != nil {
		return fmt.Errorf("build checkpoint condition: %w", err)
	}
	cur, refused, err := s.putIf(ctx, key(jobKey(cp.JobID), checkpointKey(cp.Epoch)), item, expr)
	if refused {
		switch {
		case err != nil:
			return fmt.Errorf("update checkpoint %d of job %s: rejected: %w", cp.Epoch, cp.JobID, err)
		case cur.token == tok:
			return nil
		case cur.fence > int64(f):
			return fencedError(fmt.Sprintf("checkpoint %d of job %s", cp.Epoch, cp.JobID), f, cur)
		default:
			return fmt.Errorf("checkpoint %d of job %s: %w", cp.Epoch, cp.JobID, store.ErrNotFound)
		}
	}
	if err != nil {
		return fmt.Errorf("update checkpoint %d of job %s: %w", cp.Epoch, cp.JobID, err)
	}
	return nil
}

// queryCheckpoints pages through the job's checkpoint items with sort keys
// up to and including to, oldest first and strongly consistently, calling
// fn for each page.
func (s *Store) queryCheckpoints(ctx context.Context, id job.ID, to string, projection *expression.ProjectionBuilder, fn func([]map[string]types.AttributeValue) error) error {
	keyCond := expression.Key(attrPK).Equal(expression.Value(jobKey(id))).
		And(expression.Key(attrSK).Between(expression.Value(skCheckpoint), expression.Value(to)))
	b := expression.NewBuilder().WithKeyCondition(keyCond)
	if projection != nil {
		b = b.WithProjection(*projection)
	}
	expr, err := b.Build()
	if err != nil {
		return fmt.Errorf("build checkpoint query: %w", err)
	}
	pages := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 &s.table,
		KeyConditionExpression:    expr.KeyCondition(),
		ProjectionExpression:      expr.Projection(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ConsistentRead:            aws.Bool(true),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		if err := fn(page.Items); err != nil {
			return err
		}
	}
	return nil
}

// ListCheckpoints queries the job's checkpoint items, oldest first (the
// zero-padded sort key orders them).
func (s *Store) ListCheckpoints(ctx context.Context, id job.ID) ([]job.Checkpoint, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	out := []job.Checkpoint{}
	err := s.queryCheckpoints(ctx, id, checkpointKey(1<<63-1), nil, func(items []map[string]types.AttributeValue) error {
		for _, item := range items {
			if _, ok := item[attrEpoch]; !ok {
				continue // the fence a claim left on a reserved epoch
			}
			var it checkpointItem
			if err := unmarshal(item, &it); err != nil {
				return fmt.Errorf("decode checkpoint item: %w", err)
			}
			cp, err := it.checkpoint()
			if err != nil {
				return err
			}
			out = append(out, cp)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list checkpoints of job %s: %w", id, err)
	}
	return out, nil
}

// MaxEpoch reads the epoch counter strongly consistently.
func (s *Store) MaxEpoch(ctx context.Context, id job.ID) (int64, error) {
	if err := validID(id); err != nil {
		return 0, err
	}
	proj := expression.NamesList(expression.Name(attrMaxEpoch))
	expr, err := expression.NewBuilder().WithProjection(proj).Build()
	if err != nil {
		return 0, fmt.Errorf("build epoch projection: %w", err)
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                &s.table,
		Key:                      key(jobKey(id), skStatus),
		ProjectionExpression:     expr.Projection(),
		ExpressionAttributeNames: expr.Names(),
		ConsistentRead:           aws.Bool(true),
	})
	if err != nil {
		return 0, fmt.Errorf("read epoch counter of job %s: %w", id, err)
	}
	e, _ := numberAttr(out.Item, attrMaxEpoch)
	return e, nil
}

// batchMark is the first action of a transaction: an update of the status
// item that stores the transaction's token, only if no newer controller
// wrote or claimed the item. It costs what a ConditionCheck costs, and
// unlike one it leaves the token where a retry of the transaction finds
// it: deleted items cannot carry one.
func (s *Store) batchMark(f store.Fence, id job.ID, tok string) (types.TransactWriteItem, error) {
	expr, err := expression.NewBuilder().
		WithUpdate(expression.Set(expression.Name(attrBatchToken), expression.Value(tok))).
		WithCondition(fenceOK(f)).
		Build()
	if err != nil {
		return types.TransactWriteItem{}, fmt.Errorf("build fence check: %w", err)
	}
	return types.TransactWriteItem{Update: &types.Update{
		TableName:                           &s.table,
		Key:                                 key(jobKey(id), skStatus),
		UpdateExpression:                    expr.Update(),
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}}, nil
}

// refusedAction is the first action of a cancelled transaction whose
// condition failed, with what its item held.
type refusedAction struct {
	index int
	cur   stored
}

// transact runs a transaction. A cancellation caused by failed conditions
// is reported as the first refused action (refused true), with what its
// item held; err is then only a failure to learn that.
func (s *Store) transact(ctx context.Context, items []types.TransactWriteItem, keys []map[string]types.AttributeValue) (r refusedAction, refused bool, err error) {
	_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
	reasons, cancelled := cancellation(err)
	if !cancelled {
		return refusedAction{}, false, err
	}
	for i, reason := range reasons {
		if !conditionFailed(reason) {
			continue
		}
		cur, rerr := s.storedAfterFailure(ctx, keys[i], reason.Item)
		return refusedAction{index: i, cur: cur}, true, rerr
	}
	return refusedAction{}, false, fmt.Errorf("transaction cancelled %s: %w", reasonCodes(reasons), err)
}

// DeleteCheckpoints deletes the epochs below the bound, oldest first, each
// with a conditional DeleteItem that only deletes an item no newer
// controller wrote or claimed, after a strongly consistent read of the
// status item's fence. A former leader must not delete the checkpoint its
// successor is restoring from, even one the successor never wrote: the
// successor's Claim raises the fence of the status item first and then of
// every checkpoint item, and lists the checkpoints only after that, so a
// deposed leader's delete either lands before the successor looks (as if
// it came before the take-over) or is refused. The epoch counter is
// untouched; the fences a claim left on reserved epochs below the bound go
// too.
//
// This costs a read unit for the fence and one write unit per KB of each
// deleted item. A transaction of the deletes and a fence mark, as an
// earlier version did, costs twice the write units of every item and one
// more for the mark, and added nothing the ordering above does not give.
// A refused delete stops the call: older epochs it deleted stay deleted
// (they were below the bound either way), newer ones stay.
func (s *Store) DeleteCheckpoints(ctx context.Context, f store.Fence, id job.ID, below int64) (int, error) {
	if err := validID(id); err != nil {
		return 0, err
	}
	if below <= 1 {
		return 0, nil
	}
	type found struct {
		sk     string
		record bool
	}
	var cps []found
	proj := expression.NamesList(expression.Name(attrSK), expression.Name(attrEpoch))
	err := s.queryCheckpoints(ctx, id, checkpointKey(below-1), &proj, func(items []map[string]types.AttributeValue) error {
		for _, item := range items {
			if sk, ok := item[attrSK].(*types.AttributeValueMemberS); ok {
				_, record := item[attrEpoch]
				cps = append(cps, found{sk.Value, record})
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list checkpoints of job %s to delete: %w", id, err)
	}
	if len(cps) == 0 {
		return 0, nil
	}
	if err := s.checkStatusFence(ctx, f, id); err != nil {
		return 0, err
	}
	guard, err := expression.NewBuilder().WithCondition(fenceOK(f)).Build()
	if err != nil {
		return 0, fmt.Errorf("build fence condition: %w", err)
	}
	deleted := 0
	for _, cp := range cps {
		// A resent delete whose first attempt landed finds no item, and
		// the condition holds for a missing item: it succeeds again.
		k := key(jobKey(id), cp.sk)
		_, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName:                           &s.table,
			Key:                                 k,
			ConditionExpression:                 guard.Condition(),
			ExpressionAttributeNames:            guard.Names(),
			ExpressionAttributeValues:           guard.Values(),
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		cur, refused, err := s.refusal(ctx, k, err)
		switch {
		case refused && err != nil:
			return deleted, fmt.Errorf("delete checkpoint item %s of job %s: a condition refused the delete: %w", cp.sk, id, err)
		case refused:
			return deleted, fencedError(fmt.Sprintf("checkpoint item %s of job %s", cp.sk, id), f, cur)
		case err != nil:
			return deleted, fmt.Errorf("delete checkpoint item %s of job %s: %w", cp.sk, id, err)
		}
		if cp.record {
			deleted++
		}
	}
	return deleted, nil
}

// checkStatusFence fails with store.ErrFenced when the job's status item
// was written or claimed under a fence above f: one strongly consistent
// read of the fence alone.
func (s *Store) checkStatusFence(ctx context.Context, f store.Fence, id job.ID) error {
	proj := expression.NamesList(expression.Name(attrFence))
	expr, err := expression.NewBuilder().WithProjection(proj).Build()
	if err != nil {
		return fmt.Errorf("build fence projection: %w", err)
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                &s.table,
		Key:                      key(jobKey(id), skStatus),
		ProjectionExpression:     expr.Projection(),
		ExpressionAttributeNames: expr.Names(),
		ConsistentRead:           aws.Bool(true),
	})
	if err != nil {
		return fmt.Errorf("read the fence of job %s: %w", id, err)
	}
	if cur := storedOf(out.Item); cur.fence > int64(f) {
		return fencedError(fmt.Sprintf("status of job %s", id), f, cur)
	}
	return nil
}

// ActiveJobs is one paginated Query of the sparse active-jobs index: only
// config items carrying `active` are in it. The index follows the table
// within a moment, so a job written a moment ago may show up on the next
// poll.
func (s *Store) ActiveJobs(ctx context.Context) ([]store.JobRef, error) {
	keyCond := expression.Key(attrActive).Equal(expression.Value(activeValue))
	proj := expression.NamesList(expression.Name(attrPK), expression.Name(attrVersion))
	expr, err := expression.NewBuilder().WithKeyCondition(keyCond).WithProjection(proj).Build()
	if err != nil {
		return nil, fmt.Errorf("build active-jobs query: %w", err)
	}
	pages := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 &s.table,
		IndexName:                 aws.String(activeIndex),
		KeyConditionExpression:    expr.KeyCondition(),
		ProjectionExpression:      expr.Projection(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	var refs []store.JobRef
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("query the %s index of %s: %w", activeIndex, s.table, err)
		}
		for _, item := range page.Items {
			pk, _ := item[attrPK].(*types.AttributeValueMemberS)
			if pk == nil {
				return nil, fmt.Errorf("query the %s index of %s: an entry has no %s", activeIndex, s.table, attrPK)
			}
			id, err := jobIDOf(pk.Value)
			if err != nil {
				return nil, fmt.Errorf("query the %s index of %s: %w", activeIndex, s.table, err)
			}
			v, _ := numberAttr(item, attrVersion)
			refs = append(refs, store.JobRef{ID: id, ConfigVersion: v})
		}
	}
	return refs, nil
}

// Park removes `active` from the config item only while the config is
// still at configVersion, and only if no newer controller wrote or claimed
// the job's status: one transaction of the status mark (batchMark) and the
// config update. Parking is rare, once per job coming to rest, so its
// doubled price is small.
func (s *Store) Park(ctx context.Context, f store.Fence, id job.ID, configVersion int64) error {
	if err := validID(id); err != nil {
		return err
	}
	tok := newToken()
	mark, err := s.batchMark(f, id, tok)
	if err != nil {
		return err
	}
	expr, err := expression.NewBuilder().
		WithUpdate(expression.Remove(expression.Name(attrActive))).
		WithCondition(expression.AttributeExists(expression.Name(attrPK)).And(versionIs(configVersion))).
		Build()
	if err != nil {
		return fmt.Errorf("build park update: %w", err)
	}
	configKey := key(jobKey(id), skConfig)
	park := types.TransactWriteItem{Update: &types.Update{
		TableName:                           &s.table,
		Key:                                 configKey,
		UpdateExpression:                    expr.Update(),
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}}
	r, refused, err := s.transact(ctx, []types.TransactWriteItem{mark, park}, []map[string]types.AttributeValue{key(jobKey(id), skStatus), configKey})
	switch {
	case refused && err != nil:
		return fmt.Errorf("park job %s: rejected: %w", id, err)
	case refused && r.index == 0 && r.cur.batchToken == tok:
		return nil
	case refused && r.index == 0:
		return fencedError(fmt.Sprintf("status of job %s", id), f, r.cur)
	case refused && !r.cur.exists:
		return fmt.Errorf("config of job %s: %w", id, store.ErrNotFound)
	case refused:
		return &store.ConflictError{What: "config", JobID: id, Expected: configVersion, Current: r.cur.version}
	case err != nil:
		return fmt.Errorf("park job %s: %w", id, err)
	}
	return nil
}

// maxClaimedEpochs bounds the reserved epochs without an item that Claim
// fences. A controller creates one checkpoint at a time, so only the
// newest reserved epoch can have its item still on the way; a few more
// cover deposed controllers of earlier tenures.
const maxClaimedEpochs = 4

// Claim raises the job's fence to f on every item, in an order that
// leaves no gap: first the status item (which also holds the epoch
// counter, and which status writes, epoch reservations, checkpoint
// deletions and Park check), refusing a higher fence; then the command
// record (a fence-only item when none exists yet, which GetCommands reads
// as no record); then every checkpoint item, and the keys of the newest
// reserved epochs that have no item yet, so a put a deposed controller
// still has on the way is refused. Each is one conditional UpdateItem, so
// a claim costs a few write units per take-over, and the ordinary writes
// keep their single-item conditions. Repeating a claim changes nothing.
func (s *Store) Claim(ctx context.Context, f store.Fence, id job.ID) error {
	if err := validID(id); err != nil {
		return err
	}
	// The status item comes back whole: its max_epoch says which epochs
	// may be reserved without an item yet.
	status, err := s.raiseFence(ctx, f, id, skStatus, fmt.Sprintf("status of job %s", id), types.ReturnValueAllNew)
	if err != nil {
		return err
	}
	if _, err := s.raiseFence(ctx, f, id, skCommands, fmt.Sprintf("command record of job %s", id), types.ReturnValueNone); err != nil {
		return err
	}
	var (
		raise   []string
		highest int64
	)
	proj := expression.NamesList(expression.Name(attrSK), expression.Name(attrFence))
	err = s.queryCheckpoints(ctx, id, checkpointKey(1<<63-1), &proj, func(items []map[string]types.AttributeValue) error {
		for _, item := range items {
			sk := stringAttr(item, attrSK)
			if e, ok := epochOfKey(sk); ok && e > highest {
				highest = e
			}
			if fence, _ := numberAttr(item, attrFence); fence < int64(f) {
				raise = append(raise, sk)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("claim job %s: list its checkpoints: %w", id, err)
	}
	maxEpoch, _ := numberAttr(status, attrMaxEpoch)
	for e := max(highest+1, maxEpoch-maxClaimedEpochs+1, 1); e <= maxEpoch; e++ {
		raise = append(raise, checkpointKey(e))
	}
	for _, sk := range raise {
		if _, err := s.raiseFence(ctx, f, id, sk, fmt.Sprintf("checkpoint item %s of job %s", sk, id), types.ReturnValueNone); err != nil {
			return err
		}
	}
	return nil
}

// raiseFence sets the fence of item sk to f unless a higher fence is
// stored, creating a fence-only item when there is none, and returns what
// rv selects of the item as it now is.
func (s *Store) raiseFence(ctx context.Context, f store.Fence, id job.ID, sk, what string, rv types.ReturnValue) (map[string]types.AttributeValue, error) {
	expr, err := expression.NewBuilder().
		WithUpdate(expression.Set(expression.Name(attrFence), expression.Value(int64(f)))).
		WithCondition(fenceOK(f)).
		Build()
	if err != nil {
		return nil, fmt.Errorf("build fence update: %w", err)
	}
	attrs, cur, refused, err := s.updateIf(ctx, key(jobKey(id), sk), expr, rv)
	switch {
	case refused && err != nil:
		return nil, fmt.Errorf("claim job %s: %s refused the fence: %w", id, what, err)
	case refused:
		return nil, fmt.Errorf("claim job %s under fence %d: %w", id, f, fencedError(what, f, cur))
	case err != nil:
		return nil, fmt.Errorf("claim job %s: raise the fence of the %s: %w", id, what, err)
	}
	return attrs, nil
}
