package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/infra/dynamo"
)

// slowStore is a store.Store with a fixed latency on every DynamoDB
// request a call would make, as a round trip has, and at most a fixed
// number of requests in flight, as the SDK's HTTP client and one task's
// CPU allow; it counts the requests and their capacity units, and tells a
// hook about every status it writes.
type slowStore struct {
	store.Store
	latency time.Duration
	// slots holds one token per request in flight (nil: no bound).
	slots    chan struct{}
	onStatus func(job.Status)
	// sizes: bill by item size (encoding each item costs CPU, so only the
	// cost run does); otherwise every request counts its minimum.
	sizes bool

	mu    sync.Mutex
	count map[string]int64
	units map[string]float64
	calls atomic.Int64
	// steady counts the requests of the steady state's writes
	// (checkpoints, command records, parking), which a take-over does
	// not make: calls less steady is what the take-over asked.
	steady atomic.Int64
	// ckptSize and statusSize are the latest item sizes written, for
	// billing deletes and the epoch reservation, which rewrite or remove
	// items the call does not carry.
	ckptSize, statusSize, commandsSize atomic.Int64
	// checkpoints counts each job's stored checkpoint items (under mu).
	checkpoints map[job.ID]int
}

func newSlowStore(s store.Store, latency time.Duration) *slowStore {
	return &slowStore{Store: s, latency: latency, count: map[string]int64{}, units: map[string]float64{}, checkpoints: map[job.ID]int{}}
}

// limit bounds the requests in flight (0: no bound).
func (s *slowStore) limit(n int) {
	s.slots = nil
	if n > 0 {
		s.slots = make(chan struct{}, n)
	}
}

// waitSteady is one request of a steady-state write.
func (s *slowStore) waitSteady(ctx context.Context) error {
	s.steady.Add(1)
	return s.wait(ctx)
}

