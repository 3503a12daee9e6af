package controller

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/store/memstore"
)

func seedCheckpoints(t *testing.T, s *memstore.Store, f store.Fence, states ...job.CheckpointState) {
	t.Helper()
	for i, st := range states {
		cp := job.Checkpoint{JobID: testJob, Epoch: int64(i + 1), RunID: 1, State: job.CheckpointInProgress, StartedAt: t0}
		if err := s.CreateCheckpoint(context.Background(), f, cp); err != nil {
			t.Fatal(err)
		}
		cp.State = st
		if err := s.UpdateCheckpoint(context.Background(), f, cp); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPrepareRestore(t *testing.T) {
	const (
		ready      = job.CheckpointReady
		committing = job.CheckpointCommitting
		inProgress = job.CheckpointInProgress
		failed     = job.CheckpointFailed
		compacted  = job.CheckpointCompacted
	)
	cases := []struct {
		name       string
		states     []job.CheckpointState
		want       Restore
		wantFailed []int64
	}{
		{"no checkpoints", nil, Restore{Epoch: 0, MinEpoch: 1, NextEpoch: 1}, nil},
		{"newest ready; newer in-progress ones fail",
			[]job.CheckpointState{compacted, ready, ready, failed, inProgress},
			Restore{Epoch: 3, MinEpoch: 2, NextEpoch: 6}, []int64{4, 5}},
		{"committing newer than ready is replayed",
			[]job.CheckpointState{ready, committing, inProgress},
			Restore{Epoch: 2, Commit: true, MinEpoch: 1, NextEpoch: 4}, []int64{3}},
		{"nothing restorable",
			[]job.CheckpointState{failed, inProgress},
			Restore{Epoch: 0, MinEpoch: 3, NextEpoch: 3}, []int64{1, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := memstore.New()
			seedCheckpoints(t, s, 1, tc.states...)
			got, err := PrepareRestore(context.Background(), s, 2, testJob)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("PrepareRestore = %+v, want %+v", got, tc.want)
			}
			cps, _ := s.ListCheckpoints(context.Background(), testJob)
			var failedNow []int64
			for _, cp := range cps {
				if cp.State == failed {
					failedNow = append(failedNow, cp.Epoch)
				}
				if cp.State == inProgress {
					t.Errorf("epoch %d is still in progress", cp.Epoch)
				}
			}
			for _, e := range tc.wantFailed {
				found := false
				for _, f := range failedNow {
					found = found || f == e
				}
				if !found {
					t.Errorf("epoch %d not marked failed (failed: %v)", e, failedNow)
				}
			}
		})
	}
}

func TestPrepareRestoreNextEpochIsAboveDeletedEpochs(t *testing.T) {
	s := memstore.New()
	seedCheckpoints(t, s, 1, job.CheckpointReady, job.CheckpointReady, job.CheckpointReady, job.CheckpointReady)
	if _, err := s.DeleteCheckpoints(context.Background(), 1, testJob, 5); err != nil {
		t.Fatal(err)
	}
	r, err := PrepareRestore(context.Background(), s, 1, testJob)
	if err != nil {
		t.Fatal(err)
	}
	if r.NextEpoch != 5 || r.Epoch != 0 {
		t.Errorf("PrepareRestore = %+v, want next epoch 5 and nothing to restore", r)
	}
}

func TestPrepareRestoreErrors(t *testing.T) {
	s := memstore.New()
	seedCheckpoints(t, s, 5, job.CheckpointReady, job.CheckpointInProgress)
	writes := s.Writes()

	_, err := PrepareRestore(context.Background(), s, 4, testJob)
	errorIs(t, err, store.ErrFenced)

	boom := errors.New("throttled")
	s.FailNext(boom)
	_, err = PrepareRestore(context.Background(), s, 5, testJob)
	errorIs(t, err, boom)
	if s.Writes() != writes {
		t.Errorf("a failed PrepareRestore wrote %d times", s.Writes()-writes)
	}
}

// TestEpochsGrowAcrossRuns: a new run's controller continues above every
// epoch of the run before, including one it left in progress.
func TestEpochsGrowAcrossRuns(t *testing.T) {
	h := newHarness(t, false)
	h.running()
	e1 := h.completeCheckpoint()
	e2 := h.startDue() // left in progress when the run ends
	if e2 <= e1 {
		t.Fatalf("epoch %d after %d", e2, e1)
	}

	h.newRun(2)
	if h.c.restore.Epoch != e1 || h.checkpointState(e2) != job.CheckpointFailed {
		t.Fatalf("restore %+v, epoch %d %s; want restore from %d and %d failed",
			h.c.restore, e2, h.checkpointState(e2), e1, e2)
	}
	if cmd := h.commands(); cmd.RunID != 2 || cmd.Start.RestoreEpoch != e1 || cmd.Checkpoint != nil {
		t.Errorf("commands of run 2 = %+v", cmd)
	}
	h.running()
	h.advance(time.Minute)
	if e3 := h.completeCheckpoint(); e3 != e2+1 {
		t.Errorf("run 2's first epoch is %d, want %d", e3, e2+1)
	}
}
