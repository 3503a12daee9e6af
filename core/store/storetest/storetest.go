// Package storetest is the conformance suite of the store port: every
// implementation of store.Store runs it, so the in-memory store the core's
// tests use and the DynamoDB adapter keep one contract.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// NewStore returns an empty store for one subtest. Adapters that share a
// backend between subtests must keep jobs apart (the suite names its jobs
// after the subtest, so one table per suite run is enough).
type NewStore func(t *testing.T) store.Store

// Option adjusts the suite to what a backend can be held to.
type Option func(*options)

type options struct {
	skipRaces string
}

// SkipRaces skips the subtests that race writers against one item, saying
// why. It is for test doubles of a backend that do not apply concurrent
// conditional writes atomically (an emulator), never for a real store: the
// races are how the suite checks that versions and epochs hold under
// contention.
func SkipRaces(reason string) Option {
	return func(o *options) { o.skipRaces = reason }
}

// Run checks every contract of store.Store against stores made by newStore.
func Run(t *testing.T, newStore NewStore, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	t.Run("Configs", func(t *testing.T) { runConfigs(t, newStore) })
	t.Run("Statuses", func(t *testing.T) { runStatuses(t, newStore) })
	t.Run("Commands", func(t *testing.T) { runCommands(t, newStore) })
	t.Run("Checkpoints", func(t *testing.T) { runCheckpoints(t, newStore) })
	t.Run("Index", func(t *testing.T) { runIndex(t, newStore) })
	t.Run("Claims", func(t *testing.T) { runClaims(t, newStore) })
	t.Run("Takeover", func(t *testing.T) { runTakeover(t, newStore) })
	t.Run("Concurrency", func(t *testing.T) {
		if o.skipRaces != "" {
			t.Skip(o.skipRaces)
		}
		runConcurrency(t, newStore)
	})
}

var jobSeq atomic.Int64

// JobID returns a job id unique to the test, so subtests sharing one table
// never see each other's jobs.
func JobID(t testing.TB, prefix string) job.ID {
	t.Helper()
	id := fmt.Sprintf("%s-%s-%d", prefix, shortName(t.Name()), jobSeq.Add(1))
	if err := job.ID(id).Validate(); err != nil {
		t.Fatalf("test job id: %v", err)
	}
	return job.ID(id)
}

func shortName(name string) string {
	b := make([]byte, 0, len(name))
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b = append(b, byte(r))
		default:
			b = append(b, '-')
		}
	}
	if len(b) > 80 {
		b = b[len(b)-80:]
	}
	return string(b)
}

// Config returns a valid config of a two-operator job with every field set,
// so round trips check them all.
func Config(id job.ID) job.Config {
	return job.Config{
		JobID: id,
		Spec: job.Spec{
			Operators: []job.Operator{
				{ID: "source", Parallelism: 2, Source: true},
				{ID: "sink", Parallelism: 3, Committing: true},
			},
			SlotsPerWorker: 4,
			Program:        "s3://bucket/pipeline.wasm",
		},
		Stop:               job.StopNone,
		RestartNonce:       "n-1",
		RestartMode:        job.RestartSafe,
		Parallelism:        map[string]int{"sink": 5},
		CheckpointInterval: 10 * time.Second,
		TTL:                time.Hour,
		RestartPolicy:      job.RestartPolicy{AllowedRestarts: 20, HealthyDuration: 2 * time.Minute},
		UpdatedAt:          time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC),
	}
}

// Status returns a status with every field set.
func Status(id job.ID) job.Status {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return job.Status{
		JobID:          id,
		State:          job.Running,
		RunID:          3,
		Restarts:       1,
		StartedAt:      at,
		RunStartedAt:   at.Add(time.Minute),
		TransitionedAt: at.Add(2 * time.Minute),
		Failure:        &job.Failure{Message: "worker w-1 lost", Domain: job.DomainInternal, At: at.Add(90 * time.Second)},
		ConfigVersion:  2,
		RestartNonce:   "n-1",
		Parallelism:    map[string]int{"source": 2, "sink": 5},
		LastReadyEpoch: 7,
		LastReadyAt:    at.Add(150 * time.Second),
		MinEpoch:       2,
		Health: job.Health{
			HeartbeatAt:      at.Add(170 * time.Second),
			RecordsInPerSec:  1234.5,
			RecordsOutPerSec: 0.25,
			TakenAt:          at.Add(3 * time.Minute),
		},
	}
}