// wait is one request: it waits for a free slot, then for the latency.
func (s *slowStore) wait(ctx context.Context) error {
	s.calls.Add(1)
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.latency <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(s.latency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// bill records one request of the named operation on an item of size
// bytes.
func (s *slowStore) bill(name string, read, eventual bool, size int) {
	var u float64
	if read {
		u = float64((size + 4095) / 4096)
		if u < 1 {
			u = 1
		}
		if eventual {
			u /= 2
		}
	} else {
		u = float64((size + 1023) / 1024)
		if u < 1 {
			u = 1
		}
	}
	s.mu.Lock()
	s.count[name]++
	s.units[name] += u
	s.mu.Unlock()
}

// Usage returns the requests and units counted so far and resets them.
func (s *slowStore) Usage() (map[string]int64, map[string]float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, u := s.count, s.units
	s.count, s.units = map[string]int64{}, map[string]float64{}
	return c, u
}

// size is the size DynamoDB bills the item of v by, as the DynamoDB store
// writes it (gzipped assignments and metadata, key, fence and token); a
// list of checkpoints is the sum of its items.
func (s *slowStore) size(v any) int {
	if !s.sizes {
		return 0
	}
	if cps, ok := v.([]job.Checkpoint); ok {
		n := 0
		for _, cp := range cps {
			n += s.size(cp)
		}
		return n
	}
	n, err := dynamo.ItemBytes(v)
	if err != nil {
		panic(err) // a record type the model does not know: a bug here
	}
	return n
}

func (s *slowStore) GetConfig(ctx context.Context, id job.ID) (job.Config, error) {
	if err := s.wait(ctx); err != nil {
		return job.Config{}, err
	}
	c, err := s.Store.GetConfig(ctx, id)
	s.bill("dynamodb.GetItem config", true, false, s.size(c))
	return c, err
}

func (s *slowStore) GetStatus(ctx context.Context, id job.ID) (job.Status, error) {
	if err := s.wait(ctx); err != nil {
		return job.Status{}, err
	}
	st, err := s.Store.GetStatus(ctx, id)
	s.bill("dynamodb.GetItem status", true, false, s.size(st))
	return st, err
}

func (s *slowStore) PutStatus(ctx context.Context, f store.Fence, st job.Status) (job.Status, error) {
	if err := s.wait(ctx); err != nil {
		return job.Status{}, err
	}
	out, err := s.Store.PutStatus(ctx, f, st)
	n := s.size(st)
	s.statusSize.Store(int64(n))
	s.bill("dynamodb.UpdateItem status", false, false, n)
	if err == nil && s.onStatus != nil {
		s.onStatus(out)
	}
	return out, err
}

func (s *slowStore) Claim(ctx context.Context, f store.Fence, id job.ID) error {
	// A claim raises the fence of the status item (which comes back
	// whole) and of the command record, lists the checkpoint keys, and
	// raises the fence of each checkpoint item: one round trip each.
	s.mu.Lock()
	cps := s.checkpoints[id]
	s.mu.Unlock()
	for range 3 + cps {
		if err := s.wait(ctx); err != nil {
			return err
		}
	}
	s.bill("dynamodb.UpdateItem claim status", false, false, int(s.statusSize.Load()))
	s.bill("dynamodb.UpdateItem claim commands", false, false, int(s.commandsSize.Load()))
	s.bill("dynamodb.Query claim checkpoint keys", true, false, 100*cps)
	for range cps {
		s.bill("dynamodb.UpdateItem claim checkpoint", false, false, int(s.ckptSize.Load()))
	}
	return s.Store.Claim(ctx, f, id)
}

func (s *slowStore) CreateCheckpoint(ctx context.Context, f store.Fence, cp job.Checkpoint) error {
	if err := s.waitSteady(ctx); err != nil {
		return err
	}
	err := s.Store.CreateCheckpoint(ctx, f, cp)
	if err == nil {
		s.mu.Lock()
		s.checkpoints[cp.JobID]++
		s.mu.Unlock()
	}
	// The epoch reservation updates the status item, then the checkpoint
	// item is put.
	s.bill("dynamodb.UpdateItem epoch", false, false, int(s.statusSize.Load()))
	n := s.size(cp)
	s.ckptSize.Store(int64(n))
	s.bill("dynamodb.PutItem checkpoint", false, false, n)
	return err
}

func (s *slowStore) UpdateCheckpoint(ctx context.Context, f store.Fence, cp job.Checkpoint) error {
	if err := s.waitSteady(ctx); err != nil {
		return err
	}
	// The record is put whole, billed by the larger of the item before
	// and after.
	after := s.size(cp)
	n := max(after, int(s.ckptSize.Load()))
	s.ckptSize.Store(int64(after))
	s.bill("dynamodb.PutItem checkpoint update", false, false, n)
	return s.Store.UpdateCheckpoint(ctx, f, cp)
}

func (s *slowStore) ListCheckpoints(ctx context.Context, id job.ID) ([]job.Checkpoint, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	cps, err := s.Store.ListCheckpoints(ctx, id)
	s.bill("dynamodb.Query checkpoints", true, false, s.size(cps))
	return cps, err
}

func (s *slowStore) MaxEpoch(ctx context.Context, id job.ID) (int64, error) {
	if err := s.wait(ctx); err != nil {
		return 0, err
	}
	s.bill("dynamodb.GetItem max epoch", true, false, 100)
	return s.Store.MaxEpoch(ctx, id)
}

func (s *slowStore) DeleteCheckpoints(ctx context.Context, f store.Fence, id job.ID, below int64) (int, error) {
	if err := s.waitSteady(ctx); err != nil {
		return 0, err
	}
	n, err := s.Store.DeleteCheckpoints(ctx, f, id, below)
	s.mu.Lock()
	s.checkpoints[id] = max(0, s.checkpoints[id]-n)
	s.mu.Unlock()
	// One query for the keys, a strongly consistent read of the status
	// item's fence, then one conditional delete per checkpoint, billed by
	// the item's size.
	s.bill("dynamodb.Query checkpoint keys", true, false, 100*n)
	if n > 0 {
		s.bill("dynamodb.GetItem fence", true, false, 100)
		for range n {
			s.bill("dynamodb.DeleteItem checkpoint", false, false, int(s.ckptSize.Load()))
		}
	}
	return n, err
}

func (s *slowStore) GetCommands(ctx context.Context, id job.ID) (job.Commands, error) {
	if err := s.wait(ctx); err != nil {
		return job.Commands{}, err
	}
	c, err := s.Store.GetCommands(ctx, id)
	s.bill("dynamodb.GetItem commands (controller)", true, true, s.size(c))
	return c, err
}

func (s *slowStore) PutCommands(ctx context.Context, f store.Fence, c job.Commands) (job.Commands, error) {
	if err := s.waitSteady(ctx); err != nil {
		return job.Commands{}, err
	}
	n := s.size(c)
	s.commandsSize.Store(int64(n))
	s.bill("dynamodb.UpdateItem commands", false, false, n)
	return s.Store.PutCommands(ctx, f, c)
}

func (s *slowStore) ActiveJobs(ctx context.Context) ([]store.JobRef, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	refs, err := s.Store.ActiveJobs(ctx)
	// The index is a sparse GSI read eventually consistently; each entry
	// projects the key and the config version (about 60 bytes).
	s.bill("dynamodb.Query active index", true, true, 60*len(refs))
	return refs, err
}

func (s *slowStore) Park(ctx context.Context, f store.Fence, id job.ID, configVersion int64) error {
	if err := s.waitSteady(ctx); err != nil {
		return err
	}
	s.bill("dynamodb.UpdateItem park", false, false, 200)
	return s.Store.Park(ctx, f, id, configVersion)
}

// waitAll makes n requests at once, at most par of them in flight, as the
// DynamoDB store's bulk calls do.
func (s *slowStore) waitAll(ctx context.Context, n, par int) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	var failed atomic.Value
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.wait(ctx); err != nil {
				failed.Store(err)
			}
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return err
	}
	return nil
}

