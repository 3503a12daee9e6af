// Package catalogtest is the contract of store.Catalog, run against every
// implementation (memstore, and DynamoDB on the emulator).
package catalogtest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// Store is what the suite needs: the catalog and the store it lists.
type Store interface {
	store.Store
	store.Catalog
}

// Run runs the suite. newStore returns an empty store for each subtest.
func Run(t *testing.T, newStore func(*testing.T) Store) {
	t.Run("ListPagesThroughEveryJobOnce", func(t *testing.T) { listPages(t, newStore(t)) })
	t.Run("ListRefusesABadLimit", func(t *testing.T) {
		if _, _, err := newStore(t).ListJobs(t.Context(), "", 0); err == nil {
			t.Error("limit 0 accepted")
		}
	})
	t.Run("DeleteRemovesEveryRecord", func(t *testing.T) { deleteAll(t, newStore(t)) })
	t.Run("DeleteRefusesStaleVersions", func(t *testing.T) { deleteStale(t, newStore(t)) })
}

func config(id job.ID) job.Config {
	return job.Config{
		JobID: id,
		Spec: job.Spec{
			Operators:      []job.Operator{{ID: "src", Parallelism: 1, Source: true}},
			SlotsPerWorker: 1, Program: "p",
		},
	}.WithDefaults()
}

func put(t *testing.T, s Store, id job.ID) job.Config {
	t.Helper()
	cfg, err := s.PutConfig(t.Context(), config(id))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func listPages(t *testing.T, s Store) {
	var want []job.ID
	statuses := map[job.ID]job.Status{}
	for i := range 5 {
		id := job.ID(fmt.Sprintf("list-%d", i))
		put(t, s, id)
		want = append(want, id)
		// Every other job has a status; one has only checkpoints (an
		// epoch counter) besides, which is no status.
		switch i % 3 {
		case 0:
			st, err := s.PutStatus(t.Context(), 1, job.Status{JobID: id, State: job.Running, RunID: int64(i + 1), LastReadyEpoch: int64(10 + i)})
			if err != nil {
				t.Fatal(err)
			}
			statuses[id] = st
		case 1:
			if err := s.CreateCheckpoint(t.Context(), 1, job.Checkpoint{JobID: id, Epoch: 1, State: job.CheckpointInProgress, StartedAt: time.Now().UTC()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []job.ID
	after := job.ID("")
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("more than 5 pages of 2 for 5 jobs: %v", got)
		}
		jobs, next, err := s.ListJobs(t.Context(), after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) > 2 {
			t.Fatalf("page of %d jobs, limit 2", len(jobs))
		}
		for _, l := range jobs {
			c := l.Config
			if c.Version != 1 || len(c.Spec.Operators) != 1 {
				t.Errorf("listed config %+v, want the stored one", c)
			}
			want, has := statuses[c.JobID]
			switch {
			case !has && l.Status != nil:
				t.Errorf("job %s has no status, listed with %+v", c.JobID, *l.Status)
			case has && l.Status == nil:
				t.Errorf("job %s listed without its status", c.JobID)
			case has && (l.Status.JobID != c.JobID || l.Status.RunID != want.RunID || l.Status.LastReadyEpoch != want.LastReadyEpoch || l.Status.Version != want.Version):
				t.Errorf("job %s listed with status %+v, want %+v", c.JobID, *l.Status, want)
			}
			got = append(got, c.JobID)
		}
		if next == "" {
			break
		}
		after = next
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("listed %v, want each of %v once", got, want)
	}
}

func deleteAll(t *testing.T, s Store) {
	ctx := t.Context()
	cfg := put(t, s, "gone")
	keep := put(t, s, "kept")
	st, err := s.PutStatus(ctx, 1, job.Status{JobID: "gone", State: job.Stopped})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCheckpoint(ctx, 1, job.Checkpoint{JobID: "gone", Epoch: 1, State: job.CheckpointReady, StartedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteJob(ctx, "gone", cfg.Version, st.Version); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetConfig(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("config after delete: %v, want ErrNotFound", err)
	}
	if _, err := s.GetStatus(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("status after delete: %v, want ErrNotFound", err)
	}
	if cps, err := s.ListCheckpoints(ctx, "gone"); err != nil || len(cps) != 0 {
		t.Errorf("checkpoints after delete: %v, %v", cps, err)
	}
	refs, err := s.ActiveJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(refs, func(r store.JobRef) bool { return r.ID == "gone" }) {
		t.Errorf("deleted job still on the active index: %v", refs)
	}
	if got, err := s.GetConfig(ctx, "kept"); err != nil || got.Version != keep.Version {
		t.Errorf("the other job: %+v, %v", got, err)
	}
	if err := s.DeleteJob(ctx, "gone", cfg.Version, st.Version); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	// A job that never had a status is deleted with status version 0.
	if err := s.DeleteJob(ctx, "kept", keep.Version, 0); err != nil {
		t.Errorf("delete a job without status: %v", err)
	}
}

func deleteStale(t *testing.T, s Store) {
	ctx := t.Context()
	cfg := put(t, s, "stale")
	if err := s.DeleteJob(ctx, "stale", cfg.Version+1, 0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("stale config version: %v, want ErrConflict", err)
	}
	st, err := s.PutStatus(ctx, 1, job.Status{JobID: "stale", State: job.Running})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteJob(ctx, "stale", cfg.Version, 0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("status written since it was read: %v, want ErrConflict", err)
	}
	if got, err := s.GetConfig(ctx, "stale"); err != nil || got.Version != cfg.Version {
		t.Errorf("a refused delete changed the config: %+v, %v", got, err)
	}
	if got, err := s.GetStatus(ctx, "stale"); err != nil || got.Version != st.Version {
		t.Errorf("a refused delete changed the status: %+v, %v", got, err)
	}
}
