// Package memstore is an in-memory store.Store for unit tests of the core.
// It keeps the port's contract (versions, fences, growing epochs) exactly,
// and can be told to fail so error paths can be tested.
package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// Store is safe for concurrent use.
//
// It keeps one fence per item, as the DynamoDB store does: the status
// item's (raised by status writes, checkpoint creation and Claim), the
// command record's and each checkpoint's. Claim raises them all.
type Store struct {
	mu       sync.Mutex
	configs  map[job.ID]item[job.Config]
	active   map[job.ID]bool
	statuses map[job.ID]item[job.Status]
	commands map[job.ID]item[job.Commands]
	cps      map[job.ID]map[int64]item[job.Checkpoint]
	maxEpoch map[job.ID]int64
	// fences is the fence of each job's status item, which exists (as a
	// fence and epoch counter) before any status is written.
	fences map[job.ID]store.Fence
	// commandFences is the fence of each job's command record; Claim sets
	// it before any record is written.
	commandFences map[job.ID]store.Fence
	// batches holds, per job, the token and answer of the last
	// DeleteCheckpoints or Park, which the DynamoDB store keeps on the
	// status item: deleted items cannot carry a token themselves.
	batches map[job.ID]batch
	// revs counts, per job, the writes to items a claim fences (not the
	// config, not claims): ClaimJobs compares it with ReadJobs' mark.
	revs map[job.ID]int64

	failNext    error
	writes      int
	tokens      int
	loseAnswers bool
	replays     int
}

// item is a stored record with the fence and the token of the write that
// stored it.
type item[T any] struct {
	v     T
	fence store.Fence
	tok   string
}

type batch struct {
	tok string
	n   int
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		configs:       map[job.ID]item[job.Config]{},
		active:        map[job.ID]bool{},
		statuses:      map[job.ID]item[job.Status]{},
		commands:      map[job.ID]item[job.Commands]{},
		cps:           map[job.ID]map[int64]item[job.Checkpoint]{},
		maxEpoch:      map[job.ID]int64{},
		fences:        map[job.ID]store.Fence{},
		commandFences: map[job.ID]store.Fence{},
		batches:       map[job.ID]batch{},
		revs:          map[job.ID]int64{},
	}
}

// FailNext makes the next call return err (a transient store failure).
func (s *Store) FailNext(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = err
}

// Writes counts successful writes, for tests that assert nothing changed.
func (s *Store) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// LoseAnswers makes every write apply twice with the same token and
// return the second answer: what a transport does when a write took effect, its answer was
// lost and it sent the same request again. The store's answer must be the
// same as without the loss.
func (s *Store) LoseAnswers(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loseAnswers = on
}

// Replays counts the writes applied a second time under LoseAnswers.
func (s *Store) Replays() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replays
}

func (s *Store) fail() error {
	err := s.failNext
	s.failNext = nil
	return err
}

// write runs one logical write under the lock with a fresh token, and
// again with the same token when answers are lost.
func write[R any](s *Store, apply func(tok string) (R, error)) (R, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		var zero R
		return zero, err
	}
	s.tokens++
	tok := fmt.Sprintf("t%d", s.tokens)
	r, err := apply(tok)
	if s.loseAnswers {
		s.replays++
		r, err = apply(tok)
	}
	return r, err
}

// changed counts a write to one of the job's fenced items.
func (s *Store) changed(id job.ID) {
	s.writes++
	s.revs[id]++
}

func check(stored store.Fence, f store.Fence) error {
	if f < stored {
		return fmt.Errorf("write under fence %d after fence %d: %w", f, stored, store.ErrFenced)
	}
	return nil
}

func (s *Store) GetConfig(_ context.Context, id job.ID) (job.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return job.Config{}, err
	}
	c, ok := s.configs[id]
	if !ok {
		return job.Config{}, fmt.Errorf("config of job %s: %w", id, store.ErrNotFound)
	}
	return cloneConfig(c.v), nil
}

func (s *Store) PutConfig(_ context.Context, cfg job.Config) (job.Config, error) {
	return write(s, func(tok string) (job.Config, error) {
		cur, ok := s.configs[cfg.JobID]
		if ok && cur.tok == tok {
			return cloneConfig(cur.v), nil
		}
		if (!ok && cfg.Version != 0) || (ok && cur.v.Version != cfg.Version) {
			return job.Config{}, &store.ConflictError{What: "config", JobID: cfg.JobID, Expected: cfg.Version, Current: cur.v.Version}
		}
		next := cloneConfig(cfg)
		next.Version++
		s.configs[cfg.JobID] = item[job.Config]{v: next, tok: tok}
		s.active[cfg.JobID] = true
		s.writes++
		return cloneConfig(next), nil
	})
}

