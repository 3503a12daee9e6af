// Package fleet declares the port that starts and stops a job's workers: an
// ECS task launcher in production, local processes or a fake in tests.
package fleet

import (
	"context"

	"github.com/weirstream/weir/core/job"
)

// Request names the workers one run of a job needs.
type Request struct {
	JobID          job.ID
	RunID          int64
	Workers        []string // the worker ids the run expects to register
	SlotsPerWorker int
	Program        string
}

// Launcher starts and stops workers. Both calls must be idempotent: the
// controller retries them after failures and after fail-overs.
type Launcher interface {
	// Start launches the run's workers; they register through the inbox.
	Start(ctx context.Context, req Request) error
	// Stop tears down every worker of the job whose run is at most runID
	// (all of them when runID is 0), without waiting for them to drain.
	Stop(ctx context.Context, id job.ID, runID int64) error
}
