// Package store declares the persistence port of the core: job configs,
// statuses, checkpoints, worker command records and the index of active
// jobs.
//
// Controller writes are fenced: each carries the fence number of the lease
// under which the controller acts, and a controller that takes a job over
// claims it (Fencing.Claim), after which every write for the job under a
// lower fence fails with ErrFenced, whichever item it touches.
//
// Every conditional write knows its own answer: an implementation whose
// transport retries a write whose answer was lost (it took effect, the
// answer never arrived, the request was sent again) recognises its own
// earlier success by a token the write carries, and returns as if the
// first attempt had answered. A lost answer is never reported as a
// conflict, a fenced write or a non-increasing epoch, and never applies a
// write twice (no skipped epoch, no command version counted up twice).
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
	// ErrNotFound is returned when the item does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is matched by a *ConflictError: the stored version is
	// not the one the writer read.
	ErrConflict = errors.New("version conflict")
	// ErrFenced is returned when the job was claimed, or the item written,
	// under a newer lease: the writer is no longer the leader and must
	// stop acting for the job.
	ErrFenced = errors.New("fenced out by a newer controller")
	// ErrEpochNotIncreasing is returned when a checkpoint epoch is not
	// above every epoch the job has had.
	ErrEpochNotIncreasing = errors.New("checkpoint epoch does not increase")
	// ErrChanged is returned by Takeover.ClaimJobs for a job whose items
	// changed after ReadJobs read them, or that could not be claimed in
	// bulk: nothing was claimed for it; take it over one at a time (Claim,
	// then read).
	ErrChanged = errors.New("job changed since it was read, or cannot be claimed in bulk")
)

// ConflictError tells a writer which version it expected and which is stored
// (-1 when unknown). It matches ErrConflict with errors.Is.
//
// CurrentFence is the stored item's fence (the highest it was written or
// claimed under) where the store knows it (status writes), and 0
// otherwise. A controller that meets a status conflict at its own fence
// knows the stored status is its own, since only it writes under that
// fence: an earlier write whose answer was lost and whose retries the
// transport gave up on. It can read the status again and carry on, rather
// than conclude that another controller owns the job.
type ConflictError struct {
	What         string
	JobID        job.ID
	Expected     int64
	Current      int64
	CurrentFence Fence
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
	// stored yet) and the job's status was not written or claimed under a
	// higher fence. It returns st with Version+1. ErrFenced takes
	// precedence over a conflict; a conflict carries the stored fence
	// (ConflictError.CurrentFence).
	PutStatus(ctx context.Context, f Fence, st job.Status) (job.Status, error)
}

// Fencing makes a new leader's fence the job's fence on every item.
type Fencing interface {
	// Claim makes f the fence of job id: once it returns nil, every write
	// for the job under a lower fence fails with ErrFenced, whichever item
	// it touches (status, epoch counter, command record, checkpoints, the
	// index entry). It fails with ErrFenced when a higher fence has
	// claimed the job, and is idempotent for the same fence. A controller
	// claims each job it takes over before it writes anything for it.
	//
	// Writes other than Claim raise the fence of the item they touch only:
	// a status written under fence 2 does not by itself stop a command
	// record write under fence 1.
	Claim(ctx context.Context, f Fence, id job.ID) error
}