func (s *Store) GetStatus(_ context.Context, id job.ID) (job.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return job.Status{}, err
	}
	st, ok := s.statuses[id]
	if !ok {
		return job.Status{}, fmt.Errorf("status of job %s: %w", id, store.ErrNotFound)
	}
	return cloneStatus(st.v), nil
}

func (s *Store) PutStatus(_ context.Context, f store.Fence, st job.Status) (job.Status, error) {
	return write(s, func(tok string) (job.Status, error) {
		cur, ok := s.statuses[st.JobID]
		if ok && cur.tok == tok {
			return cloneStatus(cur.v), nil
		}
		if err := check(s.fences[st.JobID], f); err != nil {
			return job.Status{}, fmt.Errorf("status of job %s: %w", st.JobID, err)
		}
		if (!ok && st.Version != 0) || (ok && cur.v.Version != st.Version) {
			return job.Status{}, &store.ConflictError{What: "status", JobID: st.JobID, Expected: st.Version, Current: cur.v.Version, CurrentFence: s.fences[st.JobID]}
		}
		next := cloneStatus(st)
		next.Version++
		s.statuses[st.JobID] = item[job.Status]{v: next, fence: f, tok: tok}
		s.fences[st.JobID] = f
		s.changed(st.JobID)
		return cloneStatus(next), nil
	})
}

// Claim raises the fence of every item of the job to f at once. It needs
// no token: applying it twice is applying it once.
func (s *Store) Claim(_ context.Context, f store.Fence, id job.ID) error {
	_, err := write(s, func(string) (struct{}, error) { return struct{}{}, s.claim(f, id) })
	return err
}

// claim is Claim under the lock.
func (s *Store) claim(f store.Fence, id job.ID) error {
	if err := check(s.fences[id], f); err != nil {
		return fmt.Errorf("claim job %s: status: %w", id, err)
	}
	if err := check(s.commandFences[id], f); err != nil {
		return fmt.Errorf("claim job %s: command record: %w", id, err)
	}
	for e, cp := range s.cps[id] {
		if err := check(cp.fence, f); err != nil {
			return fmt.Errorf("claim job %s: checkpoint %d: %w", id, e, err)
		}
	}
	s.fences[id] = f
	s.commandFences[id] = f
	for e, cp := range s.cps[id] {
		cp.fence = f
		s.cps[id][e] = cp
	}
	s.writes++
	return nil
}

func (s *Store) CreateCheckpoint(_ context.Context, f store.Fence, cp job.Checkpoint) error {
	_, err := write(s, func(tok string) (struct{}, error) {
		if cur, ok := s.cps[cp.JobID][cp.Epoch]; ok && cur.tok == tok {
			return struct{}{}, nil
		}
		if err := check(s.fences[cp.JobID], f); err != nil {
			return struct{}{}, fmt.Errorf("checkpoint %d of job %s: %w", cp.Epoch, cp.JobID, err)
		}
		if cp.Epoch <= s.maxEpoch[cp.JobID] {
			return struct{}{}, fmt.Errorf("epoch %d of job %s is not above %d: %w", cp.Epoch, cp.JobID, s.maxEpoch[cp.JobID], store.ErrEpochNotIncreasing)
		}
		if s.cps[cp.JobID] == nil {
			s.cps[cp.JobID] = map[int64]item[job.Checkpoint]{}
		}
		s.cps[cp.JobID][cp.Epoch] = item[job.Checkpoint]{v: cloneCheckpoint(cp), fence: f, tok: tok}
		s.maxEpoch[cp.JobID] = cp.Epoch
		s.fences[cp.JobID] = f
		s.changed(cp.JobID)
		return struct{}{}, nil
	})
	return err
}

func (s *Store) UpdateCheckpoint(_ context.Context, f store.Fence, cp job.Checkpoint) error {
	_, err := write(s, func(tok string) (struct{}, error) {
		cur, ok := s.cps[cp.JobID][cp.Epoch]
		if !ok {
			return struct{}{}, fmt.Errorf("checkpoint %d of job %s: %w", cp.Epoch, cp.JobID, store.ErrNotFound)
		}
		if cur.tok == tok {
			return struct{}{}, nil
		}
		if err := check(cur.fence, f); err != nil {
			return struct{}{}, fmt.Errorf("checkpoint %d of job %s: %w", cp.Epoch, cp.JobID, err)
		}
		s.cps[cp.JobID][cp.Epoch] = item[job.Checkpoint]{v: cloneCheckpoint(cp), fence: f, tok: tok}
		s.changed(cp.JobID)
		return struct{}{}, nil
	})
	return err
}

func (s *Store) ListCheckpoints(_ context.Context, id job.ID) ([]job.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return nil, err
	}
	out := make([]job.Checkpoint, 0, len(s.cps[id]))
	for _, cp := range s.cps[id] {
		out = append(out, cloneCheckpoint(cp.v))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Epoch < out[j].Epoch })
	return out, nil
}