// ReadJobs is, as on DynamoDB, BatchGetItem requests of 100 keys (three
// per job) one after another, then one Query per job that has checkpoint
// items, 16 at a time.
func (s *slowStore) ReadJobs(ctx context.Context, ids []job.ID) ([]store.JobState, error) {
	gets := (3*len(ids) + 99) / 100
	for range gets {
		if err := s.wait(ctx); err != nil {
			return nil, err
		}
	}
	out, err := s.Store.ReadJobs(ctx, ids)
	if err != nil {
		return nil, err
	}
	// A batch read bills each item found by its own size, strongly.
	var units []float64
	queries := 0
	for _, js := range out {
		if js.Err != nil {
			continue
		}
		units = append(units, readUnits(s.size(js.Config)))
		if js.HasStatus || js.MaxEpoch > 0 {
			units = append(units, readUnits(s.size(js.Status)))
		}
		if js.HasCommands {
			units = append(units, readUnits(s.size(js.Commands)))
		}
		if js.MaxEpoch > 0 {
			queries++
			s.bill("dynamodb.Query take-over checkpoints", true, false, s.size(js.Checkpoints))
		}
	}
	for i := range gets {
		var u float64
		for _, v := range units[min(i*100/3, len(units)):min((i+1)*100/3, len(units))] {
			u += v
		}
		s.billUnits("dynamodb.BatchGetItem take-over", u)
	}
	if err := s.waitAll(ctx, queries, 16); err != nil {
		return nil, err
	}
	return out, nil
}

func readUnits(size int) float64 { return float64(max(1, (size+4095)/4096)) }

// billUnits records one request of the named operation with its units.
func (s *slowStore) billUnits(name string, u float64) {
	s.mu.Lock()
	s.count[name]++
	s.units[name] += u
	s.mu.Unlock()
}

// ClaimJobs is, as on DynamoDB, TransactWriteItems of whole jobs, 100
// items each (status, command record, each checkpoint), 4 at a time; a
// transaction bills twice the write units of each item.
func (s *slowStore) ClaimJobs(ctx context.Context, f store.Fence, jobs []store.JobState) []error {
	writeUnits := func(size int64) float64 { return float64(max(1, (size+1023)/1024)) }
	var packs []float64 // units of each transaction
	items := 0
	for _, js := range jobs {
		n := 2 + len(js.Checkpoints)
		if len(packs) == 0 || items+n > 100 {
			packs = append(packs, 0)
			items = 0
		}
		items += n
		u := writeUnits(s.statusSize.Load()) + writeUnits(s.commandsSize.Load()) + float64(len(js.Checkpoints))*writeUnits(s.ckptSize.Load())
		packs[len(packs)-1] += 2 * u
	}
	for _, u := range packs {
		s.billUnits("dynamodb.TransactWriteItems take-over claim", u)
	}
	if err := s.waitAll(ctx, len(packs), 4); err != nil {
		errs := make([]error, len(jobs))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	return s.Store.ClaimJobs(ctx, f, jobs)
}

// seedCheckpoints gives every job n ready checkpoints of run 1, as a job
// that has run a while keeps (10 retained by default).
func (s *slowStore) seedCheckpoints(ctx context.Context, ids []job.ID, n int) error {
	now := time.Now()
	for _, id := range ids {
		for e := int64(1); e <= int64(n); e++ {
			if err := s.Store.CreateCheckpoint(ctx, 1, job.Checkpoint{JobID: id, Epoch: e, RunID: 1,
				State: job.CheckpointReady, StartedAt: now, FinishedAt: now}); err != nil {
				return err
			}
		}
		s.checkpoints[id] = n
	}
	return nil
}