// Checkpoints holds one record per epoch.
type Checkpoints interface {
	// CreateCheckpoint records a new epoch. It fails with
	// ErrEpochNotIncreasing unless cp.Epoch is above every epoch ever
	// created for the job, deleted ones included, and with ErrFenced when
	// the job's status was written (or an epoch created, or the job
	// claimed) under a higher fence. It raises the fence of the job's
	// status to f, so a deposed leader's next status write fails.
	CreateCheckpoint(ctx context.Context, f Fence, cp job.Checkpoint) error
	// UpdateCheckpoint replaces an existing epoch's record (ErrNotFound if
	// there is none). It fails with ErrFenced when the checkpoint was
	// written, or the job claimed, under a higher fence.
	UpdateCheckpoint(ctx context.Context, f Fence, cp job.Checkpoint) error
	// ListCheckpoints returns the job's stored epochs, oldest first.
	ListCheckpoints(ctx context.Context, id job.ID) ([]job.Checkpoint, error)
	// MaxEpoch is the highest epoch ever created for the job (0: none).
	MaxEpoch(ctx context.Context, id job.ID) (int64, error)
	// DeleteCheckpoints removes the stored epochs below the given one and
	// says how many it removed. MaxEpoch is unaffected. It fails with
	// ErrFenced, deleting nothing, when the job's status was written (or
	// the job claimed) under a higher fence, and stops at the first of
	// those checkpoints written under a higher fence (older ones may be
	// gone by then): a deposed leader must not delete the epoch its
	// successor restores from.
	DeleteCheckpoints(ctx context.Context, f Fence, id job.ID, below int64) (int, error)
}

// Commands holds the one command record per job that workers read.
type Commands interface {
	// GetCommands returns the job's command record, or ErrNotFound. Workers
	// call it often, so adapters may serve it from an eventually
	// consistent read.
	GetCommands(ctx context.Context, id job.ID) (job.Commands, error)
	// PutCommands replaces the record; the store sets Version to the stored
	// version plus one and returns the record as stored. It fails with
	// ErrFenced when the record was written, or the job claimed, under a
	// higher fence.
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
	// stays on the index and the controller sees the new version; a
	// *ConflictError), or the job's status was written or claimed under a
	// higher fence (ErrFenced, which takes precedence). ErrNotFound when
	// the job has no config.
	Park(ctx context.Context, f Fence, id job.ID, configVersion int64) error
}

// MaxTakeoverBatch is the most jobs one ReadJobs or ClaimJobs call takes.
const MaxTakeoverBatch = 100

// JobState is what a new leader reads of a job to take it over: every
// record Claim fences plus the config. Mark is the reading store's own
// record of the items' write tokens, for ClaimJobs; nothing else reads it.
type JobState struct {
	ID     job.ID
	Config job.Config
	// Status is the stored status; HasStatus is false when none is.
	Status    job.Status
	HasStatus bool
	// Commands is the command record; HasCommands is false when none is.
	Commands    job.Commands
	HasCommands bool
	// Checkpoints are the stored epochs, oldest first.
	Checkpoints []job.Checkpoint
	MaxEpoch    int64
	// Err is nil, or ErrNotFound when the job has no config (nothing else
	// was read of it).
	Err  error
	Mark any
}

// Takeover reads and claims many jobs in a few requests: what a new
// leader needs for the jobs it takes over at once. Claiming after reading
// is as safe as reading after claiming (Machine.Start's order) because
// ClaimJobs claims a job only if nothing of it changed since the read: a
// claimed job's JobState is then what a read right after the claim would
// have returned, and no earlier leader can change it any more.
type Takeover interface {
	// ReadJobs reads, strongly consistently, the config, status, command
	// record, checkpoints and epoch counter of each job (at most
	// MaxTakeoverBatch), in the order given. A job without a config has
	// Err ErrNotFound. An error of the call means nothing was read.
	ReadJobs(ctx context.Context, ids []job.ID) ([]JobState, error)
	// ClaimJobs claims each job under f as Claim does, on all of its items
	// or on none, and only if none of them changed since ReadJobs returned
	// its state (a write, a deletion, a new checkpoint or epoch). It
	// returns one error per job, in order: nil (claimed; its JobState is
	// current), ErrFenced (a higher fence claimed or wrote it), ErrChanged
	// (nothing claimed: claim and read it one at a time), or the error of
	// a request that failed (nothing known to be claimed).
	ClaimJobs(ctx context.Context, f Fence, jobs []JobState) []error
}

// Store is everything the controller persists.
type Store interface {
	Fencing
	Configs
	Statuses
	Checkpoints
	Commands
	Index
	Takeover
}
