package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// cleanup is the bookkeeping of the background removal of old checkpoints.
// One runs at a time, never while a checkpoint is in flight, and no
// periodic checkpoint starts while it runs.
type cleanup struct {
	cleaning  bool
	cleanedAt int64 // the epoch the last cleanup was started for
	results   chan cleanupResult
	bgCtx     context.Context
	bgCancel  context.CancelFunc
	bg        sync.WaitGroup
	closed    bool
}

type cleanupResult struct {
	epoch   int64 // the epoch the cleanup was started for
	newMin  int64 // 0: unchanged
	removed int
	err     error
}

// cleanupJob is what the background cleanup needs, copied so it shares
// nothing with the controller.
type cleanupJob struct {
	store    store.Checkpoints
	fence    store.Fence
	jobID    job.ID
	epoch    int64
	minEpoch int64
	retained int
	// protect is an epoch that must survive (the restored one while the
	// run has not yet made enough ready checkpoints of its own); 0: none.
	protect int64
}

func (c *JobController) initCleanup() {
	c.results = make(chan cleanupResult, 1)
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
}

func (c *JobController) closeCleanup() {
	c.closed = true
	c.bgCancel()
	c.bg.Wait()
}

// cleanupStep is Progress's fourth step: apply a finished cleanup's result,
// then start a new one if it is due.
func (c *JobController) cleanupStep() {
	if c.cleaning {
		select {
		case r := <-c.results:
			c.applyCleanup(r)
		default:
		}
	}
	if c.cleaning || c.cp.active || c.closed || !c.cleanupDue() {
		return
	}
	cj := cleanupJob{
		store: c.store, fence: c.fence, jobID: c.jobID,
		epoch: c.epoch, minEpoch: c.minEpoch, retained: c.settings.RetainedCheckpoints,
	}
	if c.ownReady < cj.retained {
		cj.protect = c.restore.Epoch
	}
	c.cleaning, c.cleanedAt = true, c.epoch
	c.log.Debug("checkpoint cleanup started", "epoch", c.epoch, "min_epoch", c.minEpoch)
	c.bg.Go(func() {
		// The buffer of one holds the result: one cleanup runs at a time
		// and Progress collects it before starting the next.
		c.results <- cj.run(c.bgCtx)
	})
}

// cleanupDue is Arroyo's rule: every fourth epoch, once more than
// RetainedCheckpoints epochs lie above the min epoch. It fires once per
// epoch, because keeping the last ready checkpoints may leave the min epoch
// lower than the rule asks.
func (c *JobController) cleanupDue() bool {
	e := c.epoch
	return e > 0 && e%4 == 0 && e-c.minEpoch > int64(c.settings.RetainedCheckpoints) && e != c.cleanedAt
}

func (c *JobController) applyCleanup(r cleanupResult) {
	c.cleaning = false
	if r.err != nil {
		c.log.Error("checkpoint cleanup failed; it is tried again at a later epoch", "epoch", r.epoch, "err", r.err)
		return
	}
	if r.newMin > c.minEpoch {
		c.log.Info("old checkpoints cleaned up", "min_epoch", r.newMin, "removed", r.removed)
		c.minEpoch = r.newMin
	}
}

// run removes the epochs below the new min epoch: epoch − retained, lowered
// so the newest `retained` ready (or committing) checkpoints and the
// protected epoch stay. Their records are deleted straight away, with no
// "compacted" mark first: no restore can pick one of them, because a
// restore takes the newest restorable epoch and every epoch below the new
// min has `retained` restorable ones above it; and workers learn the new
// min epoch (and may drop older state) only after every deletion
// succeeded. A mark would cost a write of the whole item per epoch.
func (cj cleanupJob) run(ctx context.Context) cleanupResult {
	res := cleanupResult{epoch: cj.epoch}
	cps, err := cj.store.ListCheckpoints(ctx, cj.jobID)
	if err != nil {
		res.err = fmt.Errorf("list checkpoints of job %s: %w", cj.jobID, err)
		return res
	}
	newMin := cj.epoch - int64(cj.retained)
	var ready []int64
	for _, cp := range cps {
		if restorable(cp.State) {
			ready = append(ready, cp.Epoch)
		}
	}
	slices.Sort(ready)
	if len(ready) > 0 {
		newMin = min(newMin, ready[max(len(ready)-cj.retained, 0)])
	}
	if cj.protect > 0 {
		newMin = min(newMin, cj.protect)
	}
	if newMin <= cj.minEpoch {
		return res
	}
	n, err := cj.store.DeleteCheckpoints(ctx, cj.fence, cj.jobID, newMin)
	if err != nil {
		res.err = fmt.Errorf("delete checkpoints of job %s below epoch %d: %w", cj.jobID, newMin, err)
		return res
	}
	res.newMin, res.removed = newMin, n
	return res
}