// Checkpoint returns an in-progress checkpoint of epoch with operator
// metadata, so round trips check the nested maps.
func Checkpoint(id job.ID, epoch int64) job.Checkpoint {
	return job.Checkpoint{
		JobID:     id,
		Epoch:     epoch,
		RunID:     3,
		State:     job.CheckpointInProgress,
		StartedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(epoch) * time.Second),
		Operators: map[string]job.OperatorCheckpoint{
			"source": {Bytes: 1024, Metadata: map[int]string{0: "offset=10", 1: "offset=12"}},
		},
	}
}

// Commands returns a command record with every command set.
func Commands(id job.ID) job.Commands {
	return job.Commands{
		JobID: id,
		RunID: 3,
		Start: &job.StartCommand{
			Program:      "s3://bucket/pipeline.wasm",
			RestoreEpoch: 6,
			Assignments: []job.TaskAssignment{
				{WorkerID: "w-1", OperatorID: "source", Subtask: 0},
				{WorkerID: "w-2", OperatorID: "source", Subtask: 1},
			},
		},
		Checkpoint: &job.CheckpointCommand{Epoch: 7, MinEpoch: 2, ThenStop: true},
		Commit:     &job.CommitCommand{Epoch: 6},
		Stop:       &job.StopCommand{Mode: job.StopGraceful},

		CheckpointInterval: 15 * time.Second,
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

func mustPutConfig(t *testing.T, s store.Store, cfg job.Config) job.Config {
	t.Helper()
	got, err := s.PutConfig(ctx(t), cfg)
	if err != nil {
		t.Fatalf("PutConfig(%s, version %d): %v", cfg.JobID, cfg.Version, err)
	}
	return got
}

func mustPutStatus(t *testing.T, s store.Store, f store.Fence, st job.Status) job.Status {
	t.Helper()
	got, err := s.PutStatus(ctx(t), f, st)
	if err != nil {
		t.Fatalf("PutStatus(%s, fence %d, version %d): %v", st.JobID, f, st.Version, err)
	}
	return got
}

func mustCreate(t *testing.T, s store.Store, f store.Fence, cp job.Checkpoint) {
	t.Helper()
	if err := s.CreateCheckpoint(ctx(t), f, cp); err != nil {
		t.Fatalf("CreateCheckpoint(%s, fence %d, epoch %d): %v", cp.JobID, f, cp.Epoch, err)
	}
}

// wantConflict checks that err is a *store.ConflictError with the given
// versions that also matches store.ErrConflict.
func wantConflict(t *testing.T, err error, what string, expected, current int64) {
	t.Helper()
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("err = %v, want one matching store.ErrConflict", err)
	}
	var ce *store.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v (%T), want a *store.ConflictError", err, err)
	}
	if ce.What != what || ce.Expected != expected || ce.Current != current {
		t.Fatalf("conflict = {What: %q, Expected: %d, Current: %d}, want {%q, %d, %d}", ce.What, ce.Expected, ce.Current, what, expected, current)
	}
	if errors.Is(err, store.ErrFenced) {
		t.Fatalf("conflict %v also matches ErrFenced", err)
	}
}

func wantIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want one matching %q", err, target)
	}
}

func wantEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func runConfigs(t *testing.T, newStore NewStore) {
	t.Run("GetMissing", func(t *testing.T) {
		s := newStore(t)
		_, err := s.GetConfig(ctx(t), JobID(t, "c"))
		wantIs(t, err, store.ErrNotFound)
	})
	t.Run("CreateAndRoundTrip", func(t *testing.T) {
		s := newStore(t)
		cfg := Config(JobID(t, "c"))
		got := mustPutConfig(t, s, cfg)
		if got.Version != 1 {
			t.Fatalf("created config has version %d, want 1", got.Version)
		}
		want := cfg
		want.Version = 1
		wantEqual(t, "PutConfig result", got, want)
		read, err := s.GetConfig(ctx(t), cfg.JobID)
		if err != nil {
			t.Fatalf("GetConfig: %v", err)
		}
		wantEqual(t, "GetConfig", read, want)
		// What the store holds is a copy: changing the caller's maps
		// afterwards changes nothing stored.
		got.Parallelism["sink"] = 99
		cfg.Parallelism["sink"] = 98
		read.Parallelism["sink"] = 97
		again, err := s.GetConfig(ctx(t), cfg.JobID)
		if err != nil {
			t.Fatalf("GetConfig: %v", err)
		}
		if again.Parallelism["sink"] != 5 {
			t.Fatalf("stored parallelism changed to %d through a caller's map", again.Parallelism["sink"])
		}
	})
	t.Run("UpdateWithReadVersion", func(t *testing.T) {
		s := newStore(t)
		v1 := mustPutConfig(t, s, Config(JobID(t, "c")))
		v1.Stop = job.StopGraceful
		v1.Parallelism = nil
		v2 := mustPutConfig(t, s, v1)
		if v2.Version != 2 {
			t.Fatalf("updated config has version %d, want 2", v2.Version)
		}
		read, err := s.GetConfig(ctx(t), v1.JobID)
		if err != nil {
			t.Fatalf("GetConfig: %v", err)
		}
		wantEqual(t, "GetConfig after update", read, v2)
	})
	t.Run("CreateExistingConflicts", func(t *testing.T) {
		s := newStore(t)
		cfg := Config(JobID(t, "c"))
		mustPutConfig(t, s, cfg)
		_, err := s.PutConfig(ctx(t), cfg)
		wantConflict(t, err, "config", 0, 1)
	})
	t.Run("StaleVersionConflicts", func(t *testing.T) {
		s := newStore(t)
		v1 := mustPutConfig(t, s, Config(JobID(t, "c")))
		v2 := mustPutConfig(t, s, v1)
		stale := v1
		stale.Stop = job.StopForce
		_, err := s.PutConfig(ctx(t), stale)
		wantConflict(t, err, "config", 1, 2)
		read, err := s.GetConfig(ctx(t), v1.JobID)
		if err != nil {
			t.Fatalf("GetConfig: %v", err)
		}
		wantEqual(t, "config after a rejected write", read, v2)
	})
	t.Run("VersionOnMissingConflicts", func(t *testing.T) {
		s := newStore(t)
		cfg := Config(JobID(t, "c"))
		cfg.Version = 4
		_, err := s.PutConfig(ctx(t), cfg)
		wantConflict(t, err, "config", 4, 0)
		_, err = s.GetConfig(ctx(t), cfg.JobID)
		wantIs(t, err, store.ErrNotFound)
	})
}