func (s *Store) MaxEpoch(_ context.Context, id job.ID) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return 0, err
	}
	return s.maxEpoch[id], nil
}

func (s *Store) DeleteCheckpoints(_ context.Context, f store.Fence, id job.ID, below int64) (int, error) {
	return write(s, func(tok string) (int, error) {
		if b := s.batches[id]; b.tok == tok {
			return b.n, nil
		}
		if err := check(s.fences[id], f); err != nil {
			return 0, fmt.Errorf("checkpoints of job %s: %w", id, err)
		}
		for e, cp := range s.cps[id] {
			if e < below {
				if err := check(cp.fence, f); err != nil {
					return 0, fmt.Errorf("checkpoint %d of job %s: %w", e, id, err)
				}
			}
		}
		n := 0
		for e := range s.cps[id] {
			if e < below {
				delete(s.cps[id], e)
				n++
			}
		}
		if n > 0 {
			s.batches[id] = batch{tok: tok, n: n}
			s.changed(id)
		}
		return n, nil
	})
}

func (s *Store) GetCommands(_ context.Context, id job.ID) (job.Commands, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return job.Commands{}, err
	}
	c, ok := s.commands[id]
	if !ok {
		return job.Commands{}, fmt.Errorf("commands of job %s: %w", id, store.ErrNotFound)
	}
	return cloneCommands(c.v), nil
}

func (s *Store) PutCommands(_ context.Context, f store.Fence, c job.Commands) (job.Commands, error) {
	return write(s, func(tok string) (job.Commands, error) {
		cur, ok := s.commands[c.JobID]
		if ok && cur.tok == tok {
			return cloneCommands(cur.v), nil
		}
		if err := check(s.commandFences[c.JobID], f); err != nil {
			return job.Commands{}, fmt.Errorf("commands of job %s: %w", c.JobID, err)
		}
		next := cloneCommands(c)
		next.Version = cur.v.Version + 1
		s.commands[c.JobID] = item[job.Commands]{v: next, fence: f, tok: tok}
		s.commandFences[c.JobID] = f
		s.changed(c.JobID)
		return cloneCommands(next), nil
	})
}

func (s *Store) ActiveJobs(_ context.Context) ([]store.JobRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return nil, err
	}
	ids := slices.Sorted(maps.Keys(s.active))
	out := make([]store.JobRef, 0, len(ids))
	for _, id := range ids {
		out = append(out, store.JobRef{ID: id, ConfigVersion: s.configs[id].v.Version})
	}
	return out, nil
}

func (s *Store) Park(_ context.Context, f store.Fence, id job.ID, configVersion int64) error {
	_, err := write(s, func(tok string) (struct{}, error) {
		if b := s.batches[id]; b.tok == tok {
			return struct{}{}, nil
		}
		if err := check(s.fences[id], f); err != nil {
			return struct{}{}, fmt.Errorf("park job %s: %w", id, err)
		}
		cur, ok := s.configs[id]
		if !ok {
			return struct{}{}, fmt.Errorf("config of job %s: %w", id, store.ErrNotFound)
		}
		if cur.v.Version != configVersion {
			return struct{}{}, &store.ConflictError{What: "config", JobID: id, Expected: configVersion, Current: cur.v.Version}
		}
		delete(s.active, id)
		s.batches[id] = batch{tok: tok}
		s.changed(id)
		return struct{}{}, nil
	})
	return err
}

func cloneConfig(c job.Config) job.Config {
	c.Parallelism = maps.Clone(c.Parallelism)
	c.Spec.Operators = slices.Clone(c.Spec.Operators)
	return c
}

func cloneStatus(s job.Status) job.Status {
	s.Parallelism = maps.Clone(s.Parallelism)
	if s.Failure != nil {
		f := *s.Failure
		s.Failure = &f
	}
	return s
}

func cloneCheckpoint(cp job.Checkpoint) job.Checkpoint {
	if cp.Operators != nil {
		ops := make(map[string]job.OperatorCheckpoint, len(cp.Operators))
		for k, v := range cp.Operators {
			v.Metadata = maps.Clone(v.Metadata)
			ops[k] = v
		}
		cp.Operators = ops
	}
	return cp
}

func cloneCommands(c job.Commands) job.Commands {
	if c.Start != nil {
		st := *c.Start
		st.Assignments = slices.Clone(st.Assignments)
		c.Start = &st
	}
	if c.Checkpoint != nil {
		v := *c.Checkpoint
		c.Checkpoint = &v
	}
	if c.Commit != nil {
		v := *c.Commit
		c.Commit = &v
	}
	if c.Stop != nil {
		v := *c.Stop
		c.Stop = &v
	}
	return c
}
