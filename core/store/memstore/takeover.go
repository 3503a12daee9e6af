package memstore

import (
	"context"
	"fmt"
	"sort"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// mark is what ReadJobs saw of a job: the count of writes to its fenced
// items.
type mark struct {
	store *Store
	rev   int64
}

// ReadJobs reads every job at one instant.
func (s *Store) ReadJobs(_ context.Context, ids []job.ID) ([]store.JobState, error) {
	if len(ids) > store.MaxTakeoverBatch {
		return nil, fmt.Errorf("read %d jobs at once: at most %d", len(ids), store.MaxTakeoverBatch)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return nil, err
	}
	out := make([]store.JobState, len(ids))
	for i, id := range ids {
		js := store.JobState{ID: id}
		c, ok := s.configs[id]
		if !ok {
			js.Err = fmt.Errorf("config of job %s: %w", id, store.ErrNotFound)
			out[i] = js
			continue
		}
		js.Config = cloneConfig(c.v)
		if st, ok := s.statuses[id]; ok {
			js.Status, js.HasStatus = cloneStatus(st.v), true
		}
		if cmds, ok := s.commands[id]; ok {
			js.Commands, js.HasCommands = cloneCommands(cmds.v), true
		}
		js.Checkpoints = make([]job.Checkpoint, 0, len(s.cps[id]))
		for _, cp := range s.cps[id] {
			js.Checkpoints = append(js.Checkpoints, cloneCheckpoint(cp.v))
		}
		sort.Slice(js.Checkpoints, func(a, b int) bool { return js.Checkpoints[a].Epoch < js.Checkpoints[b].Epoch })
		js.MaxEpoch = s.maxEpoch[id]
		js.Mark = mark{store: s, rev: s.revs[id]}
		out[i] = js
	}
	return out, nil
}

// ClaimJobs claims every unchanged job at one instant.
func (s *Store) ClaimJobs(_ context.Context, f store.Fence, jobs []store.JobState) []error {
	errs := make([]error, len(jobs))
	if len(jobs) > store.MaxTakeoverBatch {
		for i := range errs {
			errs[i] = fmt.Errorf("claim %d jobs at once: at most %d", len(jobs), store.MaxTakeoverBatch)
		}
		return errs
	}
	_, err := write(s, func(string) (struct{}, error) {
		for i, js := range jobs {
			errs[i] = s.claimRead(f, js)
		}
		return struct{}{}, nil
	})
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}

func (s *Store) claimRead(f store.Fence, js store.JobState) error {
	m, ok := js.Mark.(mark)
	switch {
	case js.Err != nil || !ok || m.store != s:
		return fmt.Errorf("job %s was not read by this store's ReadJobs: %w", js.ID, store.ErrChanged)
	case check(s.fences[js.ID], f) != nil:
		// A higher fence wins over a change: the job is another's.
		return s.claim(f, js.ID)
	case m.rev != s.revs[js.ID]:
		return fmt.Errorf("job %s was written after it was read: %w", js.ID, store.ErrChanged)
	}
	return s.claim(f, js.ID)
}