func runStatuses(t *testing.T, newStore NewStore) {
	t.Run("GetMissing", func(t *testing.T) {
		s := newStore(t)
		_, err := s.GetStatus(ctx(t), JobID(t, "s"))
		wantIs(t, err, store.ErrNotFound)
	})
	t.Run("CreateAndRoundTrip", func(t *testing.T) {
		s := newStore(t)
		st := Status(JobID(t, "s"))
		got := mustPutStatus(t, s, 1, st)
		want := st
		want.Version = 1
		wantEqual(t, "PutStatus result", got, want)
		read, err := s.GetStatus(ctx(t), st.JobID)
		if err != nil {
			t.Fatalf("GetStatus: %v", err)
		}
		wantEqual(t, "GetStatus", read, want)
	})
	t.Run("UpdateClearsOmittedFields", func(t *testing.T) {
		s := newStore(t)
		v1 := mustPutStatus(t, s, 1, Status(JobID(t, "s")))
		next := job.Status{JobID: v1.JobID, Version: v1.Version, State: job.Scheduling, RunID: 4}
		v2 := mustPutStatus(t, s, 1, next)
		if v2.Version != 2 {
			t.Fatalf("updated status has version %d, want 2", v2.Version)
		}
		read, err := s.GetStatus(ctx(t), v1.JobID)
		if err != nil {
			t.Fatalf("GetStatus: %v", err)
		}
		wantEqual(t, "GetStatus after an update that clears fields", read, v2)
	})
	t.Run("StaleVersionConflicts", func(t *testing.T) {
		s := newStore(t)
		v1 := mustPutStatus(t, s, 1, Status(JobID(t, "s")))
		mustPutStatus(t, s, 1, v1)
		_, err := s.PutStatus(ctx(t), 1, v1)
		wantConflict(t, err, "status", 1, 2)
		fresh := v1
		fresh.Version = 0
		_, err = s.PutStatus(ctx(t), 1, fresh)
		wantConflict(t, err, "status", 0, 2)
	})
	t.Run("VersionOnMissingConflicts", func(t *testing.T) {
		s := newStore(t)
		st := Status(JobID(t, "s"))
		st.Version = 3
		_, err := s.PutStatus(ctx(t), 1, st)
		wantConflict(t, err, "status", 3, 0)
	})
	t.Run("OlderFenceIsFenced", func(t *testing.T) {
		s := newStore(t)
		v1 := mustPutStatus(t, s, 1, Status(JobID(t, "s")))
		v2 := mustPutStatus(t, s, 2, v1)
		old := v2
		old.State = job.Failed
		_, err := s.PutStatus(ctx(t), 1, old)
		wantIs(t, err, store.ErrFenced)
		read, err := s.GetStatus(ctx(t), v1.JobID)
		if err != nil {
			t.Fatalf("GetStatus: %v", err)
		}
		wantEqual(t, "status after a fenced write", read, v2)
		// The same leader keeps writing, and a newer one takes over.
		v3 := mustPutStatus(t, s, 2, v2)
		mustPutStatus(t, s, 5, v3)
		_, err = s.PutStatus(ctx(t), 4, v3)
		wantIs(t, err, store.ErrFenced)
	})
	t.Run("FencedWinsOverConflict", func(t *testing.T) {
		s := newStore(t)
		v1 := mustPutStatus(t, s, 1, Status(JobID(t, "s")))
		mustPutStatus(t, s, 2, v1)
		_, err := s.PutStatus(ctx(t), 1, v1) // stale version and stale fence
		wantIs(t, err, store.ErrFenced)
		if errors.Is(err, store.ErrConflict) {
			t.Fatalf("err = %v matches ErrConflict too; a fenced writer must see only ErrFenced", err)
		}
	})
}

func runCommands(t *testing.T, newStore NewStore) {
	t.Run("GetMissing", func(t *testing.T) {
		s := newStore(t)
		_, err := s.GetCommands(ctx(t), JobID(t, "m"))
		wantIs(t, err, store.ErrNotFound)
	})
	t.Run("VersionGrowsAndRoundTrip", func(t *testing.T) {
		s := newStore(t)
		c := Commands(JobID(t, "m"))
		c.Version = 42 // ignored: the store numbers the records
		for want := int64(1); want <= 3; want++ {
			got, err := s.PutCommands(ctx(t), 1, c)
			if err != nil {
				t.Fatalf("PutCommands: %v", err)
			}
			if got.Version != want {
				t.Fatalf("PutCommands returned version %d, want %d", got.Version, want)
			}
			expect := c
			expect.Version = want
			wantEqual(t, "PutCommands result", got, expect)
			read, err := s.GetCommands(ctx(t), c.JobID)
			if err != nil {
				t.Fatalf("GetCommands: %v", err)
			}
			wantEqual(t, "GetCommands", read, expect)
		}
	})
	t.Run("ReplaceClearsOmittedCommands", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "m")
		if _, err := s.PutCommands(ctx(t), 1, Commands(id)); err != nil {
			t.Fatalf("PutCommands: %v", err)
		}
		next := job.Commands{JobID: id, RunID: 4, Stop: &job.StopCommand{Mode: job.StopImmediate}}
		got, err := s.PutCommands(ctx(t), 1, next)
		if err != nil {
			t.Fatalf("PutCommands: %v", err)
		}
		read, err := s.GetCommands(ctx(t), id)
		if err != nil {
			t.Fatalf("GetCommands: %v", err)
		}
		wantEqual(t, "GetCommands after a replacement", read, got)
		if read.Start != nil || read.Checkpoint != nil || read.Commit != nil {
			t.Fatalf("replaced record kept old commands: %+v", read)
		}
	})
	t.Run("OlderFenceIsFenced", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "m")
		c := Commands(id)
		if _, err := s.PutCommands(ctx(t), 2, c); err != nil {
			t.Fatalf("PutCommands: %v", err)
		}
		old := job.Commands{JobID: id, RunID: 9}
		_, err := s.PutCommands(ctx(t), 1, old)
		wantIs(t, err, store.ErrFenced)
		read, err := s.GetCommands(ctx(t), id)
		if err != nil {
			t.Fatalf("GetCommands: %v", err)
		}
		if read.RunID != c.RunID || read.Version != 1 {
			t.Fatalf("fenced write changed the record: %+v", read)
		}
		if _, err := s.PutCommands(ctx(t), 3, old); err != nil {
			t.Fatalf("PutCommands under a newer fence: %v", err)
		}
	})
}

