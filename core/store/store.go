// Package store declares the persistence port of the core: job configs,
// statuses, checkpoints, worker command records and the index of active
// jobs. Controller writes are fenced: each carries the fence number of the
// lease under which the controller acts.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/weirstream/weir/core/job"
)

// Fence is the number issued with a lease grant. It strictly increases with
// every acquisition, so a higher fence always belongs to a newer leader.
type Fence int64

var (
	// ErrNotFound: the item does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the stored version is not the one the writer read.
	ErrConflict = errors.New("version conflict")
	// ErrFenced: the item was written under a newer lease; the writer is no
	// longer the leader and must stop acting.
	ErrFenced = errors.New("fenced out by a newer controller")
	// ErrEpochNotIncreasing: a checkpoint epoch was not above every epoch
	// the job has had.
	ErrEpochNotIncreasing = errors.New("checkpoint epoch does not increase")
)

// ConflictError tells a writer which version it expected and which is stored
// (-1 when unknown). It matches ErrConflict with errors.Is.
type ConflictError struct {
	What     string
	JobID    job.ID
	Expected int64
	Current  int64
}

func (e *ConflictError) Error() string {
	if e.Current < 0 {
		return fmt.Sprintf("%s of job %s changed since version %d was read: read it again and retry", e.What, e.JobID, e.Expected)
	}
	return fmt.Sprintf("%s of job %s is at version %d, not %d: read it again and retry", e.What, e.JobID, e.Current, e.Expected)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Configs holds what operators want. Writers name the version they read.
type Configs interface {
	// GetConfig returns the current config, or ErrNotFound.
	GetConfig(ctx context.Context, id job.ID) (job.Config, error)
	// PutConfig stores cfg if the stored version equals cfg.Version (0: the
	// job must not exist yet) and returns it with Version+1. A mismatch is a
	// *ConflictError. Every write puts the job on the active index.
	PutConfig(ctx context.Context, cfg job.Config) (job.Config, error)
}

// Statuses holds what the controller knows; only the leader writes.
type Statuses interface {
	// GetStatus returns the stored status, or ErrNotFound.
	GetStatus(ctx context.Context, id job.ID) (job.Status, error)
	// PutStatus stores st if the stored version equals st.Version (0: none
	// stored yet) and the item was not written under a higher fence. It
	// returns st with Version+1. ErrFenced takes precedence over a conflict.
	PutStatus(ctx context.Context, f Fence, st job.Status) (job.Status, error)
}

// Checkpoints holds one record per epoch.
type Checkpoints interface {
	// CreateCheckpoint records a new epoch. It fails with
	// ErrEpochNotIncreasing unless cp.Epoch is above every epoch ever
	// created for the job, deleted ones included, and with ErrFenced when
	// the job's status was written (or an epoch created) under a higher
	// fence. It raises the job's fence to f, so a deposed leader's next
	// status write fails.
	CreateCheckpoint(ctx context.Context, f Fence, cp job.Checkpoint) error
	// UpdateCheckpoint replaces an existing epoch's record (ErrNotFound if
	// there is none).
	UpdateCheckpoint(ctx context.Context, f Fence, cp job.Checkpoint) error
	// ListCheckpoints returns the job's stored epochs, oldest first.
	ListCheckpoints(ctx context.Context, id job.ID) ([]job.Checkpoint, error)
	// MaxEpoch is the highest epoch ever created for the job (0: none).
	MaxEpoch(ctx context.Context, id job.ID) (int64, error)
	// DeleteCheckpoints removes the stored epochs below the given one and
	// says how many it removed. MaxEpoch is unaffected. It fails with
	// ErrFenced, deleting nothing, when the job's status or one of those
	// checkpoints was written under a higher fence: a deposed leader must
	// not delete the epoch its successor restores from.
	DeleteCheckpoints(ctx context.Context, f Fence, id job.ID, below int64) (int, error)
}

// Commands holds the one command record per job that workers read.
type Commands interface {
	// GetCommands returns the job's command record, or ErrNotFound. Workers
	// call it often, so adapters may serve it from an eventually
	// consistent read.
	GetCommands(ctx context.Context, id job.ID) (job.Commands, error)
	// PutCommands replaces the record; the store sets Version to the stored
	// version plus one and returns the record as stored.
	PutCommands(ctx context.Context, f Fence, c job.Commands) (job.Commands, error)
}

// JobRef is one entry of the active index.
type JobRef struct {
	ID            job.ID
	ConfigVersion int64
}

// Index lists the jobs that need a controller: every job whose config was
// written since it last came to rest.
type Index interface {
	// ActiveJobs returns every job on the index (one query, never a scan).
	ActiveJobs(ctx context.Context) ([]JobRef, error)
	// Park takes a job at rest off the index, unless its config has moved
	// past configVersion since (then the write is lost to nobody: the job
	// stays on the index and the controller sees the new version).
	Park(ctx context.Context, id job.ID, configVersion int64) error
}

// Store is everything the controller persists.
type Store interface {
	Configs
	Statuses
	Checkpoints
	Commands
	Index
}
