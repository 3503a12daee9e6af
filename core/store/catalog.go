package store

import (
	"context"

	"github.com/weirstream/weir/core/job"
)

// Catalog is what operators need beyond one job's config: listing every
// job and deleting one at rest.
type Catalog interface {
	// ListJobs returns up to limit jobs, each with its status, starting
	// after the job id `after` ("" for the first page), and the id to pass
	// as `after` for the next page ("" when there are no more). The order
	// is the store's own (job ids in memory, hash order on DynamoDB) and
	// the same from page to page. A page is read in one go (one scan page
	// on DynamoDB, which reads every item of the jobs it covers anyway), so
	// the statuses cost no request of their own.
	ListJobs(ctx context.Context, after job.ID, limit int) ([]Listed, job.ID, error)
	// DeleteJob removes every record of the job (config, status, commands,
	// checkpoints) if its config is still at configVersion and its status
	// at statusVersion (0: the job has no status). A mismatch is a
	// *ConflictError and deletes nothing; a missing job is ErrNotFound.
	DeleteJob(ctx context.Context, id job.ID, configVersion, statusVersion int64) error
}

// Listed is one job of a list: its config and, once a controller has
// written one, its status (nil before).
type Listed struct {
	Config job.Config
	Status *job.Status
}