func epochs(cps []job.Checkpoint) []int64 {
	out := make([]int64, len(cps))
	for i, cp := range cps {
		out[i] = cp.Epoch
	}
	return out
}

func wantEpochs(t *testing.T, s store.Store, id job.ID, want ...int64) {
	t.Helper()
	cps, err := s.ListCheckpoints(ctx(t), id)
	if err != nil {
		t.Fatalf("ListCheckpoints: %v", err)
	}
	if got := epochs(cps); !slices.Equal(got, want) {
		t.Fatalf("stored epochs = %v, want %v", got, want)
	}
}

func wantMaxEpoch(t *testing.T, s store.Store, id job.ID, want int64) {
	t.Helper()
	got, err := s.MaxEpoch(ctx(t), id)
	if err != nil {
		t.Fatalf("MaxEpoch: %v", err)
	}
	if got != want {
		t.Fatalf("MaxEpoch = %d, want %d", got, want)
	}
}

func runCheckpoints(t *testing.T, newStore NewStore) {
	t.Run("Empty", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		wantMaxEpoch(t, s, id, 0)
		wantEpochs(t, s, id)
	})
	t.Run("CreateListRoundTrip", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		// 9, 10, 100: listed by number, not as text.
		for _, e := range []int64{1, 9, 10, 100} {
			mustCreate(t, s, 1, Checkpoint(id, e))
		}
		wantMaxEpoch(t, s, id, 100)
		cps, err := s.ListCheckpoints(ctx(t), id)
		if err != nil {
			t.Fatalf("ListCheckpoints: %v", err)
		}
		if got := epochs(cps); !slices.Equal(got, []int64{1, 9, 10, 100}) {
			t.Fatalf("ListCheckpoints epochs = %v, want [1 9 10 100] (oldest first)", got)
		}
		wantEqual(t, "listed checkpoint", cps[1], Checkpoint(id, 9))
	})
	t.Run("EpochMustIncrease", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		for _, e := range []int64{0, -1} {
			err := s.CreateCheckpoint(ctx(t), 1, Checkpoint(id, e))
			wantIs(t, err, store.ErrEpochNotIncreasing)
		}
		mustCreate(t, s, 1, Checkpoint(id, 5))
		for _, e := range []int64{5, 4, 1} {
			err := s.CreateCheckpoint(ctx(t), 1, Checkpoint(id, e))
			wantIs(t, err, store.ErrEpochNotIncreasing)
		}
		wantMaxEpoch(t, s, id, 5)
		wantEpochs(t, s, id, 5)
		mustCreate(t, s, 1, Checkpoint(id, 7))
		wantMaxEpoch(t, s, id, 7)
	})
	t.Run("EpochsArePerJob", func(t *testing.T) {
		s := newStore(t)
		a, b := JobID(t, "a"), JobID(t, "b")
		mustCreate(t, s, 1, Checkpoint(a, 10))
		mustCreate(t, s, 1, Checkpoint(b, 1))
		wantMaxEpoch(t, s, a, 10)
		wantMaxEpoch(t, s, b, 1)
		wantEpochs(t, s, b, 1)
	})
	t.Run("DeleteBelowKeepsMaxEpoch", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		for e := int64(1); e <= 5; e++ {
			mustCreate(t, s, 1, Checkpoint(id, e))
		}
		n, err := s.DeleteCheckpoints(ctx(t), 1, id, 4)
		if err != nil {
			t.Fatalf("DeleteCheckpoints: %v", err)
		}
		if n != 3 {
			t.Fatalf("DeleteCheckpoints removed %d, want 3", n)
		}
		wantEpochs(t, s, id, 4, 5)
		n, err = s.DeleteCheckpoints(ctx(t), 1, id, 4)
		if err != nil || n != 0 {
			t.Fatalf("repeated DeleteCheckpoints = %d, %v; want 0, nil", n, err)
		}
		if n, err := s.DeleteCheckpoints(ctx(t), 1, id, 1000); err != nil || n != 2 {
			t.Fatalf("DeleteCheckpoints(below 1000) = %d, %v; want 2, nil", n, err)
		}
		wantEpochs(t, s, id)
		wantMaxEpoch(t, s, id, 5)
		// Deleted epochs are never reused.
		for _, e := range []int64{3, 5} {
			err := s.CreateCheckpoint(ctx(t), 1, Checkpoint(id, e))
			wantIs(t, err, store.ErrEpochNotIncreasing)
		}
		mustCreate(t, s, 1, Checkpoint(id, 6))
		wantEpochs(t, s, id, 6)
	})
	t.Run("UpdateReplaces", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		mustCreate(t, s, 1, Checkpoint(id, 3))
		cp := Checkpoint(id, 3)
		cp.State = job.CheckpointReady
		cp.FinishedAt = cp.StartedAt.Add(1500 * time.Millisecond)
		cp.Operators = map[string]job.OperatorCheckpoint{
			"source": {Bytes: 2048, Metadata: map[int]string{0: "offset=20", 1: "offset=22"}},
			"sink":   {Bytes: 10, Metadata: map[int]string{0: "txn=a", 1: "txn=b", 2: "txn=c"}},
		}
		if err := s.UpdateCheckpoint(ctx(t), 1, cp); err != nil {
			t.Fatalf("UpdateCheckpoint: %v", err)
		}
		cps, err := s.ListCheckpoints(ctx(t), id)
		if err != nil || len(cps) != 1 {
			t.Fatalf("ListCheckpoints = %v, %v; want one checkpoint", cps, err)
		}
		wantEqual(t, "updated checkpoint", cps[0], cp)
		wantMaxEpoch(t, s, id, 3)
	})
	t.Run("UpdateMissingIsNotFound", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		err := s.UpdateCheckpoint(ctx(t), 1, Checkpoint(id, 1))
		wantIs(t, err, store.ErrNotFound)
		mustCreate(t, s, 1, Checkpoint(id, 2))
		err = s.UpdateCheckpoint(ctx(t), 1, Checkpoint(id, 1))
		wantIs(t, err, store.ErrNotFound)
		if _, err := s.DeleteCheckpoints(ctx(t), 1, id, 3); err != nil {
			t.Fatalf("DeleteCheckpoints: %v", err)
		}
		err = s.UpdateCheckpoint(ctx(t), 1, Checkpoint(id, 2))
		wantIs(t, err, store.ErrNotFound)
		wantEpochs(t, s, id)
	})
	t.Run("CreateFencedByStatus", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		mustCreate(t, s, 1, Checkpoint(id, 1))
		mustPutStatus(t, s, 3, Status(id))
		err := s.CreateCheckpoint(ctx(t), 2, Checkpoint(id, 2))
		wantIs(t, err, store.ErrFenced)
		wantMaxEpoch(t, s, id, 1)
		wantEpochs(t, s, id, 1)
		mustCreate(t, s, 3, Checkpoint(id, 2))
	})
	t.Run("FencedWinsOverEpoch", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		mustCreate(t, s, 1, Checkpoint(id, 4))
		mustPutStatus(t, s, 2, Status(id))
		err := s.CreateCheckpoint(ctx(t), 1, Checkpoint(id, 4))
		wantIs(t, err, store.ErrFenced)
	})
	t.Run("UpdateFenced", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		mustCreate(t, s, 1, Checkpoint(id, 1))
		newer := Checkpoint(id, 1)
		newer.State = job.CheckpointFailed
		newer.Failure = "abandoned by the new controller"
		if err := s.UpdateCheckpoint(ctx(t), 2, newer); err != nil {
			t.Fatalf("UpdateCheckpoint under fence 2: %v", err)
		}
		old := Checkpoint(id, 1)
		old.State = job.CheckpointReady
		err := s.UpdateCheckpoint(ctx(t), 1, old)
		wantIs(t, err, store.ErrFenced)
		cps, err := s.ListCheckpoints(ctx(t), id)
		if err != nil || len(cps) != 1 {
			t.Fatalf("ListCheckpoints = %v, %v", cps, err)
		}
		wantEqual(t, "checkpoint after a fenced update", cps[0], newer)
	})
	t.Run("CreateRaisesTheJobFence", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		st := mustPutStatus(t, s, 1, Status(id))
		mustCreate(t, s, 2, Checkpoint(id, 1))
		_, err := s.PutStatus(ctx(t), 1, st)
		wantIs(t, err, store.ErrFenced)
	})
	t.Run("DeleteFencedByStatus", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		mustCreate(t, s, 1, Checkpoint(id, 1))
		mustPutStatus(t, s, 2, Status(id))
		_, err := s.DeleteCheckpoints(ctx(t), 1, id, 2)
		wantIs(t, err, store.ErrFenced)
		wantEpochs(t, s, id, 1)
	})
	t.Run("DeleteFenced", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "k")
		mustCreate(t, s, 1, Checkpoint(id, 1))
		newer := Checkpoint(id, 1)
		newer.State = job.CheckpointFailed
		if err := s.UpdateCheckpoint(ctx(t), 2, newer); err != nil {
			t.Fatalf("UpdateCheckpoint under fence 2: %v", err)
		}
		_, err := s.DeleteCheckpoints(ctx(t), 1, id, 2)
		wantIs(t, err, store.ErrFenced)
		wantEpochs(t, s, id, 1)
		if n, err := s.DeleteCheckpoints(ctx(t), 2, id, 2); err != nil || n != 1 {
			t.Fatalf("DeleteCheckpoints under fence 2 = %d, %v; want 1, nil", n, err)
		}
	})
}

