package manager

import (
	"context"
	"errors"
	"slices"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// takeoverParallel bounds the bulk take-overs in flight: each is a few
// requests of up to 100 jobs, and a new leader of 10,000 jobs must not
// open thousands of connections at once.
const takeoverParallel = 8

// takeOver starts the loops of jobs that have none: in batches of up to
// store.MaxTakeoverBatch, each read and claimed in bulk in a goroutine of
// its own (never in the poll loop), then each job's loop is started with
// what was read of it. A job the batch could not claim as read (it
// changed since, a newer leader has it, a request failed) starts without:
// its loop claims and reads it alone, as a job's loop always could.
func (t *tenure) takeOver(ctx context.Context, slots []*jobSlot) {
	for batch := range slices.Chunk(slots, store.MaxTakeoverBatch) {
		t.group.Go(func() error {
			claimed := t.claimBatch(ctx, batch)
			for i, s := range batch {
				t.startLoop(ctx, s, claimed[i])
			}
			return nil
		})
	}
}

// claimBatch reads and claims the batch's jobs in bulk and returns, per
// job, its state as claimed, or nil where the job's loop must do it.
func (t *tenure) claimBatch(ctx context.Context, batch []*jobSlot) []*store.JobState {
	claimed := make([]*store.JobState, len(batch))
	select {
	case t.bulk <- struct{}{}:
		defer func() { <-t.bulk }()
	case <-ctx.Done():
		return claimed
	}
	ids := make([]job.ID, len(batch))
	for i, s := range batch {
		ids[i] = s.id
	}
	read, err := t.d.Store.ReadJobs(ctx, ids)
	if err != nil {
		if ctx.Err() == nil {
			t.log.Warn("bulk read of jobs to take over failed; each job is read on its own", "jobs", len(ids), "err", err)
		}
		return claimed
	}
	var (
		readable []store.JobState
		at       []int // the batch index of each readable job
	)
	for i, js := range read {
		if js.Err == nil {
			readable = append(readable, js)
			at = append(at, i)
		}
	}
	errs := t.d.Store.ClaimJobs(ctx, t.fence, readable)
	changed := 0
	for i, js := range readable {
		switch err := errs[i]; {
		case err == nil:
			claimed[at[i]] = &readable[i]
		case errors.Is(err, store.ErrChanged):
			changed++
		case ctx.Err() == nil:
			t.log.Warn("bulk claim of a job failed; its loop claims it on its own", "job", string(js.ID), "err", err)
		}
	}
	if changed > 0 {
		t.log.Info("jobs changed between the bulk read and the claim; each is read on its own", "jobs", changed)
	}
	return claimed
}
