package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

var _ store.Catalog = (*Store)(nil)

// ListJobs pages through the jobs in job id order.
func (s *Store) ListJobs(_ context.Context, after job.ID, limit int) ([]store.Listed, job.ID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return nil, "", err
	}
	if limit < 1 {
		return nil, "", fmt.Errorf("list jobs: limit %d must be at least 1", limit)
	}
	var out []store.Listed
	for _, id := range slices.Sorted(maps.Keys(s.configs)) {
		if id <= after {
			continue
		}
		if len(out) == limit {
			return out, out[len(out)-1].Config.JobID, nil
		}
		l := store.Listed{Config: cloneConfig(s.configs[id].v)}
		if st, ok := s.statuses[id]; ok && st.v.Version > 0 {
			v := cloneStatus(st.v)
			l.Status = &v
		}
		out = append(out, l)
	}
	return out, "", nil
}

// DeleteJob removes every record of the job if both versions still match.
func (s *Store) DeleteJob(_ context.Context, id job.ID, configVersion, statusVersion int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return err
	}
	stored, ok := s.configs[id]
	cfg := stored.v
	if !ok {
		return fmt.Errorf("config of job %s: %w", id, store.ErrNotFound)
	}
	if cfg.Version != configVersion {
		return &store.ConflictError{What: "config", JobID: id, Expected: configVersion, Current: cfg.Version}
	}
	if st := s.statuses[id]; st.v.Version != statusVersion {
		return &store.ConflictError{What: "status", JobID: id, Expected: statusVersion, Current: st.v.Version}
	}
	delete(s.configs, id)
	delete(s.active, id)
	delete(s.statuses, id)
	delete(s.commands, id)
	delete(s.cps, id)
	delete(s.maxEpoch, id)
	delete(s.fences, id)
	delete(s.commandFences, id)
	delete(s.batches, id)
	s.writes++
	return nil
}