func activeJobs(t *testing.T, s store.Store) map[job.ID]int64 {
	t.Helper()
	refs, err := s.ActiveJobs(ctx(t))
	if err != nil {
		t.Fatalf("ActiveJobs: %v", err)
	}
	out := make(map[job.ID]int64, len(refs))
	for _, r := range refs {
		if _, dup := out[r.ID]; dup {
			t.Fatalf("ActiveJobs lists %s twice: %v", r.ID, refs)
		}
		out[r.ID] = r.ConfigVersion
	}
	return out
}

// eventually retries check until it passes: the DynamoDB adapter's index is
// a GSI, which follows the table within a moment rather than at once.
func eventually(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after 5 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func listedAt(t *testing.T, s store.Store, id job.ID, version int64) func() bool {
	return func() bool {
		v, ok := activeJobs(t, s)[id]
		return ok && v == version
	}
}

func notListed(t *testing.T, s store.Store, id job.ID) func() bool {
	return func() bool {
		_, ok := activeJobs(t, s)[id]
		return !ok
	}
}

func runIndex(t *testing.T, newStore NewStore) {
	t.Run("PutConfigLists", func(t *testing.T) {
		s := newStore(t)
		a, b := JobID(t, "a"), JobID(t, "b")
		mustPutConfig(t, s, Config(a))
		v := mustPutConfig(t, s, Config(b))
		mustPutConfig(t, s, v)
		eventually(t, "both jobs listed at their versions", func() bool {
			got := activeJobs(t, s)
			va, oka := got[a]
			vb, okb := got[b]
			return oka && okb && va == 1 && vb == 2
		})
	})
	t.Run("ParkAtSameVersion", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "p")
		v := mustPutConfig(t, s, Config(id))
		eventually(t, "job listed", listedAt(t, s, id, 1))
		if err := s.Park(ctx(t), 1, id, v.Version); err != nil {
			t.Fatalf("Park: %v", err)
		}
		eventually(t, "parked job off the index", notListed(t, s, id))
		// The config itself stays.
		if _, err := s.GetConfig(ctx(t), id); err != nil {
			t.Fatalf("GetConfig after Park: %v", err)
		}
		// Any new config version puts it back.
		mustPutConfig(t, s, v)
		eventually(t, "job listed again after a config write", listedAt(t, s, id, 2))
	})
	t.Run("ParkAtOlderVersionKeepsListed", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "p")
		v1 := mustPutConfig(t, s, Config(id))
		mustPutConfig(t, s, v1)
		err := s.Park(ctx(t), 1, id, v1.Version)
		wantConflict(t, err, "config", 1, 2)
		eventually(t, "job still listed at version 2", listedAt(t, s, id, 2))
	})
	t.Run("ParkMissingIsNotFound", func(t *testing.T) {
		s := newStore(t)
		err := s.Park(ctx(t), 1, JobID(t, "p"), 1)
		wantIs(t, err, store.ErrNotFound)
	})
}

