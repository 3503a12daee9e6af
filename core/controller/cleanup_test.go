package controller

import (
	"slices"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
)

func TestCleanupKeepsTheLastReadyCheckpoints(t *testing.T) {
	g := newGatedStore()
	h := newHarness(t, false, withStore(g)) // 3 retained
	h.running()
	for range 7 {
		h.completeCheckpoint()
	}
	if h.c.cleaning {
		t.Fatal("cleanup before epoch − min epoch exceeded the retained count")
	}
	e8 := h.startDue()
	h.expectContinue()
	if h.c.cleaning {
		t.Fatal("cleanup started while a checkpoint was in flight")
	}
	h.reportAll(e8)
	h.expectContinue()

	before := g.lists.Load() // PrepareRestore's
	g.armed.Store(true)
	h.expectContinue() // starts the cleanup
	<-g.entered
	if !h.c.cleaning {
		t.Fatal("no cleanup at epoch 8")
	}
	// While it runs no checkpoint starts, however overdue, and no second
	// cleanup.
	h.advance(time.Minute)
	h.expectContinue()
	h.expectContinue()
	if h.c.CheckpointInFlight() {
		t.Fatal("checkpoint started during cleanup")
	}
	g.armed.Store(false)
	g.release <- struct{}{}
	h.waitCleanup()

	h.expectContinue() // applies the result, then starts the overdue checkpoint
	if h.c.MinEpoch() != 5 {
		t.Errorf("MinEpoch = %d, want 8 − 3", h.c.MinEpoch())
	}
	if got := h.storedEpochs(); !slices.Equal(got, []int64{5, 6, 7, 8, 9}) {
		t.Errorf("stored epochs = %v, want 5..9", got)
	}
	if cmd := h.commands(); cmd.Checkpoint == nil || cmd.Checkpoint.Epoch != 9 || cmd.Checkpoint.MinEpoch != 5 {
		t.Errorf("checkpoint command = %+v, want epoch 9 with min epoch 5", cmd.Checkpoint)
	}
	h.c.Close()
	if n := g.lists.Load() - before; n != 1 {
		t.Errorf("%d cleanups ran, want 1", n)
	}
}

func TestCleanupKeepsReadyCheckpointsPastFailedOnes(t *testing.T) {
	h := newHarness(t, false, withSettings(func(s *Settings) { s.TolerableCheckpointFailures = 10 }))
	h.running()
	for range 5 {
		h.completeCheckpoint()
	}
	for range 2 {
		if _, err := h.failCheckpoint(); err != nil {
			t.Fatal(err)
		}
	}
	h.completeCheckpoint() // 8
	h.expectContinue()
	h.waitCleanup()
	h.expectContinue()
	// 8 − 3 = 5 would keep only 5 and 8 of the ready ones; the last three
	// ready are 4, 5 and 8.
	if h.c.MinEpoch() != 4 {
		t.Errorf("MinEpoch = %d, want 4", h.c.MinEpoch())
	}
	if got := h.storedEpochs(); !slices.Equal(got[:5], []int64{4, 5, 6, 7, 8}) {
		t.Errorf("stored epochs = %v, want 4..8 and the next", got)
	}
	// The rule fires once per epoch, though 8 − 4 still exceeds 3.
	h.expectContinue()
	if h.c.cleaning {
		t.Error("a second cleanup for the same epoch")
	}
}

func TestCleanupNeverDeletesTheRestoredEpoch(t *testing.T) {
	h := newHarness(t, false, withSettings(func(s *Settings) {
		s.RetainedCheckpoints = 1
		s.TolerableCheckpointFailures = 10
	}))
	h.running()
	h.completeCheckpoint()
	h.completeCheckpoint()

	h.newRun(2) // restores epoch 2
	h.running()
	if _, err := h.failCheckpoint(); err != nil {
		t.Fatal(err)
	}
	e4, err := h.failCheckpoint()
	if err != nil || e4 != 4 {
		t.Fatalf("epoch %d, %v", e4, err)
	}
	h.expectContinue()
	h.waitCleanup()
	h.expectContinue()
	// 4 − 1 = 3 would drop epoch 2, the one this run restored and the only
	// ready one.
	if h.c.MinEpoch() != 2 || h.checkpointState(2) != job.CheckpointReady {
		t.Errorf("MinEpoch = %d, epoch 2 %q; want 2 kept", h.c.MinEpoch(), h.checkpointState(2))
	}
	if _, ok := h.checkpoint(1); ok {
		t.Error("epoch 1 was not cleaned up")
	}
}

func TestCleanupFailureIsRetriedLater(t *testing.T) {
	g := newGatedStore()
	h := newHarness(t, false, withStore(g))
	h.running()
	for range 8 {
		h.completeCheckpoint()
	}
	g.armed.Store(true)
	h.expectContinue()
	<-g.entered
	g.armed.Store(false)
	h.mem.FailNext(errThrottled)
	g.release <- struct{}{}
	h.waitCleanup()
	h.expectContinue()
	if h.c.cleaning || h.c.MinEpoch() != 1 {
		t.Fatalf("after a failed cleanup: cleaning %v, min epoch %d", h.c.cleaning, h.c.MinEpoch())
	}
	if len(h.storedEpochs()) != 8 {
		t.Errorf("stored epochs = %v", h.storedEpochs())
	}
	for h.c.epoch < 12 {
		h.completeCheckpoint()
	}
	h.expectContinue()
	h.waitCleanup()
	h.expectContinue()
	if h.c.MinEpoch() != 9 {
		t.Errorf("MinEpoch = %d after the next cleanup, want 9", h.c.MinEpoch())
	}
}

func TestCloseStopsARunningCleanup(t *testing.T) {
	g := newGatedStore()
	h := newHarness(t, false, withStore(g))
	h.running()
	for range 8 {
		h.completeCheckpoint()
	}
	g.armed.Store(true)
	h.expectContinue()
	<-g.entered
	h.c.Close() // returns only once the cleanup goroutine has
	h.expectContinue()
	if len(g.entered) != 0 {
		t.Error("a closed controller started another cleanup")
	}
	if got := h.storedEpochs(); len(got) != 8 {
		t.Errorf("stored epochs = %v, want all 8 (the cleanup was cancelled)", got)
	}
}

// Cleanup deletes the old epochs' records without writing them first: a
// "compacted" mark would cost a write of the whole item per epoch and
// protects nothing (no restore picks an epoch below the new min).
func TestCleanupDeletesWithoutMarkingFirst(t *testing.T) {
	g := newGatedStore()
	h := newHarness(t, false, withStore(g)) // 3 retained
	h.running()
	for range 8 {
		h.completeCheckpoint()
	}
	updates := g.updates.Load()
	h.expectContinue() // starts the cleanup at epoch 8
	if !h.c.cleaning {
		t.Fatal("no cleanup at epoch 8")
	}
	h.waitCleanup()
	h.expectContinue()
	if h.c.MinEpoch() != 5 {
		t.Fatalf("MinEpoch = %d, want 8 − 3", h.c.MinEpoch())
	}
	if got := h.storedEpochs(); !slices.Equal(got, []int64{5, 6, 7, 8}) {
		t.Errorf("stored epochs = %v, want 5..8", got)
	}
	if n := g.updates.Load() - updates; n != 0 {
		t.Errorf("cleanup updated %d checkpoint records before deleting them, want none", n)
	}
}
