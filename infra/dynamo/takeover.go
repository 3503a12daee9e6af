package dynamo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// Bulk take-over (store.Takeover): ReadJobs is BatchGetItem of each job's
// config, status and command record (100 keys a request) and, for each job
// that ever had an epoch, one Query of its checkpoint items; ClaimJobs is
// TransactWriteItems of whole jobs (100 items a request), each item's
// fence raised only if the item still carries the write tokens it was
// read with. A job's items are in one transaction, so its claim lands on
// all of them or none.
const (
	maxBatchGetKeys = 100
	// readParallel and claimParallel bound one call's requests in flight;
	// the manager runs a few calls at once.
	readParallel  = 16
	claimParallel = 4
	// Unprocessed keys (throttling) are asked again after a back-off
	// from 50 ms doubling to 1 s, at most this many times.
	unprocessedAttempts = 10
)

// itemMark is what a read saw of one item a claim fences: its write tokens
// (empty: absent). An item whose tokens are unchanged holds what was read,
// because every write of a record, epoch reservation and transaction
// stores a fresh token (tokens.go).
type itemMark struct {
	sk                               string
	wtok, etok, ttok                 string
	checkEpochToken, checkBatchToken bool
}

// readMark is ReadJobs' store.JobState.Mark: every item the claim fences.
type readMark struct {
	store *Store
	items []itemMark
}

