package store

import (
	"context"

	"github.com/weirstream/weir/core/job"
)

// Catalog is what operators need beyond one job's config: listing every
// job and deleting one at rest.
type Catalog interface {
	// ListConfigs returns up to limit configs, starting after the job id
	// `after` ("" for the first page), and the id to pass as `after` for
	// the next page ("" when there are no more). The order is the store's
	// own (job ids in memory, hash order on DynamoDB) and the same from
	// page to page.
	ListConfigs(ctx context.Context, after job.ID, limit int) ([]job.Config, job.ID, error)
	// DeleteJob removes every record of the job (config, status, commands,
	// checkpoints) if its config is still at configVersion and its status
	// at statusVersion (0: the job has no status). A mismatch is a
	// *ConflictError and deletes nothing; a missing job is ErrNotFound.
	DeleteJob(ctx context.Context, id job.ID, configVersion, statusVersion int64) error
}