func runConcurrency(t *testing.T, newStore NewStore) {
	t.Run("RacingEpochs", func(t *testing.T) {
		s := newStore(t)
		stores := make([]store.Store, 6)
		for i := range stores {
			stores[i] = s
		}
		RaceEpochs(t, stores, JobID(t, "r"), 4)
	})
	t.Run("RacingConfigCreates", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "r")
		const n = 6
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				cfg := Config(id)
				cfg.RestartNonce = fmt.Sprintf("writer-%d", i)
				_, errs[i] = s.PutConfig(ctx(t), cfg)
			})
		}
		wg.Wait()
		if won := winners(t, "PutConfig", errs); won != 1 {
			t.Fatalf("%d of %d racing creates succeeded, want exactly 1", won, n)
		}
	})
	t.Run("RacingStatusWrites", func(t *testing.T) {
		s := newStore(t)
		v1 := mustPutStatus(t, s, 1, Status(JobID(t, "r")))
		const n = 6
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				st := v1
				st.RunID = int64(100 + i)
				_, errs[i] = s.PutStatus(ctx(t), 1, st)
			})
		}
		wg.Wait()
		if won := winners(t, "PutStatus", errs); won != 1 {
			t.Fatalf("%d of %d writers of version 1 succeeded, want exactly 1", won, n)
		}
	})
}