// ReadJobs reads the jobs with strongly consistent BatchGetItem requests
// and one strongly consistent Query per job that has checkpoint items.
func (s *Store) ReadJobs(ctx context.Context, ids []job.ID) ([]store.JobState, error) {
	if len(ids) > store.MaxTakeoverBatch {
		return nil, fmt.Errorf("read %d jobs at once: at most %d", len(ids), store.MaxTakeoverBatch)
	}
	for _, id := range ids {
		if err := validID(id); err != nil {
			return nil, err
		}
	}
	keys := make([]map[string]types.AttributeValue, 0, 3*len(ids))
	for _, id := range ids {
		for _, sk := range []string{skConfig, skStatus, skCommands} {
			keys = append(keys, key(jobKey(id), sk))
		}
	}
	found, err := s.batchGet(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make([]store.JobState, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readParallel)
	for i, id := range ids {
		js := &out[i]
		*js = store.JobState{ID: id}
		cfg := found[itemKey{jobKey(id), skConfig}]
		if cfg == nil {
			js.Err = fmt.Errorf("config of job %s: %w", id, store.ErrNotFound)
			continue
		}
		if err := s.decodeRead(js, cfg, found[itemKey{jobKey(id), skStatus}], found[itemKey{jobKey(id), skCommands}]); err != nil {
			return nil, err
		}
		if js.MaxEpoch == 0 {
			// No epoch was ever reserved: the job has no checkpoint item.
			continue
		}
		g.Go(func() error { return s.readCheckpoints(gctx, js) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

type itemKey struct{ pk, sk string }

// batchGet reads keys in requests of 100, asking again for what DynamoDB
// left unprocessed, and returns the items found by key.
func (s *Store) batchGet(ctx context.Context, keys []map[string]types.AttributeValue) (map[itemKey]map[string]types.AttributeValue, error) {
	found := make(map[itemKey]map[string]types.AttributeValue, len(keys))
	for start := 0; start < len(keys); start += maxBatchGetKeys {
		pending := keys[start:min(start+maxBatchGetKeys, len(keys))]
		for attempt := 0; len(pending) > 0; attempt++ {
			if attempt > 0 {
				if attempt >= unprocessedAttempts {
					return nil, fmt.Errorf("batch read of %s: %d keys still unprocessed after %d attempts (throttled): try again later", s.table, len(pending), attempt)
				}
				if !clock.Sleep(ctx, clock.Real{}, unprocessedBackoff(attempt)) {
					return nil, ctx.Err()
				}
			}
			out, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
				RequestItems: map[string]types.KeysAndAttributes{s.table: {Keys: pending, ConsistentRead: aws.Bool(true)}},
			})
			if err != nil {
				return nil, fmt.Errorf("batch read of %s: %w", s.table, err)
			}
			for _, item := range out.Responses[s.table] {
				found[itemKey{stringAttr(item, attrPK), stringAttr(item, attrSK)}] = item
			}
			pending = out.UnprocessedKeys[s.table].Keys
		}
	}
	return found, nil
}

// unprocessedBackoff is 50 ms doubling to 1 s, with full jitter, as AWS
// advises for unprocessed keys.
func unprocessedBackoff(attempt int) time.Duration {
	d := min(50*time.Millisecond<<min(attempt-1, 5), time.Second)
	return time.Duration(rand.Int64N(int64(d))) + time.Millisecond
}

// decodeRead fills js from the job's config, status and command items (the
// last two may be nil) and starts its mark.
func (s *Store) decodeRead(js *store.JobState, cfg, status, cmds map[string]types.AttributeValue) error {
	var ci configItem
	if err := unmarshal(cfg, &ci); err != nil {
		return fmt.Errorf("decode config of job %s: %w", js.ID, err)
	}
	js.Config = ci.Config
	mark := &readMark{store: s}
	js.Mark = mark
	mark.items = append(mark.items, itemMark{
		sk: skStatus, wtok: stringAttr(status, attrToken),
		etok: stringAttr(status, attrEpochToken), ttok: stringAttr(status, attrBatchToken),
		checkEpochToken: true, checkBatchToken: true,
	})
	js.MaxEpoch, _ = numberAttr(status, attrMaxEpoch)
	if _, ok := status[attrVersion]; ok {
		var it statusItem
		if err := unmarshal(status, &it); err != nil {
			return fmt.Errorf("decode status of job %s: %w", js.ID, err)
		}
		js.Status, js.HasStatus = it.Status, true
	}
	mark.items = append(mark.items, itemMark{sk: skCommands, wtok: stringAttr(cmds, attrToken)})
	if _, ok := cmds[attrVersion]; ok {
		var it commandsItem
		if err := unmarshal(cmds, &it); err != nil {
			return fmt.Errorf("decode commands of job %s: %w", js.ID, err)
		}
		c, err := it.commands()
		if err != nil {
			return err
		}
		js.Commands, js.HasCommands = c, true
	}
	return nil
}

// readCheckpoints queries the job's checkpoint items whole, and marks them
// and the newest reserved epochs without an item, as Claim fences them.
func (s *Store) readCheckpoints(ctx context.Context, js *store.JobState) error {
	mark := js.Mark.(*readMark)
	js.Checkpoints = []job.Checkpoint{}
	var highest int64
	err := s.queryCheckpoints(ctx, js.ID, checkpointKey(1<<63-1), nil, func(items []map[string]types.AttributeValue) error {
		for _, item := range items {
			sk := stringAttr(item, attrSK)
			if e, ok := epochOfKey(sk); ok && e > highest {
				highest = e
			}
			mark.items = append(mark.items, itemMark{sk: sk, wtok: stringAttr(item, attrToken)})
			cp, ok, err := checkpointOf(item)
			if err != nil {
				return err
			}
			if ok {
				js.Checkpoints = append(js.Checkpoints, cp)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read checkpoints of job %s: %w", js.ID, err)
	}
	for e := max(highest+1, js.MaxEpoch-maxClaimedEpochs+1, 1); e <= js.MaxEpoch; e++ {
		mark.items = append(mark.items, itemMark{sk: checkpointKey(e)})
	}
	return nil
}

// tokenIs holds when the item's attribute is tok, or absent when tok is
// empty.
func tokenIs(name, tok string) expression.ConditionBuilder {
	if tok == "" {
		return expression.AttributeNotExists(expression.Name(name))
	}
	return expression.Name(name).Equal(expression.Value(tok))
}

// claimAction raises the item's fence to f if no higher fence is stored
// and its tokens are the ones read.
func (s *Store) claimAction(f store.Fence, id job.ID, m itemMark) (types.TransactWriteItem, error) {
	cond := fenceOK(f).And(tokenIs(attrToken, m.wtok))
	if m.checkEpochToken {
		cond = cond.And(tokenIs(attrEpochToken, m.etok))
	}
	if m.checkBatchToken {
		cond = cond.And(tokenIs(attrBatchToken, m.ttok))
	}
	expr, err := expression.NewBuilder().
		WithUpdate(expression.Set(expression.Name(attrFence), expression.Value(int64(f)))).
		WithCondition(cond).
		Build()
	if err != nil {
		return types.TransactWriteItem{}, fmt.Errorf("build claim of job %s: %w", id, err)
	}
	return types.TransactWriteItem{Update: &types.Update{
		TableName:                           &s.table,
		Key:                                 key(jobKey(id), m.sk),
		UpdateExpression:                    expr.Update(),
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}}, nil
}

// claimPack is jobs claimed in one transaction.
type claimPack struct {
	jobs []int // indexes into the call's jobs
	n    int   // actions
}

// ClaimJobs claims the jobs in transactions of whole jobs. A job that
// changed since it was read, or that a higher fence claimed, cancels its
// transaction; it is dropped with its error and the rest is sent again.
func (s *Store) ClaimJobs(ctx context.Context, f store.Fence, jobs []store.JobState) []error {
	errs := make([]error, len(jobs))
	if len(jobs) > store.MaxTakeoverBatch {
		for i := range errs {
			errs[i] = fmt.Errorf("claim %d jobs at once: at most %d", len(jobs), store.MaxTakeoverBatch)
		}
		return errs
	}
	actions := make([][]types.TransactWriteItem, len(jobs))
	var packs []claimPack
	for i, js := range jobs {
		m, ok := js.Mark.(*readMark)
		switch {
		case js.Err != nil || !ok || m.store != s:
			errs[i] = fmt.Errorf("job %s was not read by this store's ReadJobs: %w", js.ID, store.ErrChanged)
			continue
		case len(m.items) > maxTransactItems:
			errs[i] = fmt.Errorf("job %s has %d items, more than one transaction takes: %w", js.ID, len(m.items), store.ErrChanged)
			continue
		}
		for _, im := range m.items {
			a, err := s.claimAction(f, js.ID, im)
			if err != nil {
				errs[i] = err
				break
			}
			actions[i] = append(actions[i], a)
		}
		if errs[i] != nil {
			continue
		}
		if len(packs) == 0 || packs[len(packs)-1].n+len(actions[i]) > maxTransactItems {
			packs = append(packs, claimPack{})
		}
		p := &packs[len(packs)-1]
		p.jobs = append(p.jobs, i)
		p.n += len(actions[i])
	}
	var g errgroup.Group
	g.SetLimit(claimParallel)
	for _, p := range packs {
		g.Go(func() error {
			s.claimTogether(ctx, f, jobs, actions, p.jobs, errs)
			return nil
		})
	}
	_ = g.Wait()
	return errs
}

// claimTogether claims the given jobs in one transaction, dropping each job a
// condition refuses and sending the rest again, until the rest is claimed.
func (s *Store) claimTogether(ctx context.Context, f store.Fence, jobs []store.JobState, actions [][]types.TransactWriteItem, pack []int, errs []error) {
	for len(pack) > 0 {
		var items []types.TransactWriteItem
		var owner []int // the job of each action
		for _, i := range pack {
			items = append(items, actions[i]...)
			for range actions[i] {
				owner = append(owner, i)
			}
		}
		_, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		if err == nil {
			return
		}
		reasons, cancelled := cancellation(err)
		refused := map[int]bool{}
		for k, r := range reasons {
			if k >= len(owner) || !conditionFailed(r) || refused[owner[k]] {
				continue
			}
			i := owner[k]
			refused[i] = true
			cur, rerr := s.storedAfterFailure(ctx, items[k].Update.Key, r.Item)
			switch {
			case rerr != nil:
				errs[i] = fmt.Errorf("claim job %s: %w", jobs[i].ID, rerr)
			case cur.fence > int64(f):
				errs[i] = fmt.Errorf("claim job %s under fence %d: %w", jobs[i].ID, f,
					fencedError(fmt.Sprintf("item %s", stringAttr(items[k].Update.Key, attrSK)), f, cur))
			default:
				errs[i] = fmt.Errorf("claim job %s: item %s changed since it was read: %w", jobs[i].ID, stringAttr(items[k].Update.Key, attrSK), store.ErrChanged)
			}
		}
		if !cancelled || len(refused) == 0 {
			for _, i := range pack {
				errs[i] = fmt.Errorf("claim job %s: %w", jobs[i].ID, err)
			}
			return
		}
		rest := pack[:0:0]
		for _, i := range pack {
			if !refused[i] {
				rest = append(rest, i)
			}
		}
		pack = rest
	}
}

var _ store.Takeover = (*Store)(nil)
