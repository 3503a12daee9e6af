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
type Store struct {
	mu       sync.Mutex
	configs  map[job.ID]job.Config
	active   map[job.ID]bool
	statuses map[job.ID]fenced[job.Status]
	commands map[job.ID]fenced[job.Commands]
	cps      map[job.ID]map[int64]fenced[job.Checkpoint]
	maxEpoch map[job.ID]int64
	// fences is each job's fence: raised by status writes and checkpoint
	// creation, as the DynamoDB store keeps it on the status item.
	fences   map[job.ID]store.Fence
	failNext error
	writes   int
}

type fenced[T any] struct {
	v     T
	fence store.Fence
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		configs:  map[job.ID]job.Config{},
		active:   map[job.ID]bool{},
		statuses: map[job.ID]fenced[job.Status]{},
		commands: map[job.ID]fenced[job.Commands]{},
		cps:      map[job.ID]map[int64]fenced[job.Checkpoint]{},
		maxEpoch: map[job.ID]int64{},
		fences:   map[job.ID]store.Fence{},
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

func (s *Store) fail() error {
	err := s.failNext
	s.failNext = nil
	return err
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
	return cloneConfig(c), nil
}

func (s *Store) PutConfig(_ context.Context, cfg job.Config) (job.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return job.Config{}, err
	}
	cur, ok := s.configs[cfg.JobID]
	if (!ok && cfg.Version != 0) || (ok && cur.Version != cfg.Version) {
		current := int64(0)
		if ok {
			current = cur.Version
		}
		return job.Config{}, &store.ConflictError{What: "config", JobID: cfg.JobID, Expected: cfg.Version, Current: current}
	}
	cfg.Version++
	s.configs[cfg.JobID] = cloneConfig(cfg)
	s.active[cfg.JobID] = true
	s.writes++
	return cfg, nil
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return job.Status{}, err
	}
	cur, ok := s.statuses[st.JobID]
	if err := check(s.fences[st.JobID], f); err != nil {
		return job.Status{}, fmt.Errorf("status of job %s: %w", st.JobID, err)
	}
	if (!ok && st.Version != 0) || (ok && cur.v.Version != st.Version) {
		current := int64(0)
		if ok {
			current = cur.v.Version
		}
		return job.Status{}, &store.ConflictError{What: "status", JobID: st.JobID, Expected: st.Version, Current: current}
	}
	st.Version++
	s.statuses[st.JobID] = fenced[job.Status]{cloneStatus(st), f}
	s.fences[st.JobID] = f
	s.writes++
	return st, nil
}

func (s *Store) CreateCheckpoint(_ context.Context, f store.Fence, cp job.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return err
	}
	if err := check(s.fences[cp.JobID], f); err != nil {
		return fmt.Errorf("checkpoint %d of job %s: %w", cp.Epoch, cp.JobID, err)
	}
	if cp.Epoch <= s.maxEpoch[cp.JobID] {
		return fmt.Errorf("epoch %d of job %s is not above %d: %w", cp.Epoch, cp.JobID, s.maxEpoch[cp.JobID], store.ErrEpochNotIncreasing)
	}
	if s.cps[cp.JobID] == nil {
		s.cps[cp.JobID] = map[int64]fenced[job.Checkpoint]{}
	}
	s.cps[cp.JobID][cp.Epoch] = fenced[job.Checkpoint]{cloneCheckpoint(cp), f}
	s.maxEpoch[cp.JobID] = cp.Epoch
	s.fences[cp.JobID] = f
	s.writes++
	return nil
}

func (s *Store) UpdateCheckpoint(_ context.Context, f store.Fence, cp job.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return err
	}
	cur, ok := s.cps[cp.JobID][cp.Epoch]
	if !ok {
		return fmt.Errorf("checkpoint %d of job %s: %w", cp.Epoch, cp.JobID, store.ErrNotFound)
	}
	if err := check(cur.fence, f); err != nil {
		return fmt.Errorf("checkpoint %d of job %s: %w", cp.Epoch, cp.JobID, err)
	}
	s.cps[cp.JobID][cp.Epoch] = fenced[job.Checkpoint]{cloneCheckpoint(cp), f}
	s.writes++
	return nil
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return 0, err
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
		s.writes++
	}
	return n, nil
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return job.Commands{}, err
	}
	cur, ok := s.commands[c.JobID]
	if ok {
		if err := check(cur.fence, f); err != nil {
			return job.Commands{}, fmt.Errorf("commands of job %s: %w", c.JobID, err)
		}
	}
	c.Version = cur.v.Version + 1
	s.commands[c.JobID] = fenced[job.Commands]{cloneCommands(c), f}
	s.writes++
	return c, nil
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
		out = append(out, store.JobRef{ID: id, ConfigVersion: s.configs[id].Version})
	}
	return out, nil
}

func (s *Store) Park(_ context.Context, id job.ID, configVersion int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return err
	}
	cur, ok := s.configs[id]
	if !ok {
		return fmt.Errorf("config of job %s: %w", id, store.ErrNotFound)
	}
	if cur.Version != configVersion {
		return &store.ConflictError{What: "config", JobID: id, Expected: configVersion, Current: cur.Version}
	}
	delete(s.active, id)
	s.writes++
	return nil
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