// winners counts the racing writes that succeeded; every other one must
// have lost with a conflict.
func winners(t *testing.T, op string, errs []error) int {
	t.Helper()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, store.ErrConflict):
		default:
			t.Fatalf("racing %s: %v", op, err)
		}
	}
	return won
}

// RaceEpochs runs one writer per store, all for job id under one fence, each
// creating perWriter checkpoints as MaxEpoch+1 and retrying when another got
// there first. It fails the test if an epoch is ever created twice, if a
// writer's epochs do not grow, or if the stored epochs are not exactly those
// created. Stores may be separate clients of one backend.
func RaceEpochs(t *testing.T, stores []store.Store, id job.ID, perWriter int) {
	t.Helper()
	type result struct {
		created []int64
		err     error
	}
	results := make([]result, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			r := &results[i]
			for attempts := 0; len(r.created) < perWriter; attempts++ {
				if attempts > perWriter*len(stores)*4 {
					r.err = fmt.Errorf("writer %d created %d epochs in %d attempts", i, len(r.created), attempts)
					return
				}
				maxEpoch, err := s.MaxEpoch(ctx(t), id)
				if err != nil {
					r.err = fmt.Errorf("MaxEpoch: %w", err)
					return
				}
				err = s.CreateCheckpoint(ctx(t), 1, Checkpoint(id, maxEpoch+1))
				switch {
				case err == nil:
					r.created = append(r.created, maxEpoch+1)
				case errors.Is(err, store.ErrEpochNotIncreasing):
				default:
					r.err = fmt.Errorf("CreateCheckpoint(%d): %w", maxEpoch+1, err)
					return
				}
			}
		})
	}
	wg.Wait()
	seen := map[int64]int{}
	var all []int64
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("writer %d: %v", i, r.err)
		}
		for j, e := range r.created {
			if j > 0 && e <= r.created[j-1] {
				t.Fatalf("writer %d created epoch %d after %d: epochs must grow", i, e, r.created[j-1])
			}
			if w, dup := seen[e]; dup {
				t.Fatalf("epoch %d was created by writer %d and writer %d", e, w, i)
			}
			seen[e] = i
			all = append(all, e)
		}
	}
	slices.Sort(all)
	wantEpochs(t, stores[0], id, all...)
	wantMaxEpoch(t, stores[0], id, all[len(all)-1])
	if got := len(seen); got != len(stores)*perWriter {
		t.Fatalf("%d epochs created, want %d", got, len(stores)*perWriter)
	}
}
